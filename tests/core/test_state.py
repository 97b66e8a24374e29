from __future__ import annotations

import random

import pytest

from tests.conftest import reducer_fixtures
from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, apply_event, replay

FIXTURES = reducer_fixtures()


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["description"] for f in FIXTURES])
def test_replay_matches_fixture(fixture: dict) -> None:
    state = replay(parse_event(e) for e in fixture["events"])
    assert state is not None
    assert state.to_json_dict() == fixture["expected"]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["description"] for f in FIXTURES])
def test_reducer_is_idempotent_and_ignores_stale_events(fixture: dict) -> None:
    events = [parse_event(e) for e in fixture["events"]]
    once = replay(events)
    twice = replay(events, once)
    assert twice == once
    # Re-delivering any earlier event after the fact changes nothing.
    rng = random.Random(7)
    state = once
    for event in rng.sample(events, len(events)):
        state = apply_event(state, event)
    assert state == once


def test_snapshot_plus_rest_equals_full_replay() -> None:
    events = [parse_event(e) for e in FIXTURES[0]["events"]]
    full = replay(events)
    for cut in range(len(events) + 1):
        head = replay(events[:cut])
        # the snapshot travels as JSON and comes back
        snap = ExecutionState.model_validate(head.to_json_dict()) if head else None
        assert replay(events[cut:], snap) == full


def test_started_announces_pending_agents() -> None:
    fixture = next(f for f in FIXTURES if f["description"] == "diamond-failed")
    state = apply_event(None, parse_event(fixture["events"][0]))
    assert state.status == "running"
    assert [a.agent_id for a in state.agents] == ["a", "b", "c", "d"]
    assert all(a.status == "pending" for a in state.agents)


def test_running_agents_are_cancelled_by_terminal_failure() -> None:
    fixture = next(f for f in FIXTURES if f["description"] == "diamond-failed")
    state = replay(parse_event(e) for e in fixture["events"])
    assert state is not None
    assert state.agent("c").status == "cancelled"  # type: ignore[union-attr]
    assert state.agent("d").status == "pending"  # type: ignore[union-attr]
    assert state.error == "boom"


def test_events_after_terminal_only_move_last_seq() -> None:
    fixture = next(f for f in FIXTURES if f["description"] == "cancelled")
    events = [parse_event(e) for e in fixture["events"]]
    state = replay(events)
    assert state is not None
    late = dict(fixture["events"][2], seq=99)
    after = apply_event(state, parse_event(late))
    assert after.last_seq == 99
    assert after.model_copy(update={"last_seq": state.last_seq}) == state
