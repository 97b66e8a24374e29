"""Subscriber over real sockets: joins at any moment, real HWM drops, garbage, dead publisher."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import free_port, wait_for
from zmqmon.services.server import Server
from zmqmon.shells.proxy import Proxy
from zmqmon.shells.publisher import EventPublisher
from zmqmon.shells.subscriber import Subscriber

WF = "wf-burst"
PAD = "x" * 4000  # big events: a burst overflows socket buffers, so a tiny HWM really drops
N = 3000  # progress events in a burst


def start(pub: EventPublisher, eid: str) -> None:
    pub.emit_execution_started(eid, WF, workflow_name="Burst", agent_count=1)


def progress(pub: EventPublisher, eid: str, count: int) -> None:
    for i in range(count):
        pub.emit_agent_progress(eid, WF, "a", "A", i % 101, PAD)


def finish(pub: EventPublisher, eid: str) -> None:
    pub.emit_execution_completed(eid, WF, duration_ms=1, results={})


def new_id() -> str:
    return uuid.uuid4().hex


def collect(sub: Subscriber, eid: str, timeout: float = 30.0) -> list[int]:
    """Receive until the execution's state is terminal and nothing more is queued."""
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = sub.recv(0.1)
        if event is not None:
            assert event.execution_id == eid
            seqs.append(event.seq)
            continue
        state = sub.states.get(eid)
        if state is not None and state.is_terminal:
            return seqs
    pytest.fail(f"execution {eid} not complete after {timeout}s; got {len(seqs)} events")


def make_server(tmp_path: Path, sndhwm: int = 100_000, **kw: Any) -> Server:
    return Server(
        kw.pop("events", "tcp://127.0.0.1:0"),
        kw.pop("state", "tcp://127.0.0.1:0"),
        kw.pop("db", tmp_path / "zmqmon.sqlite3"),
        sndhwm=sndhwm,
        heartbeat_interval=0.1,
        **kw,
    )


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path, sndhwm=2).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path).start()
    try:
        yield srv
    finally:
        srv.stop()


def run_join(server: Server, when: str, *, rcvhwm: int) -> tuple[list[int], int, Subscriber, str]:
    """Publish one execution of N+2 events; join ``before`` it, in its ``middle``, or at its
    ``end``. The burst is published while the subscriber does not read, so that with a tiny
    HWM (PUB sndhwm and SUB rcvhwm) messages are dropped. Returns (seqs, first expected seq,
    the subscriber, the execution id)."""
    pub, eid = server.publisher, new_id()
    sub = Subscriber(server.endpoints["events"], server.endpoints["state"], rcvhwm=rcvhwm)
    snap = None
    if when == "before":
        snap = sub.subscribe_execution(eid)
        assert snap is None
        start(pub, eid)
        progress(pub, eid, N)
        finish(pub, eid)
    elif when == "middle":
        start(pub, eid)
        progress(pub, eid, N // 2)
        snap = sub.subscribe_execution(eid)
        progress(pub, eid, N - N // 2)
        finish(pub, eid)
    else:
        start(pub, eid)
        progress(pub, eid, N)
        finish(pub, eid)
        server.store.flush()
        snap = sub.subscribe_execution(eid)
        assert snap is not None and snap.is_terminal
    first = (snap.last_seq if snap else 0) + 1
    return collect(sub, eid), first, sub, eid


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["before", "middle", "end"])
def test_join_any_moment_complete_once_in_order(roomy: Server, when: str) -> None:
    seqs, first, sub, eid = run_join(roomy, when, rcvhwm=100_000)
    with sub:
        assert seqs == list(range(first, N + 3))
        assert sub.states[eid] == roomy.store.state(eid)
        assert sub.states[eid].status == "completed"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["before", "middle", "end"])
def test_join_with_tiny_hwm_repairs_real_drops(tiny: Server, when: str) -> None:
    seqs, first, sub, _ = run_join(tiny, when, rcvhwm=10)
    with sub:
        assert seqs == list(range(first, N + 3))  # nothing missing, nothing twice, in order
        if when != "end":  # joined while publishing: messages really dropped and were fetched
            assert sub.stats.fetched > 0
            assert sub.stats.fetches > 0


@pytest.mark.timeout(60)
def test_after_seq_resume_and_reducer_state(roomy: Server) -> None:
    pub, eid = roomy.publisher, new_id()
    start(pub, eid)
    progress(pub, eid, 20)
    finish(pub, eid)
    roomy.store.flush()
    with Subscriber(roomy.endpoints["events"], roomy.endpoints["state"]) as sub:
        assert sub.subscribe_execution(eid, after_seq=10) is None
        seqs = collect(sub, eid)
        assert seqs == list(range(11, 23))
        assert sub.states[eid] == roomy.store.state(eid)


@pytest.mark.timeout(60)
def test_workflow_and_topic_subscriptions(roomy: Server) -> None:
    pub = roomy.publisher
    with Subscriber(roomy.endpoints["events"], roomy.endpoints["state"]) as sub:
        sub.subscribe_workflow(WF)
        other = new_id()
        # Wait until the subscription is live: a probe execution's events arrive.
        probe = new_id()
        start(pub, probe)

        def probe_arrives() -> bool:
            pub.emit_execution_progress(probe, WF, 1)
            return sub.recv(0.05) is not None

        wait_for(probe_arrives, message="workflow subscription live")
        finish(pub, probe)
        collect(sub, probe)  # the probe, whole (its first events fetched), and nothing else
        eid = new_id()
        start(pub, eid)
        pub.emit_execution_started(other, "another-workflow", workflow_name="X", agent_count=0)
        progress(pub, eid, 5)
        finish(pub, eid)
        got = collect(sub, eid)
        assert got == list(range(1, 8))
        assert other not in sub.states
        sub.unsubscribe_workflow(WF)
        sub.subscribe_topic(f"exec/{other}/")
        pub.emit_execution_cancelled(other, "another-workflow", "test")
        ev = wait_for(lambda: sub.recv(0.05), message="topic subscription delivers")
        assert (ev.execution_id, ev.type) == (other, "execution:started")  # history fetched
        ev = wait_for(lambda: sub.recv(0.05), message="then the live event")
        assert (ev.execution_id, ev.seq) == (other, 2)


@pytest.mark.timeout(60)
def test_unsubscribe_while_iterating_stops_delivery(roomy: Server) -> None:
    pub, eid = roomy.publisher, new_id()
    with Subscriber(roomy.endpoints["events"], roomy.endpoints["state"]) as sub:
        sub.subscribe_execution(eid)
        start(pub, eid)
        progress(pub, eid, 50)
        for event in sub:
            if event.seq == 3:
                sub.unsubscribe_execution(eid)
                break
        assert sub.recv(0.3) is None
        finish(pub, eid)
        assert sub.recv(0.3) is None


@pytest.mark.timeout(60)
def test_garbage_through_the_proxy_is_skipped(roomy: Server, caplog: Any) -> None:
    with Proxy("tcp://127.0.0.1:0", "tcp://127.0.0.1:0") as proxy:
        ctx = zmq.Context.instance()
        rogue = ctx.socket(zmq.PUB)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(proxy.endpoints["frontend"])
        real = EventPublisher(">" + proxy.endpoints["frontend"], store=roomy.store)
        eid = new_id()
        sub = Subscriber(proxy.endpoints["backend"], roomy.endpoints["state"])
        try:
            sub.subscribe_topic("exec/")
            sub.subscribe_execution(eid)
            garbage = [
                [b"exec/x"],  # one frame
                [b"exec/x/agent:progress", b"{not json"],
                [b"exec/x/agent:progress", b'{"type": "agent:progress", "seq": "no"}'],
                [b"exec/y/execution:started", b'{"type": "nope"}'],
            ]

            def flood() -> bool:
                for msg in garbage:
                    rogue.send_multipart(msg)
                return sub.recv(0.02) is None and sub.stats.garbage >= len(garbage)

            wait_for(flood, message="garbage reaches the subscriber")
            start(real, eid)
            progress(real, eid, 30)
            for msg in garbage:
                rogue.send_multipart(msg)
            finish(real, eid)
            assert collect(sub, eid) == list(range(1, 33))
            assert any("malformed" in r.getMessage() for r in caplog.records)
        finally:
            sub.close()
            real.close()
            rogue.close()


@pytest.mark.timeout(60)
def test_through_the_proxy_with_drops_same_as_direct(tmp_path: Path) -> None:
    # The executor binds; the proxy's XSUB connects to it (">endpoint"), tiny HWM on the PUB.
    with (
        make_server(tmp_path, sndhwm=2) as server,
        Proxy(">" + server.endpoints["events"], "tcp://127.0.0.1:0") as proxy,
        Subscriber(proxy.endpoints["backend"], server.endpoints["state"], rcvhwm=10) as sub,
    ):
        eid = new_id()
        assert sub.subscribe_execution(eid) is None
        start(server.publisher, eid)
        progress(server.publisher, eid, N)
        finish(server.publisher, eid)
        assert collect(sub, eid) == list(range(1, N + 3))
        assert sub.publisher_alive


@pytest.mark.timeout(60)
def test_dead_publisher_detected_and_recovered(tmp_path: Path) -> None:
    events, state = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    db = tmp_path / "same.sqlite3"
    changes: list[bool] = []
    first = make_server(tmp_path, events=events, state=state, db=db).start()
    sub = Subscriber(events, state, heartbeat_timeout=0.5, on_publisher_change=changes.append)
    second = None
    try:
        eid = new_id()
        sub.subscribe_execution(eid)
        start(first.publisher, eid)
        progress(first.publisher, eid, 3)
        wait_for(lambda: sub.recv(0.05) is None and sub.stats.delivered == 4, message="4 events")
        wait_for(lambda: sub.publisher_alive, message="heartbeats seen")
        first.stop()  # the execution is left running: the next server marks it interrupted
        wait_for(lambda: sub.recv(0.05) is None and not sub.publisher_alive, message="lost")
        second = make_server(tmp_path, events=events, state=state, db=db).start()
        wait_for(lambda: sub.recv(0.05) is None and sub.publisher_alive, message="recovered")
        # Repair went on: the interrupted execution's terminal event (published by the new
        # server at start, likely before we reconnected) reaches us anyway.
        wait_for(lambda: sub.recv(0.05) is None and sub.states[eid].is_terminal)
        assert sub.states[eid].status == "failed" and sub.states[eid].last_seq == 5
        assert changes == [True, False, True]
        later = new_id()
        sub.subscribe_execution(later)
        start(second.publisher, later)
        finish(second.publisher, later)
        assert collect(sub, later) == [1, 2]
    finally:
        sub.close()
        if second is not None:
            second.stop()
        first.stop()


def test_many_subscribers_do_not_leak_sockets(roomy: Server) -> None:
    ctx = zmq.Context()
    try:
        for _ in range(50):
            with Subscriber(roomy.endpoints["events"], roomy.endpoints["state"], context=ctx):
                pass
        assert len(ctx._sockets) == 0  # every socket closed
    finally:
        ctx.term()
