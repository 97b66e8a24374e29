"""The notebook monitor under a flood: comm messages per second and the CPU it costs.

A publisher *process* runs a real service (store, PUB, state service) and publishes one
synthetic execution at ~50,000 ``agent:progress`` events/s. In this process:

- baseline: a raw SUB socket in a thread, ``recv_multipart`` until the terminal event;
- zmqmon: an :class:`~zmqmon.widgets.ExecutionMonitor` (no kernel: its comm is inert, and every
  trait sync it would send is counted by wrapping ``Widget.send_state``).

Reported: events/s delivered, comm messages/s and renders/s (bounded by the render rate, not
the event rate), and the CPU seconds per second of stream of the monitor's feed thread against
the raw recv loop's.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid
from typing import Any

from bench import Row

SUITE = "widget"


def _publisher(conn: Any) -> None:
    """Child process: a service on free ports; floods on request."""
    from zmqmon.services.server import Server

    server = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", None).start()
    pub = server.publisher
    conn.send(server.endpoints)
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                break
            execution_id, n, rate = cmd
            wf = "wf-bench"
            pub.emit_execution_started(
                execution_id,
                wf,
                workflow_name="Flood",
                agent_count=1,
                agents=[{"agentId": "x", "agentName": "X", "dependsOn": []}],
            )
            server.store.flush()
            conn.send("started")
            conn.recv()  # the subscriber is ready
            start = time.perf_counter()
            chunk = 500
            for i in range(0, n, chunk):
                for j in range(i, min(n, i + chunk)):
                    pub.emit_agent_progress(execution_id, wf, "x", "X", j * 100 // n)
                ahead = (i + chunk) / rate - (time.perf_counter() - start)
                if ahead > 0:
                    time.sleep(ahead)
            elapsed = time.perf_counter() - start
            pub.emit_execution_completed(execution_id, wf, duration_ms=1, results={})
            conn.send(elapsed)
    finally:
        server.stop()


def _raw(endpoints: dict[str, str], conn: Any, n: int, rate: float) -> tuple[float, float, int]:
    import zmq

    execution_id = f"raw-{uuid.uuid4()}"
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoints["events"])
    sock.setsockopt_string(zmq.SUBSCRIBE, f"exec/{execution_id}/")
    out: dict[str, Any] = {}
    ready = threading.Event()

    def loop() -> None:
        cpu = time.thread_time()
        count = 0
        ready.set()
        while True:
            topic, _payload = sock.recv_multipart()
            count += 1
            if topic.endswith(b"execution:completed"):
                break
        out["cpu"] = time.thread_time() - cpu
        out["count"] = count

    conn.send((execution_id, n, rate))
    conn.recv()
    time.sleep(0.3)  # a plain SUB is a slow joiner: let the subscription reach the publisher
    thread = threading.Thread(target=loop)
    thread.start()
    ready.wait()
    conn.send("go")
    elapsed = conn.recv()
    thread.join(60)
    sock.close()
    return out["cpu"], elapsed, out["count"]


def _monitor(endpoints: dict[str, str], conn: Any, n: int, rate: float) -> dict[str, float]:
    import ipywidgets as widgets

    from zmqmon.widgets import ExecutionMonitor

    sends = [0]
    original = widgets.Widget.send_state

    def counting(self: Any, key: Any = None) -> None:
        sends[0] += 1
        original(self, key)

    widgets.Widget.send_state = counting
    try:
        execution_id = f"mon-{uuid.uuid4()}"
        conn.send((execution_id, n, rate))
        conn.recv()
        mon = ExecutionMonitor(execution_id, **endpoints)
        time.sleep(0.3)  # as for the raw loop
        base_sends, base_renders = sends[0], mon._feed.throttle.renders
        t0 = time.perf_counter()
        conn.send("go")
        elapsed = conn.recv()
        mon.wait(120)
        span = time.perf_counter() - t0  # until the monitor's final render
        state = mon.state
        result = {
            "elapsed": elapsed,
            "span": span,
            "cpu": mon._feed.cpu_seconds,
            "sends": sends[0] - base_sends,
            "renders": mon._feed.throttle.renders - base_renders,
            "last_seq": state.last_seq,
            "applied": mon._feed.events_applied,
        }
        mon.close()
        return result
    finally:
        widgets.Widget.send_state = original


def run(quick: bool) -> list[Row]:
    """Measure the monitor and a raw SUB loop on the same ~50k events/s stream."""
    n = 50_000 if quick else 150_000
    rate = 50_000.0
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_publisher, args=(child,), daemon=True)
    proc.start()
    try:
        endpoints = parent.recv()
        raw_cpu, raw_elapsed, raw_count = _raw(endpoints, parent, n, rate)
        m = _monitor(endpoints, parent, n, rate)
    finally:
        parent.send(None)
        proc.join(30)
    span = m["span"]
    complete = m["last_seq"] == n + 2
    note = (
        f"{n} events published in {m['elapsed']:.2f} s, monitor done after {span:.2f} s;"
        f" feed {m['cpu'] / n * 1e6:.1f} µs CPU/event, raw {raw_cpu / raw_count * 1e6:.1f};"
        f" monitor saw lastSeq {m['last_seq']}/{n + 2}"
        f" ({'complete' if complete else 'INCOMPLETE'}), {m['renders']} renders;"
        f" raw loop got {raw_count} msgs in {raw_elapsed:.2f} s"
    )
    return [
        Row(SUITE, "stream rate", n / m["elapsed"], None, "events/s", note=note),
        Row(
            SUITE,
            "comm msgs/s (trait syncs)",
            m["sends"] / span,
            n / span,
            "msg/s",
            "≤ 0.01× event rate",
            target_ratio=0.01,
        ),
        Row(SUITE, "renders/s", m["renders"] / span, 10.0, "1/s", "≤ ~10/s", target_ratio=1.2),
        Row(
            SUITE,
            "feed thread CPU",
            m["cpu"] / span,
            raw_cpu / raw_elapsed,
            "cpu s/s",
            "vs raw SUB recv loop",
        ),
    ]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(quick=True)))
