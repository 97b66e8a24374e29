"""``zmqmon proxy``: an XSUB/XPUB forwarder between many publishers and many subscribers.

Publishers reach the *frontend* (XSUB), subscribers the *backend* (XPUB); messages flow
frontend → backend and subscriptions backend → frontend, so a subscriber behind the proxy
filters exactly as it would on a publisher directly (contract §1). Each side binds its endpoint;
an endpoint written ``>tcp://host:port`` is connected to instead (e.g. the proxy's XSUB connecting
to a ``zmqmon serve`` that binds its PUB). A publisher connects to a bound frontend with the same
form: ``EventPublisher(">tcp://proxy:5555")``.

The forwarding runs ``zmq.proxy_steerable`` in a thread, stopped through a control socket.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import uuid
from types import FrameType
from typing import Any

import zmq

__all__ = ["Proxy", "run_proxy"]


def _attach(sock: Any, endpoint: str) -> str:
    """Bind (or connect, for ``>endpoint``); returns the endpoint actually used."""
    if endpoint.startswith(">"):
        sock.connect(endpoint[1:])
        return endpoint[1:]
    sock.bind(endpoint.removeprefix("@"))
    return str(sock.getsockopt(zmq.LAST_ENDPOINT).decode())


class Proxy:
    """XSUB (``frontend``) → XPUB (``backend``) forwarder in a background thread.

    ``endpoints`` (after :meth:`start`) has ``frontend`` and ``backend`` with port 0 resolved.
    """

    def __init__(self, frontend: str, backend: str) -> None:
        self.frontend = frontend
        self.backend = backend
        self.endpoints: dict[str, str] = {}
        self._context: zmq.Context[Any] | None = None
        self._thread: threading.Thread | None = None
        self._control_endpoint = f"inproc://zmqmon-proxy-{uuid.uuid4().hex}"
        self._control: Any = None
        self._error: BaseException | None = None

    def start(self) -> Proxy:
        """Bind (or connect) both sides and start forwarding."""
        if self._thread is not None:
            return self
        ctx = self._context = zmq.Context()
        xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
        pull = ctx.socket(zmq.PAIR)
        for sock in (xsub, xpub, pull):
            sock.setsockopt(zmq.LINGER, 0)
        # No high-water mark inside the proxy: drops belong at the edges, where seq repairs them.
        xsub.setsockopt(zmq.RCVHWM, 0)
        xpub.setsockopt(zmq.SNDHWM, 0)
        try:
            self.endpoints = {
                "frontend": _attach(xsub, self.frontend),
                "backend": _attach(xpub, self.backend),
            }
            pull.bind(self._control_endpoint)
            self._control = ctx.socket(zmq.PAIR)
            self._control.setsockopt(zmq.LINGER, 0)
            self._control.connect(self._control_endpoint)
        except BaseException:
            for sock in (xsub, xpub, pull):
                sock.close(0)
            ctx.term()
            self._context = None
            raise

        def forward() -> None:
            try:
                zmq.proxy_steerable(xsub, xpub, None, pull)
            except zmq.ContextTerminated:
                pass
            except BaseException as exc:  # reported by close(); the thread must not die loudly
                self._error = exc
            finally:
                for sock in (xsub, xpub, pull):
                    sock.close(0)

        self._thread = threading.Thread(target=forward, name="zmqmon-proxy", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """True while the forwarding thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop forwarding and release the sockets (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._control.send(b"TERMINATE")
        thread.join(5.0)
        self._control.close(0)
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_proxy(frontend: str, backend: str) -> int:
    """``zmqmon proxy``: forward until SIGINT/SIGTERM; line 1 of stdout is the endpoints JSON."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            proxy = Proxy(frontend, backend).start()
        except zmq.ZMQError as exc:
            print(f"zmqmon proxy: {exc}", file=sys.stderr)
            return 1
        try:
            print(json.dumps(proxy.endpoints), flush=True)
            while not stop.wait(0.2):
                if not proxy.running:
                    print(f"zmqmon proxy: forwarding stopped: {proxy._error}", file=sys.stderr)
                    return 1
        finally:
            proxy.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
