"""Checks shared by the executor tests: SPEC §2's rules on an event list, and the reducer."""

from __future__ import annotations

from typing import Any

from zmqmon.core.events import TERMINAL_TYPES, parse_event
from zmqmon.core.state import ExecutionState, replay
from zmqmon.core.wire import dumps, encode_event


def check_events(events: list[dict[str, Any]]) -> ExecutionState:
    """Assert the contract's rules on one execution's events; return the reducer's final state."""
    assert events, "no events"
    ids = {e["executionId"] for e in events}
    assert len(ids) == 1, ids
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "execution:started"
    terminal = [e for e in events if e["type"] in TERMINAL_TYPES]
    assert len(terminal) == 1, [e["type"] for e in terminal]
    assert events[-1] is terminal[0] or events[-1] == terminal[0]
    for e in events:
        dumps(e)  # JSON-safe
        encode_event(e)
    state = replay(parse_event(e) for e in events)
    assert state is not None and state.last_seq == len(events)
    return state


def types_of(events: list[dict[str, Any]], agent_id: str | None = None) -> list[str]:
    """Event types, optionally only the ``agent:*`` events of one agent."""
    if agent_id is None:
        return [e["type"] for e in events]
    return [
        e["type"]
        for e in events
        if e["type"].startswith("agent:") and e["data"].get("agentId") == agent_id
    ]
