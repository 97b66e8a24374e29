"""``zmqmon demo``: the executor service, the WebSocket bridge and demo workflows, in one process.

Line 1 of stdout is the endpoints as JSON (``events``, ``state``, ``ws``, ``http``, ``dashboard``);
line 2 says where the dashboard is. Demo workflows (``zmqmon.demo.DEMO_WORKFLOWS``) then run in
rounds — a few at once, staggered, so the dashboard has something moving — until SIGINT or SIGTERM;
``once`` runs one round and exits 0. Every event is stored when it returns.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["run_demo"]


def _round(server: Any, stop: threading.Event, workflows: dict[str, Any], gap: float) -> bool:
    """Submit every demo workflow (staggered by ``gap`` s) and wait for all; False if stopped."""
    handles = []
    for i, definition in enumerate(workflows.values()):
        if stop.wait(gap if i else 0):
            return False
        handles.append(server.submit(definition, user_id="demo"))
    for handle in handles:
        while not handle.done:
            if stop.wait(0.1):
                return False
    return True


def run_demo(
    db: str | None,
    port: int,
    events: str,
    state: str,
    once: bool,
) -> int:
    """Run the demo until a signal (or one round with ``once``); returns the exit code."""
    from zmqmon_bridge.server import Bridge

    from zmqmon.demo import DEMO_WORKFLOWS
    from zmqmon.services.server import Server

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = None
    bridge = None
    try:
        try:
            server = Server(events or "tcp://127.0.0.1:0", state or "tcp://127.0.0.1:0", db).start()
            bridge = Bridge(
                server.endpoints["events"], server.endpoints["state"], "127.0.0.1", port
            ).start()
        except Exception as exc:  # a port in use, a bad path: say so, exit non-zero
            print(f"zmqmon demo: {exc}", file=sys.stderr)
            return 1
        endpoints = {**server.endpoints, **bridge.endpoints}
        print(json.dumps(endpoints), flush=True)
        print(
            f"zmqmon demo: dashboard at {bridge.http_url}/ — Ctrl-C to stop",
            flush=True,
        )
        while not stop.is_set():
            finished = _round(server, stop, DEMO_WORKFLOWS, gap=0.7)
            if once and finished:
                break
            if stop.wait(2.0):
                break
        return 0
    finally:
        if bridge is not None:
            bridge.stop()
        if server is not None:
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
