"""The widgets' pure half: view model from the shared reducer fixtures, log lines, the throttle."""

from __future__ import annotations

import math
import random

import pytest

from tests.conftest import reducer_fixtures
from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, replay
from zmqmon.widgets.view import (
    BAR_STYLES,
    STATUS_COLOURS,
    RenderThrottle,
    badge_html,
    execution_row,
    execution_view,
    format_duration,
    format_event,
    parse_timestamp,
)

FIXTURES = reducer_fixtures()


def _state(fixture: dict) -> ExecutionState:  # type: ignore[type-arg]
    state = replay(parse_event(e) for e in fixture["events"])
    assert state is not None
    return state


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["description"] for f in FIXTURES])
def test_view_model_mirrors_the_expected_state(fixture: dict) -> None:  # type: ignore[type-arg]
    state = _state(fixture)
    expected = fixture["expected"]
    assert state.to_json_dict() == expected  # the fixture and the reducer agree
    view = execution_view(state, now=parse_timestamp("2030-01-01T00:00:00.000Z") or 0)
    assert view.status == expected["status"]
    assert view.progress == expected["progress"]
    assert view.bar_style == BAR_STYLES[expected["status"]]
    assert view.terminal is (expected["status"] in {"completed", "failed", "cancelled"})
    assert view.can_cancel is not view.terminal
    assert view.error == (expected["error"] or "")
    assert expected["status"] in view.badge and STATUS_COLOURS[expected["status"]] in view.badge
    assert [a.agent_id for a in view.agents] == [a["agentId"] for a in expected["agents"]]
    for row, agent in zip(view.agents, expected["agents"], strict=True):
        assert row.status == agent["status"]
        assert row.progress == agent["progress"]
        assert row.error == (agent["error"] or "")
        if agent["durationMs"] is not None:
            assert row.duration == format_duration(agent["durationMs"] / 1000)
    later = execution_view(state, now=10**10)
    if expected["finishedAt"] and expected["startedAt"]:
        # A finished execution's elapsed time is fixed, whatever "now" is.
        assert later.elapsed == view.elapsed != "—"
    elif not expected["startedAt"]:
        assert later.elapsed == "—"  # a late join that never saw the start cannot guess it


def test_running_execution_elapsed_follows_now() -> None:
    events = [e for e in FIXTURES[0]["events"] if e["type"] == "execution:started"]
    state = replay(parse_event(e) for e in events)
    assert state is not None and state.status == "running"
    start = parse_timestamp(state.started_at)
    assert start is not None
    assert execution_view(state, now=start + 2.5).elapsed == "2.5 s"
    assert execution_view(state, now=start + 125).elapsed == "2 m 05 s"
    assert all(a.status == "pending" and a.duration == "—" for a in execution_view(state, 0).agents)


def test_execution_row() -> None:
    state = _state(FIXTURES[0])
    row = execution_row(state, now=0)
    assert row.execution_id == state.execution_id
    assert row.workflow == state.workflow_name
    assert row.started == (state.started_at or "")[11:19]
    pending = ExecutionState(execution_id="x", workflow_id="wf")
    assert execution_row(pending, 0).started == "—" and execution_row(pending, 0).workflow == "wf"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (-1, "—"),
        (0.25, "250 ms"),
        (4.25, "4.2 s"),
        (125, "2 m 05 s"),
        (3720, "1 h 02 m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_parse_timestamp() -> None:
    assert parse_timestamp("1970-01-01T00:00:01.500Z") == 1.5
    assert parse_timestamp(None) is None
    assert parse_timestamp("yesterday") is None


def test_badge_escapes() -> None:
    assert "<script>" not in badge_html("<script>")


def test_every_fixture_event_formats_as_one_line() -> None:
    for fixture in FIXTURES:
        for raw in fixture["events"]:
            line = format_event(parse_event(raw))
            assert "\n" not in line
            assert line.startswith(raw["timestamp"][11:23] + f" #{raw['seq']} {raw['type']}")
    failed = next(
        parse_event(e) for f in FIXTURES for e in f["events"] if e["type"] == "agent:failed"
    )
    assert failed.data.error in format_event(failed)  # type: ignore[union-attr]


def test_long_values_are_shortened() -> None:
    event = parse_event(
        {
            "type": "agent:completed",
            "executionId": "e",
            "workflowId": "w",
            "timestamp": "2026-11-25T10:00:00.000Z",
            "seq": 3,
            "data": {"agentId": "a", "agentName": "A", "result": "x" * 10_000},
        }
    )
    assert len(format_event(event)) < 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(throttle: RenderThrottle, clock: FakeClock, times: list[float]) -> int:
    """Feed events at the given times, rendering when due, as the feed does: what arrived at the
    same instant is drained before the render check. Then the final render if owed."""
    for i, t in enumerate(times):
        clock.now = t
        throttle.note()
        if (i + 1 == len(times) or times[i + 1] != t) and throttle.due():
            throttle.rendered()
    if throttle.flush():
        throttle.rendered()
    return throttle.renders


@pytest.mark.parametrize("n", [1, 10, 5_000, 50_000])
@pytest.mark.parametrize("duration", [0.0, 0.05, 1.0, 3.3])
def test_burst_renders_are_bounded_by_time_not_events(n: int, duration: float) -> None:
    clock = FakeClock()
    throttle = RenderThrottle(0.1, clock)
    rng = random.Random(n)
    times = sorted(rng.uniform(0, duration) for _ in range(n))
    renders = _drive(throttle, clock, times)
    assert 1 <= renders <= math.ceil(duration / 0.1) + 1
    assert not throttle.dirty  # the final render always happened


def test_leading_edge_and_final_render() -> None:
    clock = FakeClock()
    throttle = RenderThrottle(0.1, clock)
    assert not throttle.due() and not throttle.flush()
    throttle.note()
    assert throttle.due()  # first change after a quiet spell renders at once
    throttle.rendered()
    clock.now = 0.05
    throttle.note()
    assert not throttle.due()  # too soon
    assert throttle.wait_time() == pytest.approx(0.05)
    assert throttle.flush()  # … but a final render is owed
    clock.now = 0.1
    assert throttle.due()
    throttle.rendered()
    assert not throttle.flush() and throttle.wait_time(idle=0.5) == 0.5


def test_throttle_needs_a_clock_and_a_positive_interval() -> None:
    with pytest.raises(ValueError):
        RenderThrottle(0)
    t = RenderThrottle(0.1)
    t.note()
    t.rendered(now=1.0)
    t.note()
    assert not t.due(now=1.05) and t.due(now=1.1)
    with pytest.raises(ValueError):
        t.due()


def test_steady_stream_worst_case() -> None:
    # One event every 10 ms for 2 s: at most one render per 0.1 s plus the leading one.
    clock = FakeClock()
    throttle = RenderThrottle(0.1, clock)
    times = [i * 0.01 for i in range(201)]
    renders = _drive(throttle, clock, times)
    assert 15 <= renders <= math.ceil(2.0 / 0.1) + 1
