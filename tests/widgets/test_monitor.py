"""ExecutionMonitor / ExecutionsMonitor / zmqmon.monitor against a real service over ZeroMQ.

The widgets run without a kernel here (ipywidgets' comms are inert); the kernel and browser
tests (tests/notebooks/) check what reaches a front end.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

import zmqmon
from tests.conftest import wait_for
from zmqmon.core.state import ExecutionState, replay
from zmqmon.errors import NotFoundError
from zmqmon.shells.client import StateClient
from zmqmon.widgets import ExecutionMonitor, ExecutionsMonitor, monitor

pytestmark = pytest.mark.timeout(60)


def _workflow(seconds: float = 0.6, steps: int = 6) -> dict[str, Any]:
    def agent(agent_id: str, *deps: str) -> dict[str, Any]:
        return {
            "id": agent_id,
            "name": agent_id.title(),
            "uses": "zmqmon.demo:work",
            "params": {"seconds": seconds, "steps": steps},
            "dependsOn": list(deps),
        }

    return {
        "name": "Diamond",
        "agents": [agent("a"), agent("b", "a"), agent("c", "a"), agent("d", "b", "c")],
    }


def _replayed(server: Any, execution_id: str) -> ExecutionState:
    """The reducer's state from the full event list, fetched with ``events``."""
    with StateClient(server.endpoints["state"]) as client:
        events, last = client.events(execution_id, 0, 10_000)
    state = replay(events)
    assert state is not None and state.last_seq == last
    return state


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_follows_an_execution_to_its_end(server: Any) -> None:
    handle = server.submit(_workflow())
    mon = ExecutionMonitor(handle.id, **server.endpoints)
    try:
        assert mon.feed_alive or mon.state.is_terminal
        final = mon.wait(30)
        assert final.status == "completed"
        assert not mon.feed_alive  # the thread ends by itself with the execution
        server.store.flush()
        expected = _replayed(server, handle.id)
        assert mon.state == expected
        assert mon.value == expected.to_json_dict()  # the synced trait, as of the final render
        assert mon._cancel.disabled
        assert [r.bar.value for r in mon._rows] == [100, 100, 100, 100]
        assert "Diamond" in mon._header.value and "completed" in mon._header.value
        assert "execution:completed" in mon._log_view.value
    finally:
        mon.close()


def test_late_join_shows_the_snapshot_at_once(server: Any) -> None:
    handle = server.submit(_workflow(seconds=1.0, steps=10))
    with StateClient(server.endpoints["state"]) as client:
        wait_for(lambda: client.snapshot(handle.id).agents[0].progress >= 30, 15)
    mon = ExecutionMonitor(handle.id, **server.endpoints)
    try:
        # Before the feed did anything, the widget already holds the snapshot.
        assert mon.value["lastSeq"] > 3 and mon.value["agents"][0]["progress"] >= 30
        final = mon.wait(30)
        assert final.status == "completed"
        server.store.flush()
        assert mon.state == _replayed(server, handle.id)
        assert mon.value == mon.state.to_json_dict()
    finally:
        mon.close()


def test_finished_execution_needs_no_thread(server: Any) -> None:
    handle = server.submit(_workflow(seconds=0.05, steps=1))
    handle.wait(20)
    server.store.flush()
    before = threading.active_count()
    mon = monitor(handle.id, **server.endpoints)
    try:
        assert isinstance(mon, ExecutionMonitor)
        assert mon.state.status == "completed" and not mon.feed_alive
        assert threading.active_count() == before
        assert mon.state == _replayed(server, handle.id)
        assert mon.wait(1) == mon.state  # nothing to wait for
    finally:
        mon.close()


def test_cancel_button(server: Any) -> None:
    handle = server.submit(_workflow(seconds=20, steps=200))
    mon = ExecutionMonitor(handle.id, **server.endpoints)
    try:
        wait_for(lambda: mon.state.status == "running", 10)
        assert not mon._cancel.disabled
        mon._cancel.click()
        final = mon.wait(15)
        assert final.status == "cancelled"
        assert mon._cancel.disabled
        assert mon.cancel() is False  # already finished: a conflict, shown, not raised
        assert "already finished" in mon._footer.value
    finally:
        mon.close()


def test_unknown_execution_is_a_precise_error(server: Any) -> None:
    with pytest.raises(NotFoundError):
        ExecutionMonitor("no-such-execution", **server.endpoints)


def test_many_monitors_leak_no_threads_or_sockets(server: Any) -> None:
    handle = server.submit(_workflow(seconds=30, steps=300))
    # Warm up once: the first monitor creates ZeroMQ's shared context and its I/O threads.
    ExecutionMonitor(handle.id, **server.endpoints).close()
    threads, fds = threading.active_count(), _fds()
    monitors = [ExecutionMonitor(handle.id, **server.endpoints) for _ in range(20)]
    wait_for(lambda: all(m.feed_alive for m in monitors), 10)
    assert threading.active_count() >= threads + 20
    for m in monitors:
        m.close()
    assert not any(m.feed_alive for m in monitors)
    wait_for(lambda: threading.active_count() == threads, 10, message="threads back to baseline")
    wait_for(lambda: _fds() <= fds, 10, message="sockets back to baseline")
    handle.cancel()


def test_executions_list_follows_new_executions(server: Any) -> None:
    first = server.submit(_workflow(seconds=0.05, steps=1))
    first.wait(20)
    server.store.flush()
    mon = monitor(server)  # anything with .endpoints → the list
    try:
        assert isinstance(mon, ExecutionsMonitor)
        assert [r["executionId"] for r in mon.value] == [first.id]
        second = server.submit(_workflow(seconds=0.3, steps=3))
        wait_for(lambda: second.id in mon.executions, 10, message="the new execution listed")
        wait_for(
            lambda: [r["status"] for r in mon.value] == ["completed", "completed"],
            20,
            message="both completed in the list",
        )
        assert mon.value[0]["executionId"] == second.id  # newest first
        assert second.id[:12] in mon._table.value and "Diamond" in mon._table.value
    finally:
        mon.close()
    assert not mon.feed_alive


def test_monitor_dispatch(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    handle = server.submit(_workflow(seconds=0.05, steps=1))
    handle.wait(20)
    server.store.flush()

    class Handle:  # what the embedded executor's handle carries
        id = handle.id
        endpoints = server.endpoints

    mon = zmqmon.monitor(Handle())
    assert isinstance(mon, ExecutionMonitor) and mon.execution_id == handle.id
    mon.close()
    monkeypatch.setenv("ZMQMON_EVENTS", server.endpoints["events"])
    monkeypatch.setenv("ZMQMON_STATE", server.endpoints["state"])
    by_env = monitor(handle.id)  # endpoints from the environment
    assert by_env.state.status == "completed"  # type: ignore[union-attr]
    by_env.close()
    listing = monitor(dict(server.endpoints))
    assert isinstance(listing, ExecutionsMonitor)
    listing.close()

    class Bare:
        id = "x"
        endpoints = None

    with pytest.raises(ValueError, match="carries no endpoints"):
        monitor(Bare())
    with pytest.raises(TypeError):
        monitor(42)


def test_events_log_is_bounded(server: Any) -> None:
    handle = server.submit(_workflow(seconds=0.3, steps=30))
    mon = ExecutionMonitor(handle.id, log_size=5, **server.endpoints)
    try:
        mon.wait(30)
        lines = mon._log_view.value.split("\n")
        assert len(lines) == 5 and "execution:completed" in lines[0]  # newest first
    finally:
        mon.close()


def test_a_silent_publisher_is_shown(server: Any) -> None:
    # A synthetic execution, published straight through the service's publisher.
    pub = server.publisher
    pub.emit_execution_started("silent-1", "wf", workflow_name="Silent", agent_count=0)
    server.store.flush()
    mon = ExecutionMonitor("silent-1", heartbeat_timeout=0.5, **server.endpoints)
    try:
        wait_for(lambda: mon.publisher_alive, 10, message="a heartbeat")
        assert "no heartbeat" not in mon._footer.value
        pub.close()  # the event stream (and its heartbeats) stops
        wait_for(lambda: "no heartbeat" in mon._footer.value, 10, message="the notice")
        assert mon.feed_alive  # still waiting for the stream to come back
    finally:
        mon.close()
    assert not mon.feed_alive
