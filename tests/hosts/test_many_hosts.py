"""Beyond one machine, tested across real (namespaced) hosts: two executors publishing into a
proxy on a third host, a bridge on a fourth following both — with no state service configured, it
asks each execution's snapshot and gaps of the executor its heartbeats name. One executor's link
is cut and restored mid-run: its execution resumes and is repaired, the other's never pauses.

Network namespaces need root, as CI has: if they cannot be made, these tests fail (loudly), they
are not skipped.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.conftest import open_client, workflow
from tests.conftest import wait_for
from tests.hosts.network import Network
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(180)


def first_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any]:
    """A command's first line of output (its endpoints, as JSON)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        pytest.fail(f"no endpoints line within {timeout}s: {err}")
    return dict(json.loads(proc.stdout.readline()))


def health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url + "/api/ws/health", timeout=2) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return {}


@pytest.fixture
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


async def test_executors_behind_a_proxy_one_cut_and_restored(
    network: Network, tmp_path: Path
) -> None:
    net = network
    ex = {name: net.add_host(name) for name in ("ex1", "ex2")}
    px, br = net.add_host("proxy"), net.add_host("bridge")
    first_line(
        net.run(
            "proxy",
            [
                "zmqmon.cli",
                "proxy",
                "--frontend",
                f"tcp://{px}:5600",
                "--backend",
                f"tcp://{px}:5601",
            ],
        )
    )
    state: dict[str, str] = {}
    for name, address in ex.items():
        proc = net.run(
            name,
            [
                "zmqmon.cli",
                "serve",
                "--events",
                f">tcp://{px}:5600",
                "--state",
                f"tcp://{address}:5557",
                "--db",
                str(tmp_path / f"{name}.sqlite3"),
            ],
        )
        state[name] = first_line(proc)["state"]
    bridge = first_line(
        net.run(
            "bridge",
            [
                "zmqmon.cli",
                "bridge",
                "--events",
                f"tcp://{px}:5601",
                "--host",
                br,
                "--port",
                "3001",
            ],
        )
    )
    wait_for(lambda: health(bridge["http"]).get("upstream"), timeout=20, message="heartbeats")

    client = await open_client(bridge["ws"])
    await client.send({"type": "subscribe", "topic": "exec/"})  # log mode: every event, in order
    await client.expect("subscribed")
    ids = {}
    for name in ex:
        with StateClient(state[name], timeout=10) as sc:
            ids[name] = sc.execute(workflow=workflow(seconds=2.0, steps=20, agents=3))
    arrivals: list[tuple[float, str, int]] = []

    async def read_until(predicate: Any, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            msg = await client.recv(max(0.05, deadline - loop.time()))
            if "seq" in msg:
                arrivals.append((time.monotonic(), msg["executionId"], msg["seq"]))

    def count(name: str, since: float = 0.0) -> int:
        return sum(1 for t, e, _ in arrivals if e == ids[name] and t >= since)

    await read_until(lambda: count("ex1") >= 5 and count("ex2") >= 5, 30)
    net.cut("ex1")
    cut_at = time.monotonic()
    # ex2 goes on while ex1 is unreachable: it never pauses
    await read_until(lambda: count("ex2", cut_at) >= 15, 30)
    during = count("ex2", cut_at)
    net.restore("ex1")
    last = {name: final_seq(state[name], ids[name]) for name in ex}  # what each stored
    await read_until(
        lambda: all(any(e == ids[n] and s == last[n] for _, e, s in arrivals) for n in ex), 60
    )
    for name in ex:
        seqs = [s for _, e, s in arrivals if e == ids[name]]
        assert seqs == list(range(1, last[name] + 1)), name  # every event, once, in order
    assert during >= 15
    await client.close()


def final_seq(endpoint: str, execution_id: str) -> int:
    """The last seq of an execution once it has ended, as its own service stored it."""
    with StateClient(endpoint, timeout=10) as sc:
        wait_for(lambda: sc.snapshot(execution_id).is_terminal, timeout=60, message="its end")
        return sc.snapshot(execution_id).last_seq
