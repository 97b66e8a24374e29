"""AsyncSubscriber over real sockets: the same guarantees as the sync face, plus subscribing and
unsubscribing from other tasks while one task iterates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from tests.conftest import free_port
from tests.shells.test_subscriber import N, finish, make_server, new_id, progress, start
from zmqmon.services.server import Server
from zmqmon.shells.async_subscriber import AsyncSubscriber
from zmqmon.shells.proxy import Proxy


async def collect(sub: AsyncSubscriber, eid: str, timeout: float = 30.0) -> list[int]:
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = await sub.recv(0.1)
        if event is not None:
            assert event.execution_id == eid
            seqs.append(event.seq)
            continue
        state = sub.states.get(eid)
        if state is not None and state.is_terminal:
            return seqs
    pytest.fail(f"execution {eid} not complete after {timeout}s; got {len(seqs)} events")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a predicate, yielding to other tasks between checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s")
        await asyncio.sleep(0.02)


async def until_recv(sub: AsyncSubscriber, predicate: Callable[[], bool]) -> None:
    """Receive (and drop) events until a predicate holds."""
    deadline = time.monotonic() + 10.0
    while True:
        await sub.recv(0.05)
        if predicate():
            return
        if time.monotonic() > deadline:
            pytest.fail("timed out after 10s")


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path, sndhwm=2).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["before", "middle", "end"])
async def test_join_any_moment_with_tiny_hwm(tiny: Server, when: str) -> None:
    pub, eid = tiny.publisher, new_id()
    async with AsyncSubscriber(tiny.endpoints["events"], tiny.endpoints["state"], rcvhwm=10) as sub:
        snap = None
        if when == "before":
            snap = await sub.subscribe_execution(eid)
            assert snap is None
            start(pub, eid)
            progress(pub, eid, N)
            finish(pub, eid)
        elif when == "middle":
            start(pub, eid)
            progress(pub, eid, N // 2)
            snap = await sub.subscribe_execution(eid)
            progress(pub, eid, N - N // 2)
            finish(pub, eid)
        else:
            start(pub, eid)
            progress(pub, eid, N)
            finish(pub, eid)
            tiny.store.flush()
            snap = await sub.subscribe_execution(eid)
            assert snap is not None and snap.is_terminal
        first = (snap.last_seq if snap else 0) + 1
        assert await collect(sub, eid) == list(range(first, N + 3))
        assert sub.states[eid] == tiny.store.state(eid)
        if when != "end":
            assert sub.stats.fetched > 0


@pytest.mark.timeout(60)
async def test_subscribe_and_unsubscribe_from_another_task_while_iterating(
    server: Server,
) -> None:
    pub = server.publisher
    async with AsyncSubscriber(server.endpoints["events"], server.endpoints["state"]) as sub:
        got: list[tuple[str, int]] = []

        async def reader() -> None:
            async for event in sub:
                got.append((event.execution_id, event.seq))

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader is now awaiting recv
        a, b = new_id(), new_id()
        assert await sub.subscribe_execution(a) is None  # not started yet
        start(pub, a)
        progress(pub, a, 5)
        finish(pub, a)
        await until(lambda: (a, 7) in got)
        assert got == [(a, s) for s in range(1, 8)]

        sub.subscribe_workflow("wf-b")
        pub.emit_execution_started(b, "wf-b", workflow_name="B", agent_count=0)

        def b_seen() -> bool:
            pub.emit_execution_progress(b, "wf-b", 10)  # until the subscription is live
            return any(e == b for e, _ in got)

        await until(b_seen)
        sub.unsubscribe_workflow("wf-b")
        count = len(got)
        pub.emit_execution_progress(b, "wf-b", 20)
        pub.emit_execution_cancelled(b, "wf-b", "done")
        # Proof that the reader is still live: a new subscription's events arrive after b's.
        c = new_id()
        await sub.subscribe_execution(c)
        start(pub, c)
        finish(pub, c)
        await until(lambda: (c, 2) in got)
        assert all(e != b for e, _ in got[count:])
        sub.close()
        await asyncio.wait_for(task, 5)


@pytest.mark.timeout(60)
async def test_through_proxy_and_dead_publisher_recovery(tmp_path: Path) -> None:
    events, state = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    db = tmp_path / "same.sqlite3"
    first = make_server(tmp_path, events=events, state=state, db=db).start()
    proxy = Proxy(">" + events, "tcp://127.0.0.1:0").start()
    sub = AsyncSubscriber(proxy.endpoints["backend"], state, heartbeat_timeout=0.5)
    second = None
    try:
        eid = new_id()
        await sub.subscribe_execution(eid)
        start(first.publisher, eid)
        progress(first.publisher, eid, 2)

        await until_recv(sub, lambda: sub.publisher_alive and sub.stats.delivered == 3)
        first.stop()
        await until_recv(sub, lambda: not sub.publisher_alive)
        second = make_server(tmp_path, events=events, state=state, db=db).start()
        await until_recv(sub, lambda: sub.publisher_alive and sub.states[eid].is_terminal)
        assert sub.states[eid].status == "failed" and sub.states[eid].last_seq == 4
    finally:
        sub.close()
        proxy.close()
        if second is not None:
            second.stop()
        first.stop()


async def test_closing_many_async_subscribers_releases_sockets(server: Server) -> None:
    ctx = zmq.asyncio.Context()
    try:
        for _ in range(30):
            async with AsyncSubscriber(
                server.endpoints["events"], server.endpoints["state"], context=ctx
            ) as sub:
                sub.subscribe_topic("exec/")
                assert await sub.recv(0.01) is None
        assert len(ctx._sockets) == 0
    finally:
        ctx.term()
