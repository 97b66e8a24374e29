"""Lazy progress folding gives exactly the reducer's state, read at any point of any stream."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.states import ExecutionStates

TS = "2026-11-25T10:00:00.000Z"
AGENTS = ["a", "b", "c"]

#: one step of a stream: what kind of event (or a read), and for which agent
steps = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "agent_started",
                "agent_progress",
                "agent_progress",
                "agent_progress",
                "exec_progress",
                "exec_progress",
                "agent_completed",
                "agent_failed",
                "read",
                "terminal",
                "duplicate",
            ]
        ),
        st.sampled_from(AGENTS),
        st.integers(min_value=0, max_value=100),
    ),
    max_size=80,
)


def make(kind: str, agent: str, value: int, seq: int, eid: str = "e") -> Event:
    base: dict[str, Any] = {"executionId": eid, "workflowId": "w", "timestamp": TS, "seq": seq}
    data: dict[str, Any]
    if kind == "started":
        infos = [{"agentId": a, "agentName": a.upper(), "dependsOn": []} for a in AGENTS]
        kind, data = "execution:started", {"workflowName": "W", "agentCount": 3, "agents": infos}
    elif kind == "agent_started":
        kind, data = "agent:started", {"agentId": agent, "agentName": agent.upper()}
    elif kind == "agent_progress":
        data = {"agentId": agent, "agentName": agent.upper(), "progress": value, "message": None}
        kind = "agent:progress"
    elif kind == "exec_progress":
        kind, data = "execution:progress", {"progress": value, "currentAgent": agent}
    elif kind == "agent_completed":
        kind = "agent:completed"
        data = {"agentId": agent, "agentName": agent.upper(), "result": value, "durationMs": 3}
    elif kind == "agent_failed":
        kind = "agent:failed"
        data = {"agentId": agent, "agentName": agent.upper(), "error": "x", "errorType": "E"}
    else:
        kind, data = "execution:completed", {"durationMs": 5, "results": {}}
    return parse_event({**base, "type": kind, "data": data})


@given(stream=steps, start_with_snapshot=st.booleans())
def test_reads_at_any_point_equal_the_reducer_event_by_event(
    stream: list[tuple[str, str, int]], start_with_snapshot: bool
) -> None:
    lazy = ExecutionStates()
    eager: ExecutionState | None = None
    first = make("started", "a", 0, 1)
    if start_with_snapshot:
        eager = apply_event(None, first)
        lazy.set("e", eager)
    else:
        eager = apply_event(None, first)
        lazy.apply(first)
    seq, last = 1, first
    for kind, agent, value in stream:
        if kind == "read":
            assert lazy["e"] == eager
            continue
        if kind == "duplicate":
            event = last  # applied again: changes nothing
        else:
            seq += 1
            event = make(kind, agent, value, seq)
        eager = apply_event(eager, event)
        lazy.apply(event)
        last = event
    assert lazy["e"] == eager
    assert lazy.get("e") == eager and "e" in lazy and list(lazy) == ["e"] and len(lazy) == 1


def test_progress_floods_are_noted_not_applied_one_by_one() -> None:
    lazy = ExecutionStates()
    lazy.apply(make("started", "a", 0, 1))
    lazy.apply(make("agent_started", "a", 0, 2))
    before = lazy["e"]
    for seq in range(3, 1003):
        lazy.apply(make("agent_progress", "a", seq % 100, seq))
    assert lazy._states["e"] is before  # nothing folded while nobody read
    after = lazy["e"]
    assert after.last_seq == 1002 and after.agent("a").progress == 1002 % 100  # type: ignore[union-attr]
    assert lazy.pop("e") == after and "e" not in lazy and lazy.pop("e") is None


def test_more_progress_of_a_noted_agent_only_moves_the_note() -> None:
    lazy = ExecutionStates()
    events = [make("started", "a", 0, 1), make("agent_started", "a", 0, 2)]
    events += [make("agent_progress", "a", 10, 3), make("agent_progress", "a", 20, 4)]
    for event in events[:3]:
        lazy.apply(event)
    noted = lazy._noted["e"]
    lazy.apply(events[3])  # the fast path: the agent is noted already
    assert lazy._noted["e"] is noted and noted.agents == {"a": 20} and noted.last_seq == 4
    lazy.apply(events[2])  # an older one: a duplicate, however it is applied
    done = make("agent_completed", "a", 1, 5)
    late = make("agent_progress", "a", 30, 6)  # progress of an agent no longer running
    lazy.apply(done)
    lazy.apply(late)
    eager = None
    for event in [*events, done, late]:
        eager = apply_event(eager, event)
    assert lazy["e"] == eager and eager.agent("a").status == "completed"  # type: ignore[union-attr]
