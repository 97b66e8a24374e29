"""Many executors behind one proxy: heartbeats name each execution's state service, and the
subscribers and the bridge ask each execution's snapshot and gaps of its owner, unconfigured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.conftest import open_client, terminal, workflow
from tests.conftest import wait_for
from tests.core.test_clone import hb
from zmqmon.core.clone import CloneCore
from zmqmon.core.delivery import FetchEvents, FetchSnapshot, Snapshot
from zmqmon.core.events import Event
from zmqmon.core.wire import Heartbeat
from zmqmon.services.server import Server
from zmqmon.shells.proxy import Proxy
from zmqmon.shells.subscriber import Subscriber

pytestmark = pytest.mark.timeout(60)


def test_the_core_asks_each_execution_of_the_service_its_heartbeats_name() -> None:
    core = CloneCore[Event]()
    core.subscribe_topic("exec/")
    core.on_heartbeat(
        Heartbeat(publisher_id="a", timestamp="t", executions={"x": 3}, state="tcp://a:1"), 0.0
    )
    core.on_heartbeat(hb(y=2), 0.0)  # a publisher that names no state service
    requests = {r.execution_id: r for r in core.poll(0.0)}
    assert requests["x"] == FetchEvents("x", 0, 1000, "tcp://a:1")
    assert requests["y"] == FetchEvents("y", 0, 1000, None)  # the configured one
    assert core.subscribe_execution("z") == FetchSnapshot("z", None)
    core.on_heartbeat(
        Heartbeat(publisher_id="b", timestamp="t", executions={"w": 1}, state="tcp://b:1"), 0.0
    )
    core.unsubscribe_execution("z")
    assert core.subscribe_execution("w") == FetchSnapshot("w", "tcp://b:1")


@pytest.fixture
def two_behind_a_proxy(tmp_path: Path) -> Iterator[tuple[Proxy, Server, Server]]:
    proxy = Proxy("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").start()
    front = ">" + proxy.endpoints["frontend"]
    servers = [
        Server(front, "tcp://127.0.0.1:0", tmp_path / f"{name}.sqlite3").start()
        for name in ("a", "b")
    ]
    try:
        yield proxy, servers[0], servers[1]
    finally:
        for s in servers:
            s.stop()
        proxy.close()


def test_a_subscriber_on_the_proxy_repairs_each_execution_from_its_owner(
    two_behind_a_proxy: tuple[Proxy, Server, Server],
) -> None:
    proxy, a, b = two_behind_a_proxy
    sub = Subscriber(proxy.endpoints["backend"], None, mode="state")  # no state service given
    try:
        sub.subscribe_topic("exec/")
        wait_for(lambda: sub.publisher_alive, message="heartbeats through the proxy")
        # Started before the subscriber joins: only their owners can tell how they began.
        ha, hb_ = a.submit(workflow(seconds=1.2, steps=6)), b.submit(workflow(seconds=1.2, steps=6))
        wait_for(lambda: ha.state.last_seq > 4 and hb_.state.last_seq > 4)
        late = Subscriber(proxy.endpoints["backend"], None, mode="state")
        late.subscribe_topic("exec/")
        seen: dict[str, Any] = {}

        def done() -> bool:
            while (item := late.recv(0.05)) is not None:
                if isinstance(item, Snapshot):
                    seen[item.execution_id] = item.state
                else:
                    seen[item.execution_id] = late.states[item.execution_id]
            return all((s := seen.get(h.id)) is not None and s.is_terminal for h in (ha, hb_))

        wait_for(done, timeout=30, message="both executions, from both owners")
        assert seen[ha.id] == ha.wait(5) and seen[hb_.id] == hb_.wait(5)
        assert late.stats.snapshots >= 2  # joined each by its owner's snapshot
        late.close()
    finally:
        sub.close()


async def test_a_bridge_on_the_proxy_without_a_state_service_serves_both(
    two_behind_a_proxy: tuple[Proxy, Server, Server],
) -> None:
    from zmqmon_bridge.server import Bridge

    proxy, a, b = two_behind_a_proxy
    bridge = Bridge(proxy.endpoints["backend"], None, "127.0.0.1", 0).start()
    try:
        c = await open_client(bridge.ws_url)
        await c.send({"type": "subscribe", "topic": "exec/"})
        await c.expect("subscribed")
        wait_for(lambda: bridge.call(lambda: bridge.hub.alive()), message="heartbeats")
        ha, hb_ = a.submit(workflow(seconds=0.6, steps=3)), b.submit(workflow(seconds=0.6, steps=3))
        wait_for(lambda: len(bridge.call(lambda: dict(bridge.hub.lanes["log"].owners))) >= 2)
        for h in (ha, hb_):  # a snapshot of each, from its own service
            d = await open_client(bridge.ws_url)
            await d.send({"type": "subscribe", "executionId": h.id, "afterSeq": 0})
            await d.expect("subscribed")
            await d.until(terminal, timeout=30)
            assert [e["seq"] for e in d.events] == list(range(1, len(d.events) + 1))
            await d.close()
        await c.close()
    finally:
        await asyncio.to_thread(bridge.stop)
