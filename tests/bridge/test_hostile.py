"""Findings of an attack on the bridge, each a test (the security issue): one client's afterSeq
moves no one else's cursor; thousands of subscriptions come and go without freezing the bridge;
connections are capped, in all and per user; a slow client gets its 1013."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed
from zmqmon_bridge.server import Limits

from tests.bridge.conftest import open_client, terminal, workflow
from tests.bridge.test_limits import closed_code
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)


async def test_an_after_seq_far_past_the_end_moves_only_its_own_cursor(
    server: Any, make_bridge: Any
) -> None:
    bridge = make_bridge()
    handle = server.submit(workflow(seconds=0.6, steps=6, agents=2))
    rogue = await open_client(bridge.ws_url)
    await rogue.send({"type": "subscribe", "executionId": handle.id, "afterSeq": 10**12})
    await rogue.expect("subscribed")
    by_id, by_topic = await open_client(bridge.ws_url), await open_client(bridge.ws_url)
    await by_id.send({"type": "subscribe", "executionId": handle.id, "afterSeq": 0})
    await by_id.expect("subscribed")
    await by_topic.send({"type": "subscribe", "topic": "exec/"})
    await by_topic.expect("subscribed")
    await by_id.until(terminal, timeout=30)
    await by_topic.until(terminal, timeout=30)
    n = len(server.store.events(handle.id))
    assert [e["seq"] for e in by_id.events] == list(range(1, n + 1))
    assert by_topic.events[-1]["seq"] == n  # the terminal event reached the others too
    assert rogue.events == []  # nothing past 10**12 exists
    for c in (rogue, by_id, by_topic):
        await c.close()


async def test_thousands_of_subscriptions_dropping_at_once_do_not_freeze_the_bridge(
    server: Any, make_bridge: Any
) -> None:
    bridge = make_bridge(Limits(max_subscriptions=300, rate=1000, burst=1000))
    publisher = server.publisher
    watcher = await open_client(bridge.ws_url)
    await watcher.send({"type": "subscribe", "topic": "exec/"})  # the lane tracks them all
    await watcher.expect("subscribed")
    for k in range(200):  # executions the lane tracks
        publisher.emit_execution_started(
            f"x{k}", "wf", workflow_name="W", agent_count=1, user_id=None
        )
    clients = [await open_client(bridge.ws_url) for _ in range(40)]

    async def hold(c: Any, i: int) -> None:
        for k in range(250):
            await c.send({"type": "subscribe", "topic": f"exec/held-{i}-{k}/"})
        for _ in range(250):
            await c.expect("subscribed")

    await asyncio.gather(*(hold(c, i) for i, c in enumerate(clients)))
    wait_for(lambda: len(bridge.call(lambda: bridge.hub.lanes["log"].tracked())) == 200)
    assert bridge.call(lambda: bridge.hub.subscription_count) == 40 * 250 + 1
    for c in clients:
        await c.ws.close()
    # Answered while the 10,000 subscriptions are torn down (it took a minute before: each
    # unsubscribe walked every tracked execution times every prefix).
    await watcher.send({"type": "ping"})
    while (await watcher.recv(10))["type"] != "pong":
        pass
    wait_for(lambda: bridge.call(lambda: bridge.hub.subscription_count) == 1, timeout=10)
    await watcher.close()


async def test_connections_are_capped_in_all(make_bridge: Any) -> None:
    bridge = make_bridge(Limits(max_connections=3))
    held = [await open_client(bridge.ws_url) for _ in range(3)]
    refused = await open_client_or_close(bridge.ws_url)
    assert refused == 1013
    await held[0].close()
    wait_for(lambda: bridge.call(lambda: len(bridge.hub.connections)) == 2)
    again = await open_client(bridge.ws_url)  # room again
    await again.send({"type": "ping"})
    await again.expect("pong")
    for c in (*held[1:], again):
        await c.close()


async def test_connections_are_capped_per_user(make_bridge: Any) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    bridge = make_bridge(Limits(max_connections_per_user=2), jwt_secret=secret)

    def url(user: str) -> str:
        token = jwt.encode({"sub": user, "exp": time.time() + 600}, secret, algorithm="HS256")
        return f"{bridge.ws_url}?token={token}"

    alice = [await open_client(url("alice")) for _ in range(2)]
    assert await open_client_or_close(url("alice")) == 1013
    bob = await open_client(url("bob"))  # another user is not affected
    await bob.send({"type": "ping"})
    await bob.expect("pong")
    for c in (*alice, bob):
        await c.close()


async def open_client_or_close(url: str) -> int | None:
    """Open a connection the bridge is expected to refuse: the close code it sends."""
    from websockets.asyncio.client import connect

    ws = await connect(url)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_a_log_client_that_never_reads_gets_its_1013(server: Any, make_bridge: Any) -> None:
    bridge = make_bridge(Limits(slow_timeout=0.5))
    publisher = server.publisher
    execution_id = str(uuid.uuid4())
    publisher.emit_execution_started(
        execution_id, "wf", workflow_name="Big", agent_count=1, user_id=None
    )
    slow = await open_client(bridge.ws_url, max_size=None, max_queue=1)
    await slow.send({"type": "subscribe", "executionId": execution_id})
    await slow.expect("subscribed")
    await slow.expect("snapshot")
    blob = "z" * (64 * 1024)

    def publish() -> None:
        for i in range(300):  # ~20 MB: far more than the socket buffers hold
            publisher.emit_agent_progress(execution_id, "wf", "a", "A", i % 100, message=blob)
            if bridge.hub.counters.slow_closes:
                return
            time.sleep(0.002)

    await asyncio.to_thread(publish)
    wait_for(lambda: bridge.hub.counters.slow_closes == 1, message="closed as slow")
    assert await closed_code(slow, timeout=30) == 1013  # the code reached it
