"""Fixtures of the bridge tests: a real executor service, a real bridge, real websockets clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from zmqmon_bridge.server import Bridge, Limits


def workflow(seconds: float = 0.4, steps: int = 4, agents: int = 2) -> dict[str, Any]:
    """A linear workflow of ``zmqmon.demo:work`` agents."""
    return {
        "name": "Test Pipeline",
        "agents": [
            {
                "id": f"a{i}",
                "name": f"Agent{i}",
                "uses": "zmqmon.demo:work",
                "params": {"seconds": seconds, "steps": steps},
                **({"dependsOn": [f"a{i - 1}"]} if i else {}),
            }
            for i in range(agents)
        ],
    }


@pytest.fixture
def make_bridge(server: Any) -> Iterator[Callable[..., Bridge]]:
    """Start bridges on the ``server`` fixture's endpoints (port 0); all stopped after the test."""
    started: list[Bridge] = []

    def make(limits: Limits | None = None, port: int = 0, **kwargs: Any) -> Bridge:
        bridge = Bridge(
            server.endpoints["events"],
            server.endpoints["state"],
            "127.0.0.1",
            port,
            limits=limits,
            **kwargs,
        ).start()
        started.append(bridge)
        return bridge

    yield make
    for bridge in started:
        bridge.stop()


@pytest.fixture
def bridge(make_bridge: Callable[..., Bridge]) -> Bridge:
    """One anonymous bridge with default limits."""
    return make_bridge()


class Client:
    """A websockets client that reads JSON messages with timeouts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if "seq" in msg:
            self.events.append(msg)
        return dict(msg)

    async def expect(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message, which must be of ``type_``."""
        msg = await self.recv(timeout)
        assert msg["type"] == type_, msg
        return msg

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Every message up to and including the first that satisfies ``predicate``."""
        seen = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            seen.append(msg)
            if predicate(msg):
                return seen

    async def close(self) -> None:
        await self.ws.close()


def terminal(msg: dict[str, Any]) -> bool:
    return msg.get("type") in ("execution:completed", "execution:failed", "execution:cancelled")


async def open_client(url: str, **kwargs: Any) -> Client:
    """Connect and consume the ``connected`` message."""
    client = Client(await connect(url, **kwargs))
    hello = await client.expect("connected")
    assert hello["connectionId"]
    return client
