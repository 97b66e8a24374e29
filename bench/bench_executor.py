"""Executor overhead: per agent (1,000 no-op agents) and per ``ctx.progress()`` call.

Each figure sits beside the same work done directly in this run: calling the no-op 1,000 times,
and an empty Python loop calling a no-op method 100,000 times. The emitter delivers to a list
(the engine's own cost; the publisher's is measured by its own suite).
"""

from __future__ import annotations

import time
from typing import Any

from bench import Row
from zmqmon.core.emitter import EventEmitter
from zmqmon.services.executor import Agent, AgentContext, Workflow, WorkflowEngine


async def _noop_async(ctx: AgentContext) -> None:
    return None


def _noop_sync(ctx: AgentContext) -> None:
    return None


class _Sink:
    def progress(self, percent: float, message: str | None = None) -> None:
        return None


def _per_agent(engine: WorkflowEngine, fn: Any, n: int, chain: bool) -> float:
    agents = [Agent(f"a{i}", fn, depends_on=[f"a{i - 1}"] if chain and i else []) for i in range(n)]
    wf = Workflow("bench", agents)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run = engine.submit(wf)
        run.join(120)
        best = min(best, time.perf_counter() - t0)
        assert run.status == "completed"
    return best / n * 1e6


def run(quick: bool) -> list[Row]:
    n = 200 if quick else 1000
    calls = 10_000 if quick else 100_000
    events: list[dict[str, Any]] = []
    rows: list[Row] = []
    engine = WorkflowEngine(EventEmitter(events.append), max_workers=8)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            _noop_sync(None)  # type: ignore[arg-type]
        direct = (time.perf_counter() - t0) / n * 1e6
        for label, fn, chain in (
            ("async no-op agents, fan-out", _noop_async, False),
            ("async no-op agents, chain", _noop_async, True),
            ("sync no-op agents, fan-out", _noop_sync, False),
        ):
            events.clear()
            us = _per_agent(engine, fn, n, chain)
            rows.append(
                Row(
                    "executor",
                    f"{label} ({n})",
                    us,
                    direct,
                    "µs/agent",
                    target="< 50 µs/agent",
                    target_value=50.0,
                    note=("" if us < 50 else "over the 50 µs target")
                    + (" (sync: one thread-pool handoff per agent)" if fn is _noop_sync else ""),
                )
            )

        def chatty(ctx: AgentContext) -> None:
            for i in range(calls):
                ctx.progress(i / calls * 100)

        timings: list[float] = []

        def timed(ctx: AgentContext) -> None:
            t = time.perf_counter()
            chatty(ctx)
            timings.append(time.perf_counter() - t)

        events.clear()
        engine.submit(Workflow("progress", [Agent("p", timed)])).join(60)
        sent = sum(1 for e in events if e["type"] == "agent:progress")
        sink = _Sink()
        t0 = time.perf_counter()
        for i in range(calls):
            sink.progress(i / calls * 100)
        baseline = (time.perf_counter() - t0) / calls * 1e6
        per_call = timings[0] / calls * 1e6
        rows.append(
            Row(
                "executor",
                f"ctx.progress() x{calls:,}",
                per_call,
                baseline,
                "µs/call",
                target="< 1 µs/call",
                target_value=1.0,
                note=f"{sent} agent:progress events sent for {calls:,} calls (coalesced at 50 ms)",
            )
        )
    finally:
        engine.close()
    return rows
