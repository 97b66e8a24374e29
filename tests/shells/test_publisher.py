"""EventPublisher: frames on a real PUB socket, a plain SUB in another process, seq under
concurrency, heartbeats, the store receiving the same bytes."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import wait_for
from zmqmon.core.wire import decode_message
from zmqmon.shells.publisher import EventPublisher
from zmqmon.shells.store import Store

# The child knows only contract §3: a prefix, two frames, JSON. No zmqmon import.
CHILD = r"""
import json, sys, zmq
endpoint, execution_id = sys.argv[1], sys.argv[2]
sub = zmq.Context().socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 0)
sub.connect(endpoint)
sub.setsockopt(zmq.SUBSCRIBE, b"exec/warmup/")
sub.setsockopt(zmq.SUBSCRIBE, ("exec/" + execution_id + "/").encode())
live = False
events = []
while True:
    if not sub.poll(20000):
        print(json.dumps({"error": "timeout", "events": events}), flush=True)
        sys.exit(1)
    topic, payload = sub.recv_multipart()
    if topic.startswith(b"exec/warmup/"):
        if not live:
            live = True
            print("live", flush=True)
        continue
    event = json.loads(payload)
    assert topic.decode() == "exec/%s/%s" % (event["executionId"], event["type"]), topic
    events.append(event)
    if event["type"] in ("execution:completed", "execution:failed", "execution:cancelled"):
        break
print(json.dumps({"events": events}), flush=True)
"""


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


def sub_socket(ctx: zmq.Context[Any], endpoint: str, *prefixes: bytes) -> Any:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(endpoint)
    for prefix in prefixes:
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
    return sub


def wait_live(pub: EventPublisher, sub: Any) -> None:
    """Emit on a throwaway execution until the SUB sees one (slow joiner), then drain.

    Subscriptions travel in order, so those made before this one are live too."""
    sub.setsockopt(zmq.SUBSCRIBE, b"exec/warmup/")

    def seen() -> bool:
        pub.emit_execution_progress("warmup", "w", 0)
        return bool(sub.poll(10))

    wait_for(seen, timeout=10, message="SUB live")
    sub.setsockopt(zmq.UNSUBSCRIBE, b"exec/warmup/")
    while sub.poll(50):
        sub.recv_multipart()


def emit_run(pub: EventPublisher, execution_id: str, steps: int = 5) -> None:
    pub.emit_execution_started(execution_id, "wf", workflow_name="W", agent_count=1)
    pub.emit_agent_started(execution_id, "wf", "a", "A")
    for i in range(steps):
        pub.emit_agent_progress(execution_id, "wf", "a", "A", i * 10, f"step {i}")
    pub.emit_agent_completed(execution_id, "wf", "a", "A", result={"n": 1}, duration_ms=3)
    pub.emit_execution_completed(execution_id, "wf", duration_ms=4, results={"a": {"n": 1}})


@pytest.mark.timeout(60)
def test_plain_sub_in_another_process_receives_one_execution_by_prefix(
    ctx: zmq.Context[Any],
) -> None:
    with EventPublisher("tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0.1) as pub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:") and not pub.endpoint.endswith(":0")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, pub.endpoint, "exec-42"],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(line) for line in child.stdout or ()], daemon=True
        )
        reader.start()
        try:

            def live() -> bool:
                pub.emit_execution_progress("warmup", "w", 0)
                try:
                    return lines.get(timeout=0.02).strip() == "live"
                except queue.Empty:
                    return False

            wait_for(live, timeout=20, message="child SUB live")
            pub.emit_execution_started("other", "wf", workflow_name="X", agent_count=0)
            emit_run(pub, "exec-42")
            pub.emit_execution_completed("other", "wf", duration_ms=1, results={})
            assert child.wait(timeout=30) == 0
            result = json.loads(lines.get(timeout=5))
        finally:
            child.kill()
            child.wait()
    events = result["events"]
    assert {e["executionId"] for e in events} == {"exec-42"}
    assert [e["seq"] for e in events] == list(range(1, 10))
    assert events[0]["type"] == "execution:started"
    assert events[0]["data"]["workflowName"] == "W"
    assert events[4]["data"] == {"agentId": "a", "agentName": "A", "progress": 20,
                                 "message": "step 2"}  # fmt: skip
    assert events[-1]["type"] == "execution:completed"
    assert events[-1]["timestamp"].endswith("Z")


@pytest.mark.timeout(60)
def test_seq_is_gap_free_per_execution_with_many_threads(
    ctx: zmq.Context[Any], tmp_path: Path
) -> None:
    threads_n, executions_n, per_execution = 8, 12, 60
    with (
        Store(tmp_path / "s.sqlite3") as store,
        EventPublisher(
            "tcp://127.0.0.1:0", context=ctx, store=store, sndhwm=0, heartbeat_interval=0
        ) as pub,
    ):
        sub = sub_socket(ctx, pub.endpoint, b"exec/x")
        wait_live(pub, sub)
        barrier = threading.Barrier(threads_n)

        def work(t: int) -> None:
            barrier.wait()
            for i in range(per_execution):
                for e in range(executions_n):  # every thread hits every execution
                    pub.emit_agent_progress(f"x{e}", "wf", f"t{t}", "T", i % 101)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = threads_n * executions_n * per_execution
        seen: dict[str, list[int]] = {}
        for _ in range(total):
            assert sub.poll(5000), "missing events on the SUB"
            event = decode_message(sub.recv_multipart())
            seen.setdefault(event.execution_id, []).append(event.seq)  # type: ignore[union-attr]
        expected = list(range(1, threads_n * per_execution + 1))
        assert len(seen) == executions_n
        for seqs in seen.values():
            assert seqs == expected  # gap-free and in publish order
        for e in range(executions_n):
            assert [ev["seq"] for ev in store.events(f"x{e}", limit=10_000)] == expected
        sub.close()


@pytest.mark.timeout(30)
async def test_emit_from_asyncio_tasks(ctx: zmq.Context[Any]) -> None:
    events: list[dict[str, Any]] = []
    with EventPublisher("tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0) as pub:

        async def task(n: int) -> None:
            for _ in range(20):
                events.append(pub.emit_agent_progress("ex", "wf", f"a{n}", "A", 1))
                await asyncio.sleep(0)

        await asyncio.gather(*(task(n) for n in range(5)))
    assert sorted(e["seq"] for e in events) == list(range(1, 101))


def test_store_receives_exactly_the_published_bytes(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    with (
        Store(tmp_path / "s.sqlite3") as store,
        EventPublisher("tcp://127.0.0.1:0", context=ctx, store=store, heartbeat_interval=0) as pub,
    ):
        sub = sub_socket(ctx, pub.endpoint, b"exec/e1/")
        wait_live(pub, sub)
        emit_run(pub, "e1", steps=2)
        received = []
        for _ in range(6):
            assert sub.poll(5000)
            received.append(sub.recv_multipart()[1])
        assert store.event_payloads("e1") == received
        sub.close()


def test_heartbeat_thread_sends_recent_executions_with_last_seq(ctx: zmq.Context[Any]) -> None:
    with EventPublisher(
        "tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0.05, publisher_id="pub-1"
    ) as pub:
        sub = sub_socket(ctx, pub.endpoint, b"sys/heartbeat")
        emit_run(pub, "hb-1", steps=1)

        def beat_with_execution() -> Any:
            while sub.poll(100):
                beat = decode_message(sub.recv_multipart())
                if "hb-1" in beat.executions:  # type: ignore[union-attr]
                    return beat
            return None

        beat = wait_for(beat_with_execution, timeout=10, message="heartbeat")
        assert beat.publisher_id == "pub-1"
        assert beat.executions["hb-1"] == 5
        assert beat.timestamp.endswith("Z")
        sub.close()


def test_heartbeat_drops_executions_finished_more_than_10s_ago(ctx: zmq.Context[Any]) -> None:
    now = [1000.0]
    with EventPublisher(
        "tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0, clock=lambda: now[0]
    ) as pub:
        emit_run(pub, "done", steps=1)
        pub.emit_execution_started("running", "wf", workflow_name="W", agent_count=1)
        assert pub.heartbeat() == {"done": 5, "running": 1}
        now[0] += 9.5
        assert pub.heartbeat() == {"done": 5, "running": 1}
        now[0] += 1.0  # 10.5 s after "done" finished; "running" never finishes
        assert pub.heartbeat() == {"running": 1}


def test_emit_after_close_still_reaches_the_store(ctx: zmq.Context[Any], tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        pub = EventPublisher("tcp://127.0.0.1:0", context=ctx, store=store, heartbeat_interval=0.05)
        pub.emit_execution_started("late", "wf", workflow_name="W", agent_count=0)
        pub.close()
        pub.close()  # idempotent
        pub.emit_execution_cancelled("late", "wf", reason="shutdown")
        assert [e["seq"] for e in store.events("late")] == [1, 2]


def test_bind_failure_raises(ctx: zmq.Context[Any]) -> None:
    with (
        EventPublisher("tcp://127.0.0.1:0", context=ctx, heartbeat_interval=0) as pub,
        pytest.raises(zmq.ZMQError),
    ):
        EventPublisher(pub.endpoint, context=ctx, heartbeat_interval=0)


def test_an_oversized_event_is_truncated_on_the_wire_and_in_the_store(
    ctx: zmq.Context[Any], tmp_path: Path
) -> None:
    with (
        Store(tmp_path / "s.sqlite3") as store,
        EventPublisher("tcp://127.0.0.1:0", context=ctx, store=store, heartbeat_interval=0) as pub,
    ):
        sub = sub_socket(ctx, pub.endpoint, b"exec/big/")
        wait_live(pub, sub)
        pub.emit_execution_started("big", "wf", workflow_name="W", agent_count=1)
        pub.emit_agent_failed("big", "wf", "a", "A", error="x" * 3_000_000, error_type="E")
        frames = []
        for _ in range(2):
            assert sub.poll(5000)
            frames.append(sub.recv_multipart())
        payload = frames[1][1]
        assert len(payload) <= 1024 * 1024
        event = json.loads(payload)
        assert event["data"]["truncated"] is True and event["seq"] == 2
        assert store.event_payloads("big")[1] == payload
        state = store.state("big")
        assert state is not None and state.agents[0].status == "failed"
        assert len(state.agents[0].error or "") < 1000  # the truncated note, not 3 MB
        sub.close()
