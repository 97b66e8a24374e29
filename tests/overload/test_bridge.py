"""The WebSocket bridge under a burst it cannot relay as fast as it is published (contract §5).

The bridge runs as the real ``zmqmon bridge`` process; its clients are real websockets clients:
``log``-mode and ``state``-mode followers of every execution, one that reads nothing until the
burst is over, and a pinger. What must hold: log clients get every event once, in order; state
clients end with the exact state; the one that never read is not closed and ends exact too;
every ping is answered; the bridge's memory stays within its bounds; SIGTERM mid-burst stops it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import wait_for
from tests.overload.conftest import BridgeProcess, BurstService
from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.shells.client import StateClient

EXECUTIONS = 8
#: what the bridge may add during the burst: its upstream queue, two lanes' buffers, send queues
#: (18 MB measured here), whatever the burst's length
RSS_BOUND_MB = 80.0


async def subscribe(url: str, mode: str) -> ClientConnection:
    ws = await connect(url, max_size=None)
    assert json.loads(await ws.recv())["type"] == "connected"
    await ws.send(json.dumps({"type": "subscribe", "topic": "exec/", "mode": mode}))
    assert json.loads(await ws.recv())["type"] == "subscribed"
    return ws


class Follower:
    """A client following every execution: log (seqs) or state (folded, snapshots replace)."""

    def __init__(self, ws: ClientConnection, mode: str) -> None:
        self.ws, self.mode = ws, mode
        self.seqs: dict[str, list[int]] = {}
        self.states: dict[str, ExecutionState] = {}
        self.snapshots = 0

    def take(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            assert self.mode == "state"
            self.snapshots += 1
            self.states[msg["executionId"]] = ExecutionState.model_validate(msg["execution"])
            return
        assert "seq" in msg, msg
        eid = msg["executionId"]
        if self.mode == "log":
            self.seqs.setdefault(eid, []).append(msg["seq"])
            return
        current = self.states.get(eid)
        if current is not None:
            assert msg["seq"] == current.last_seq + 1, "a gap in a state-mode stream"
        self.states[eid] = apply_event(current, parse_event(msg))

    def done(self, last: dict[str, int]) -> bool:
        if self.mode == "log":
            return all(len(self.seqs.get(e, ())) >= n for e, n in last.items())
        return all((s := self.states.get(e)) and s.last_seq >= n for e, n in last.items())

    async def follow(self, last: asyncio.Future[dict[str, int]], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (last.done() and self.done(last.result())):
            raw = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time()))
            self.take(json.loads(raw))


async def pinger(url: str, stop: asyncio.Event, rtts: list[float]) -> int:
    """Ping every 50 ms; returns how many pings went unanswered."""
    async with connect(url) as ws:
        await ws.recv()
        unanswered = 0
        while not stop.is_set():
            t = time.monotonic()
            await ws.send('{"type": "ping"}')
            try:
                while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "pong":
                    pass
                rtts.append(time.monotonic() - t)
            except TimeoutError:
                unanswered += 1
            await asyncio.sleep(0.05)
        return unanswered


def metric(bridge: BridgeProcess, name: str) -> float:
    with urllib.request.urlopen(bridge.endpoints["http"] + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


async def test_bridge_under_a_burst(
    burst_service: BurstService, bridge_process: BridgeProcess
) -> None:
    url = bridge_process.endpoints["ws"]
    followers = [Follower(await subscribe(url, m), m) for m in ("log", "log", "state", "state")]
    lazy = await subscribe(url, "state")  # reads nothing until the burst is over
    await asyncio.sleep(0)  # (the subscriptions reach the bridge's SUB socket with the next beat)
    wait_for(lambda: metric(bridge_process, "zmqmon_bridge_upstream_alive") == 1)
    baseline = bridge_process.rss
    peak = [baseline]
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], bridge_process.rss)
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    last: asyncio.Future[dict[str, int]] = loop.create_future()
    rtts: list[float] = []
    ping_task = asyncio.create_task(pinger(url, stop, rtts))
    sampler = asyncio.create_task(sample())
    follows = [asyncio.create_task(f.follow(last, 60)) for f in followers]
    last.set_result(await asyncio.to_thread(burst_service.burst, 1.5, EXECUTIONS))
    await asyncio.gather(*follows)
    lazy_follower = Follower(lazy, "state")
    await lazy_follower.follow(last, 30)
    stop.set()
    unanswered = await ping_task
    await sampler

    with StateClient(burst_service.endpoints["state"]) as client:
        final = {eid: client.snapshot(eid) for eid in last.result()}
    for f in followers:
        if f.mode == "log":  # every event of every execution, once, in order
            assert f.seqs == {e: list(range(1, n + 1)) for e, n in last.result().items()}
        else:
            assert f.states == final
    assert lazy_follower.states == final and lazy_follower.snapshots > 0  # re-synced, not closed
    assert unanswered == 0 and len(rtts) > 10
    assert peak[0] - baseline < RSS_BOUND_MB
    repaired = metric(bridge_process, "zmqmon_bridge_gap_repairs_total") + metric(
        bridge_process, "zmqmon_bridge_skipped_live_total"
    )
    assert repaired > 0, "the burst was meant to outrun the bridge"
    for f in (*followers, lazy_follower):
        await f.ws.close()


async def test_sigterm_mid_burst_stops_the_bridge(
    burst_service: BurstService, bridge_process: BridgeProcess
) -> None:
    url = bridge_process.endpoints["ws"]
    ws = await subscribe(url, "log")
    lazy = await subscribe(url, "state")  # a client that never reads
    burst_service.command(f"flood 30 {EXECUTIONS}")
    for _ in range(100):  # the flood is reaching the clients
        if "seq" in json.loads(await asyncio.wait_for(ws.recv(), 10)):
            break
    bridge_process.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(bridge_process.proc.wait, 6)  # contract: within 3 s
    assert code == 0
    await ws.close()
    await lazy.close()
