"""Synthetic runs for the layout fixtures, the views' tests and the benchmark: a workflow's agents
scheduled as soon as their dependencies are done, turned into the events an executor publishes.

``python -m tests.layout_cases`` rewrites ``tests/fixtures/layout/*.json`` (events, ``nowMs`` and
the Python layout's answer, which ``layout.js`` must give too). Deterministic: seeded, no clock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

Agent = tuple[str, str, list[str]]  # id, name, dependsOn

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
LAYOUT_FIXTURES = Path(__file__).parent / "fixtures" / "layout"


def stamp(ms: int) -> str:
    """The contract timestamp ``ms`` after :data:`T0`."""
    t = T0 + timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def fan_out_in(width: int) -> list[Agent]:
    """``split`` → ``width`` parallel workers → ``merge``."""
    workers = [(f"w{i:02d}", f"Worker {i:02d}", ["split"]) for i in range(width)]
    return [("split", "Splitter", []), *workers, ("merge", "Merger", [w[0] for w in workers])]


def layered(seed: int, sizes: Sequence[int], fan_in: int = 2, skip: float = 0.1) -> list[Agent]:
    """A random layered DAG: each agent depends on 1..``fan_in`` agents of the layer before (and
    with probability ``skip`` on one further back), listed in a shuffled order."""
    rng = random.Random(seed)
    names = [[f"L{i}n{j}" for j in range(n)] for i, n in enumerate(sizes)]
    agents: list[Agent] = []
    for i, layer in enumerate(names):
        for v in layer:
            deps = (
                rng.sample(names[i - 1], k=min(len(names[i - 1]), rng.randint(1, fan_in)))
                if i
                else []
            )
            if i > 1 and rng.random() < skip:
                deps.append(rng.choice(names[rng.randrange(0, i - 1)]))
            agents.append((v, v.upper(), deps))
    rng.shuffle(agents)
    return agents


def schedule(
    agents: Sequence[Agent], durations: dict[str, int], fail: str | None = None
) -> dict[str, tuple[int, int]]:
    """Start and end (ms after the start) of each agent that runs, as soon as its dependencies
    are done. After ``fail`` fails, nothing new starts."""
    done: dict[str, tuple[int, int]] = {}
    left = list(agents)
    stop_at: int | None = None
    while left:
        ready = [a for a in left if all(d in done for d in a[2])]
        if not ready:
            break
        for a in ready:
            left.remove(a)
            start = max((done[d][1] for d in a[2]), default=0) + 5
            if stop_at is not None and start >= stop_at:
                continue
            done[a[0]] = (start, start + durations.get(a[0], 1000))
            if a[0] == fail:
                stop_at = done[a[0]][1]
    return done


def run_events(
    agents: Sequence[Agent],
    durations: dict[str, int],
    *,
    name: str = "Synthetic",
    execution_id: str = "exec-synth",
    fail: str | None = None,
    until: int | None = None,
    progress_steps: int = 2,
) -> list[dict[str, Any]]:
    """The events of a run of ``agents`` (ordered by time, seq from 1), cut at ``until`` ms."""
    spans = schedule(agents, durations, fail)
    names = {a[0]: a[1] for a in agents}
    timed: list[tuple[int, int, str, dict[str, Any]]] = []  # (ms, order, type, data)
    order = 0

    def at(ms: int, type_: str, data: dict[str, Any]) -> None:
        nonlocal order
        order += 1
        timed.append((ms, order, type_, data))

    at(
        0,
        "execution:started",
        {
            "workflowName": name,
            "agentCount": len(agents),
            "userId": None,
            "agents": [{"agentId": a, "agentName": n, "dependsOn": d} for a, n, d in agents],
        },
    )
    for agent_id, (start, end) in spans.items():
        base = {"agentId": agent_id, "agentName": names[agent_id]}
        at(start, "agent:started", base)
        for k in range(1, progress_steps + 1):
            t = start + (end - start) * k // (progress_steps + 1)
            at(t, "agent:progress", {**base, "progress": 100 * k // (progress_steps + 1)})
        if agent_id == fail:
            at(end, "agent:failed", {**base, "error": "boom", "errorType": "RuntimeError"})
        else:
            at(end, "agent:completed", {**base, "result": None, "durationMs": end - start})
    finish = max((end for _, end in spans.values()), default=0)
    if fail is not None:
        at(finish, "execution:failed", {"error": "boom", "errorType": "RuntimeError",
                                        "agentId": fail, "durationMs": finish})  # fmt: skip
    else:
        at(finish, "execution:completed", {"durationMs": finish, "results": {}})
    timed.sort(key=lambda e: (e[0], e[1]))
    if until is not None:
        timed = [e for e in timed if e[0] <= until]
    return [
        {
            "type": type_,
            "executionId": execution_id,
            "workflowId": "wf-synth",
            "timestamp": stamp(ms),
            "seq": seq,
            "data": data,
        }
        for seq, (ms, _, type_, data) in enumerate(timed, 1)
    ]


def _durations(agents: Sequence[Agent], seed: int, low: int, high: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {a[0]: rng.randint(low, high) for a in agents}


def cases() -> list[dict[str, Any]]:
    """The layout fixtures' inputs: description, events, ``nowMs`` (epoch ms)."""
    t0 = int(T0.timestamp() * 1000)
    fan = fan_out_in(28)
    wide = layered(7, [6, 14, 18, 12, 8, 2])
    chain_cycle: list[Agent] = [
        ("a", "A", ["c", "zz"]),  # an unknown dependency, and a cycle a → b → c → a
        ("b", "B", ["a", "b"]),  # … and a self dependency
        ("c", "C", ["b"]),
        ("d", "D", []),
    ]
    return [
        {
            "description": "fan-out-fan-in-30-completed",
            "events": run_events(fan, _durations(fan, 1, 400, 2600), name="Fan-out 30"),
            "nowMs": t0 + 60_000,
        },
        {
            "description": "fan-out-fan-in-30-failed",
            "events": run_events(fan, _durations(fan, 2, 400, 2600), fail="w07", name="Fan 30"),
            "nowMs": t0 + 60_000,
        },
        {
            "description": "layered-60-running",
            "events": run_events(wide, _durations(wide, 3, 300, 4000), until=5_000),
            "nowMs": t0 + 5_250,
        },
        {
            "description": "sub-second",
            "events": run_events(
                fan_out_in(3), {"split": 40, "w00": 120, "w01": 85, "w02": 230, "merge": 60}
            ),
            "nowMs": t0 + 1_000_000,
        },
        {
            "description": "minutes-running",
            "events": run_events(
                layered(11, [2, 3, 2]),
                _durations(layered(11, [2, 3, 2]), 4, 20_000, 90_000),
                until=150_000,
            ),
            "nowMs": t0 + 151_234,
        },
        {
            "description": "cycle-unknown-and-self-dependencies",
            "events": run_events(chain_cycle, {"d": 500}, until=300),
            "nowMs": t0 + 300,
        },
    ]


def expected_layout(case: dict[str, Any]) -> dict[str, Any]:
    """The Python layout of a case's final state at its ``nowMs`` (wire form)."""
    from zmqmon.core.events import parse_event
    from zmqmon.core.layout import execution_layout
    from zmqmon.core.state import replay

    state = replay(parse_event(e) for e in case["events"])
    assert state is not None
    return execution_layout(state, case["nowMs"]).to_json_dict()


def layout_fixtures() -> list[dict[str, Any]]:
    """The stored fixtures: description, events, nowMs, expected."""
    return [json.loads(p.read_text()) for p in sorted(LAYOUT_FIXTURES.glob("*.json"))]


def write_fixtures() -> None:
    """Rewrite ``tests/fixtures/layout/`` from :func:`cases` (review the diff before committing)."""
    LAYOUT_FIXTURES.mkdir(parents=True, exist_ok=True)
    for case in cases():
        body = {**case, "expected": expected_layout(case)}
        path = LAYOUT_FIXTURES / f"{case['description']}.json"
        path.write_text(json.dumps(body, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    write_fixtures()
