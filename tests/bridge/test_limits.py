"""Limits: 1009 frame too big, 1008 rate limit, 1013 slow client — the others never slowed."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from zmqmon_bridge.server import Limits

from tests.bridge.conftest import open_client
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


async def closed_code(c: Any, timeout: float = 15.0) -> int | None:
    """Read until the connection closes; the close code the server sent."""
    try:
        while True:
            await c.recv(timeout)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None


async def test_frame_over_one_mib_closes_with_1009(make_bridge: Any) -> None:
    bridge = make_bridge()
    c = await open_client(bridge.ws_url, max_size=None)
    other = await open_client(bridge.ws_url)
    await c.ws.send("x" * (1024 * 1024 + 1))
    assert await closed_code(c) == 1009
    await other.send({"type": "ping"})
    await other.expect("pong")  # the others go on
    # exactly 1 MiB is still accepted (and refused as JSON, not closed)
    d = await open_client(bridge.ws_url, max_size=None)
    await d.ws.send("x" * (1024 * 1024))
    assert (await d.expect("error"))["code"] == "invalid_json"
    await other.close()
    await d.close()


async def test_rate_limit_errors_then_closes_with_1008(make_bridge: Any) -> None:
    bridge = make_bridge(Limits(rate=1.0, burst=3, max_strikes=5))
    c = await open_client(bridge.ws_url)
    for _ in range(20):
        try:
            await c.send({"type": "ping"})
        except ConnectionClosed:
            break
    kinds: list[str] = []
    code = None
    try:
        while True:
            m = await c.recv(10)
            kinds.append(m["type"] if m["type"] != "error" else m["code"])
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
    assert kinds[:3] == ["pong", "pong", "pong"]
    assert kinds[3:] == ["rate_limited"] * 5
    assert code == 1008
    assert bridge.hub.counters.rate_closes == 1


async def test_slow_client_closed_with_1013_fast_client_gets_everything(
    server: Any, make_bridge: Any
) -> None:
    bridge = make_bridge(Limits(max_send_buffer=1024 * 1024, slow_timeout=0.5))
    publisher = server.publisher
    execution_id, workflow_id = str(uuid.uuid4()), "wf-big"
    publisher.emit_execution_started(
        execution_id, workflow_id, workflow_name="Big", agent_count=1, user_id=None
    )
    fast = await open_client(bridge.ws_url, max_size=None)
    slow = await open_client(bridge.ws_url, max_size=None, max_queue=1)
    for c in (fast, slow):
        await c.send({"type": "subscribe", "executionId": execution_id})
        await c.expect("subscribed")
        await c.expect("snapshot")
    # slow now never reads. ~20 MiB of events: far more than socket buffers hold.
    blob = "y" * (100 * 1024)
    n = 200

    def publish() -> None:
        for i in range(n):
            time.sleep(0.005)  # ~20 MB/s: a rate a reading client keeps up with on a busy CI box
            publisher.emit_agent_progress(
                execution_id, workflow_id, "a", "A", progress=min(99, i), message=blob
            )
        publisher.emit_execution_completed(execution_id, workflow_id, duration_ms=1, results={})

    reading = asyncio.create_task(
        fast.until(lambda m: m["type"] == "execution:completed", timeout=30)
    )  # the fast client reads all along
    await asyncio.to_thread(publish)
    msgs = await reading
    assert [m["seq"] for m in msgs] == list(range(2, n + 3))  # every event, in order
    wait_for(lambda: bridge.hub.counters.slow_closes == 1, message="slow client closed")
    assert await closed_code(slow) == 1013
    assert bridge.call(lambda: len(bridge.hub.connections)) == 1
    await fast.close()


def test_limits_are_configurable_by_environment() -> None:
    limits = Limits.from_env(
        {"ZMQMON_BRIDGE_RATE": "20", "ZMQMON_BRIDGE_MAX_SEND_BUFFER": "65536", "OTHER": "x"}
    )
    assert limits.rate == 20.0 and limits.max_send_buffer == 65536
    assert isinstance(limits.max_send_buffer, int)
    assert limits.max_frame == Limits().max_frame
    with pytest.raises(ValueError, match="ZMQMON_BRIDGE_BURST"):
        Limits.from_env({"ZMQMON_BRIDGE_BURST": "lots"})
