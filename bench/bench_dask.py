"""Agents on Dask: the engine's per-agent overhead beside bare ``client.submit``, and the
measurements behind the choice of the worker ⇄ service channel.

Run: ``./dev bench dask`` (or ``python -m bench dask [--quick]``). One ``LocalCluster`` (two
worker processes, two threads each, loopback) serves every row, in this run:

* per agent: a fan-out of 1,000 no-op agents through ``WorkflowEngine(dask=…)`` (events to a
  list) beside ``client.submit`` of the same no-op 1,000 times and one ``gather``. Target ≤ 1.5×;
* progress, worker → service: tasks on both workers sending 20,000 updates each through the
  channel zmqmon uses (:mod:`zmqmon.services.executor.channel`, a DEALER per worker process into
  the service's ROUTER) beside ``Worker.log_event`` + ``Client.subscribe_topic`` (Dask's own
  route, through the scheduler): messages per second reaching the service;
* cancel, service → a running task: the channel's cancel beside ``Client.run`` on the task's
  worker flipping the same flag; median latency until the task sees it;
* what each route costs the cluster: no-op tasks submitted while two tasks flood updates through
  the channel, beside the same through ``log_event`` (which passes the scheduler).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench import Row

ROOT = str(Path(__file__).resolve().parents[1])
_FLAGS: dict[str, float] = {}


def noop(x: Any) -> None:
    """The bare baseline's task."""
    return None


def noop_agent(ctx: Any) -> None:
    """The engine's no-op agent."""
    return None


def send_log_events(n: int, topic: str) -> int:
    from distributed import get_worker

    worker = get_worker()
    for i in range(n):
        worker.log_event(topic, [i % 100, None])
    return n


def send_channel(n: int, endpoint: str, token: str) -> int:
    from zmqmon.services.executor.dask_task import WorkerLink

    link = WorkerLink.get(endpoint)
    for i in range(n):
        link.progress(token, i % 100, None)
    return n


def wait_flag(name: str, endpoint: str, timeout: float) -> float | None:
    """Wait until ``name`` is flagged (by the channel's cancel, or by Client.run)."""
    from zmqmon.services.executor.dask_task import WorkerLink

    if endpoint:
        WorkerLink.get(endpoint).on_cancel(name, lambda: _FLAGS.setdefault(name, time.time()))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in _FLAGS:
            return time.time()
        time.sleep(0.0001)
    return None


def set_flag(name: str) -> None:
    _FLAGS[name] = time.time()


class _Loop:
    """An asyncio loop in a thread, for the service's end of the channel."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _per_agent(cluster: Any, client: Any, n: int) -> list[Row]:
    from zmqmon.core.emitter import EventEmitter
    from zmqmon.services.executor import Agent, Workflow, WorkflowEngine

    events: list[dict[str, Any]] = []
    wf = Workflow("bench", [Agent(f"a{i}", noop_agent) for i in range(n)])
    bare, ours = float("inf"), float("inf")
    with WorkflowEngine(EventEmitter(events.append), dask=cluster) as engine:
        for _ in range(3):  # interleaved, best of 3 each: the machine is shared
            t0 = time.perf_counter()
            futures = [client.submit(noop, i, pure=False) for i in range(n)]
            client.gather(futures)
            bare = min(bare, time.perf_counter() - t0)
            del futures
            t0 = time.perf_counter()
            run = engine.submit(wf)
            run.wait(300)
            ours = min(ours, time.perf_counter() - t0)
            assert run.status == "completed"
    workers = len(cluster.workers)
    return [
        Row(
            "dask",
            f"no-op agents on Dask, fan-out ({n})",
            ours / n * 1e6,
            bare / n * 1e6,
            "µs/agent",
            target="<= 1.5x bare client.submit",
            target_ratio=1.5,
            note="baseline: client.submit of the same no-op n times + one gather, same cluster",
        ),
        Row(
            "dask",
            "agents/s per worker (no-op fan-out)",
            n / ours / workers,
            n / bare / workers,
            "agents/s",
            higher_is_better=True,
            note=f"{workers} worker processes x 2 threads on this 2-core machine",
        ),
    ]


def _progress(client: Any, n: int) -> list[Row]:
    from zmqmon.services.executor.channel import AgentChannel

    workers = list(client.scheduler_info()["workers"])
    senders = 4
    got = [0]
    last = [0.0]
    done = threading.Event()

    def count(*_: Any) -> None:
        got[0] += 1
        last[0] = time.perf_counter()
        if got[0] >= n * senders:
            done.set()

    def settle() -> None:
        """Until every message came, or none for a second (the channel drops rather than block
        a sender: a burst past its queues is cut, as coalesced progress never is)."""
        seen = -1
        while not done.wait(1.0) and got[0] != seen:
            seen = got[0]

    client.subscribe_topic("zmqmon-bench", count)
    client.submit(send_log_events, 1, "warm", pure=False).result()
    time.sleep(0.5)  # the subscription reaches the scheduler (its own stream; no ack to wait for)
    t0 = time.perf_counter()
    for i in range(senders):
        client.submit(send_log_events, n, "zmqmon-bench", pure=False, workers=[workers[i % 2]])
    settle()
    log_rate = got[0] / (last[0] - t0)
    client.unsubscribe_topic("zmqmon-bench")

    loop = _Loop()
    channel = AgentChannel("tcp://127.0.0.1:0")
    loop.run(channel.start())
    got[0] = 0
    done.clear()
    channel.expect("bench", lambda v, m: count())
    client.run(send_channel, 0, channel.endpoint, "bench")  # every worker's link connected
    t0 = time.perf_counter()
    for i in range(senders):
        client.submit(
            send_channel, n, channel.endpoint, "bench", pure=False, workers=[workers[i % 2]]
        )
    settle()
    zmq_rate = got[0] / (last[0] - t0)
    zmq_lost = n * senders - got[0]

    lat_zmq, lat_run = [], []
    for i in range(10):
        name = f"zmq-{i}-{uuid.uuid4().hex}"
        f = client.submit(wait_flag, name, channel.endpoint, 10, pure=False)
        time.sleep(0.05)  # let it start
        sent = time.time()
        channel.cancel(name)
        seen = f.result()
        lat_zmq.append((seen or float("nan")) - sent)
        name = f"run-{i}-{uuid.uuid4().hex}"
        worker = workers[i % 2]
        f = client.submit(wait_flag, name, "", 10, pure=False, workers=[worker])
        time.sleep(0.05)
        sent = time.time()
        client.run(set_flag, name, workers=[worker])
        seen = f.result()
        lat_run.append((seen or float("nan")) - sent)

    # What each route costs the rest of the cluster: no-op tasks while progress floods in.
    def tasks_us(flood: Any) -> float:
        floods = [flood(i) for i in range(2)]
        t0 = time.perf_counter()
        client.gather([client.submit(noop, i, pure=False) for i in range(tasks)])
        us = (time.perf_counter() - t0) / tasks * 1e6
        client.gather(floods)
        return us

    tasks = 300
    client.subscribe_topic("zmqmon-bench", count)
    quiet = tasks_us(lambda i: client.submit(noop, -i - 1, pure=False))
    via_log = tasks_us(
        lambda i: client.submit(
            send_log_events, n, "zmqmon-bench", pure=False, workers=[workers[i % 2]]
        )
    )
    via_zmq = tasks_us(
        lambda i: client.submit(
            send_channel, n, channel.endpoint, "bench", pure=False, workers=[workers[i % 2]]
        )
    )
    client.unsubscribe_topic("zmqmon-bench")
    loop.run(channel.aclose())
    loop.close()
    return [
        Row(
            "dask",
            f"progress to the service, {senders} tasks x {n:,}",
            zmq_rate,
            log_rate,
            "msg/s",
            higher_is_better=True,
            note="zmqmon's channel (DEALER -> ROUTER) vs Worker.log_event + subscribe_topic; "
            f"the channel dropped {zmq_lost:,} of the burst at its queues (never blocking)",
        ),
        Row(
            "dask",
            "cancel reaching a running task, median",
            statistics.median(lat_zmq) * 1e3,
            statistics.median(lat_run) * 1e3,
            "ms",
            note="zmqmon's channel vs Client.run on the task's worker",
        ),
        Row(
            "dask",
            f"{tasks} no-op tasks while 2 tasks send {n:,} updates each",
            via_zmq,
            via_log,
            "µs/task",
            note=f"updates through zmqmon's channel vs through log_event; {quiet:,.0f} µs/task "
            "with no updates",
        ),
    ]


def run(quick: bool = False) -> list[Row]:
    from distributed import Client, LocalCluster

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            scheduler_port=0,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        Client(cluster) as client,
    ):
        rows = _per_agent(cluster, client, 200 if quick else 1000)
        rows += _progress(client, 2_000 if quick else 20_000)
    return rows
