"""Agents on a Dask cluster spread over real (namespaced) hosts: a scheduler, two workers on two
hosts, an executor (``zmqmon serve --dask``) on a fourth. The cable of the worker running a long
agent is pulled mid-agent: that agent fails with ``WorkerLost``, the execution ends — it never
hangs — and its other agents ran on the cluster as usual.

Needs root for the namespaces, as CI has; without it these tests fail, they are not skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from tests.conftest import wait_for
from tests.hosts.network import Network
from tests.hosts.test_many_hosts import first_line
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(180)

# The scheduler gives up on a silent worker after this (Dask's default is 5 minutes).
_FAST_LOSS = {"DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "4s"}


@pytest.fixture
def network() -> Iterator[Network]:
    with Network(net=78) as net:
        yield net


def _agent(agent_id: str, seconds: float, *deps: str) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": agent_id.title(),
        "uses": "zmqmon.demo:work",
        "params": {"seconds": seconds, "steps": max(2, int(seconds * 4))},
        "dependsOn": list(deps),
    }


def _running_on(client: Client, hosts: dict[str, str]) -> str | None:
    """The worker host with a task in progress, if any (the scheduler's view)."""
    busy = [addr for addr, keys in client.processing().items() if keys]
    for addr in busy:
        for name, address in hosts.items():
            if f"//{address}:" in addr:
                return name
    return None


def test_a_worker_host_cut_mid_agent_fails_it_with_worker_lost(
    network: Network, tmp_path: Path
) -> None:
    net = network
    sched = net.add_host("sched")
    workers = {name: net.add_host(name) for name in ("w1", "w2")}
    ex = net.add_host("ex")
    net.run(
        "sched",
        ["distributed.cli.dask_scheduler", "--host", sched, "--port", "8786", "--no-dashboard"],
        env=_FAST_LOSS,
    )
    scheduler = f"tcp://{sched}:8786"
    for name, address in workers.items():
        net.run(
            name,
            ["distributed.cli.dask_worker", scheduler, "--host", address, "--nthreads", "2",
             "--no-nanny", "--no-dashboard", "--name", name],
        )  # fmt: skip
    dask = wait_for(
        lambda: _connect(scheduler), timeout=60, interval=0.5, message="the Dask scheduler"
    )
    try:
        wait_for(
            lambda: len(dask.scheduler_info()["workers"]) == 2,
            timeout=60,
            interval=0.2,
            message="two workers",
        )
        endpoints = first_line(
            net.run(
                "ex",
                ["zmqmon.cli", "serve", "--events", f"tcp://{ex}:5556", "--state",
                 f"tcp://{ex}:5557", "--db", str(tmp_path / "ex.sqlite3"),
                 "--dask", scheduler, "--dask-channel", f"tcp://{ex}:5590"],
            ),
            timeout=60,
        )  # fmt: skip
        definition = {
            "name": "Across hosts",
            "agents": [
                _agent("prepare", 0.5),
                _agent("long", 120.0, "prepare"),  # cut mid-way
            ],
        }
        with StateClient(endpoints["state"], timeout=10) as sc:
            execution_id = sc.execute(workflow=definition)

            def long_running() -> bool:
                state = sc.snapshot(execution_id)
                long = state.agent("long")
                return long is not None and long.status == "running" and long.progress > 0

            wait_for(long_running, timeout=60, message="the long agent running on a worker")
            host = wait_for(lambda: _running_on(dask, workers), timeout=10, message="its worker")
            net.cut(host)  # the worker's cable is pulled, its process runs on unreachable
            state = wait_for(
                lambda: ((s := sc.snapshot(execution_id)).is_terminal and s) or None,
                timeout=90,
                message="the execution's end",
            )
            events, _ = sc.events(execution_id, 0, 10_000)
    finally:
        dask.close()
    assert state.status == "failed"
    prepare, long = state.agent("prepare"), state.agent("long")
    assert prepare is not None and prepare.status == "completed"  # ran on the cluster
    assert long is not None and long.status == "failed"
    failed = [e for e in events if e.type == "agent:failed"]
    assert [(e.data.agent_id, e.data.error_type) for e in failed] == [("long", "WorkerLost")]
    assert "worker" in failed[0].data.error.lower()


def _connect(address: str) -> Client | None:
    try:
        return Client(address, timeout=2, set_as_default=False)
    except (TimeoutError, OSError):
        return None
