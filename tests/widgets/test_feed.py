"""The feed thread, isolated from ZeroMQ by a scripted subscriber (the real one: test_monitor)."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import reducer_fixtures, wait_for
from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.widgets.feed import Feed


class ScriptedSubscriber:
    """Hands out a list of events, then times out forever; records close()."""

    def __init__(self, events: list[Event]) -> None:
        self.events = list(events)
        self.closed = threading.Event()
        self.drained = threading.Event()

    def recv(self, timeout: float | None = None) -> Event | None:
        if self.events:
            return self.events.pop(0)
        self.drained.set()
        self.closed.wait(timeout or 0)
        return None

    def close(self) -> None:
        self.closed.set()


def _progress_burst(n: int) -> list[Event]:
    base = reducer_fixtures()[0]["events"]
    started = parse_event(base[0])
    out: list[Event] = [started]
    for i in range(n):
        out.append(
            parse_event(
                {
                    "type": "agent:progress",
                    "executionId": started.execution_id,
                    "workflowId": started.workflow_id,
                    "timestamp": started.timestamp,
                    "seq": i + 2,
                    "data": {"agentId": "x", "agentName": "X", "progress": i % 100},
                }
            )
        )
    return out


@pytest.mark.timeout(30)
def test_every_event_applied_few_renders_and_a_final_one() -> None:
    events = _progress_burst(20_000)
    sub = ScriptedSubscriber(events)
    box: dict[str, ExecutionState | None] = {"state": None}
    rendered: list[ExecutionState | None] = []

    def apply(event: Event) -> bool:
        box["state"] = apply_event(box["state"], event)
        return True

    feed = Feed(open=lambda: sub, apply=apply, render=lambda: rendered.append(box["state"]))
    feed.start()
    wait_for(sub.drained.is_set, 20, message="the burst to be consumed")
    wait_for(lambda: not feed.throttle.dirty, 5, message="the trailing render")
    assert feed.events_applied == len(events)
    # Renders are bounded by time, not by the 20,000 events.
    assert len(rendered) < 200
    last = rendered[-1]
    assert last is not None and last.last_seq == len(events)  # the last render saw everything
    feed.stop()
    assert not feed.alive and sub.closed.is_set()


@pytest.mark.timeout(30)
def test_terminal_state_ends_the_feed_after_a_final_render() -> None:
    fixture = reducer_fixtures()[0]
    events = [parse_event(e) for e in fixture["events"]]
    sub = ScriptedSubscriber(events)
    box: dict[str, ExecutionState | None] = {"state": None}
    rendered: list[ExecutionState | None] = []

    def apply(event: Event) -> bool:
        box["state"] = apply_event(box["state"], event)
        return True

    feed = Feed(
        open=lambda: sub,
        apply=apply,
        render=lambda: rendered.append(box["state"]),
        finished=lambda: box["state"] is not None and box["state"].is_terminal,
    )
    feed.start()
    assert feed.join(10), "the feed must stop by itself once the execution ended"
    assert sub.closed.is_set()
    final = rendered[-1]
    assert final is not None and final.to_json_dict() == fixture["expected"]


@pytest.mark.timeout(30)
def test_open_failure_is_reported_and_the_thread_ends() -> None:
    errors: list[BaseException] = []

    def fail() -> ScriptedSubscriber:
        raise ConnectionError("no service")

    feed = Feed(open=fail, apply=lambda e: True, render=lambda: None, on_error=errors.append)
    feed.start()
    assert feed.join(5)
    assert isinstance(errors[0], ConnectionError) and feed.error is errors[0]


@pytest.mark.timeout(30)
def test_a_failing_render_does_not_kill_the_feed() -> None:
    sub = ScriptedSubscriber(_progress_burst(10))
    calls: list[int] = []

    def render() -> None:
        calls.append(1)
        raise RuntimeError("front end gone")

    feed = Feed(open=lambda: sub, apply=lambda e: True, render=render)
    feed.start()
    wait_for(sub.drained.is_set, 5)
    wait_for(lambda: len(calls) >= 2, 5)
    assert feed.alive
    feed.stop()
    assert not feed.alive and sub.closed.is_set()
