"""``zmqmon proxy``: an XSUB/XPUB forwarder between many publishers and many subscribers.

Publishers reach the *frontend* (XSUB), subscribers the *backend* (XPUB); messages flow
frontend → backend and subscriptions backend → frontend, so a subscriber behind the proxy
filters exactly as it would on a publisher directly (contract §1). Each side binds its endpoint;
an endpoint written ``>tcp://host:port`` is connected to instead (e.g. the proxy's XSUB connecting
to a ``zmqmon serve`` that binds its PUB). A publisher connects to a bound frontend with the same
form: ``EventPublisher(">tcp://proxy:5555")``.

The forwarding runs ``zmq.proxy_steerable`` in a thread — libzmq's own loop, so no Python runs
per message — stopped and asked for its counters (``STATISTICS``) through a control socket.
What it reports (:meth:`Proxy.stats`, and with ``metrics_port`` over HTTP: ``GET /metrics``
Prometheus text, ``GET /health`` JSON):

* frames and bytes in and out of each side, counted by libzmq: an event is two frames
  (``[topic, payload]``), so events forwarded = frames out of the backend ÷ 2;
* subscription messages passed upstream (XPUB → XSUB: each subscribe or unsubscribe of a
  subscriber behind the proxy, one frame each) = frames out of the frontend;
* publishers and subscribers connected now, and connects/disconnects so far (socket monitors on
  both sides, read by a watcher thread): peers come and go while the proxy runs.
"""

from __future__ import annotations

import contextlib
import json
import signal
import struct
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import Any, Final

import zmq
from zmq.utils.monitor import recv_monitor_message

from zmqmon.shells.proxy_metrics import ProxyStats, serve_metrics

__all__ = ["Proxy", "ProxyStats", "run_proxy"]


def _attach(sock: Any, endpoint: str) -> str:
    """Bind (or connect, for ``>endpoint``); returns the endpoint actually used."""
    if endpoint.startswith(">"):
        sock.connect(endpoint[1:])
        return endpoint[1:]
    sock.bind(endpoint.removeprefix("@"))
    return str(sock.getsockopt(zmq.LAST_ENDPOINT).decode())


#: monitor events that mean a peer arrived / left
_ARRIVED: Final = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED
_LEFT: Final = zmq.EVENT_DISCONNECTED
#: how long a stats request waits for the forwarding thread's answer
_STATS_TIMEOUT_MS: Final = 2000


class _Peers:
    """Connected peers of one side, from its socket monitor (the watcher thread's)."""

    def __init__(self) -> None:
        self.now = 0
        self.connects = 0
        self.disconnects = 0

    def on_event(self, event: int) -> None:
        if event & _ARRIVED:
            self.now += 1
            self.connects += 1
        elif event & _LEFT:
            self.now = max(0, self.now - 1)
            self.disconnects += 1


class Proxy:
    """XSUB (``frontend``) → XPUB (``backend``) forwarder in a background thread.

    ``endpoints`` (after :meth:`start`) has ``frontend`` and ``backend`` with port 0 resolved,
    and ``metrics`` (``http://host:port``) when ``metrics_port`` is given (0: a free one) — an
    HTTP server on ``metrics_host`` (loopback by default) answering ``/metrics`` and ``/health``.
    """

    def __init__(
        self,
        frontend: str,
        backend: str,
        *,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        self.frontend = frontend
        self.backend = backend
        self.endpoints: dict[str, str] = {}
        self._metrics_port = metrics_port
        self._metrics_host = metrics_host
        self._context: zmq.Context[Any] | None = None
        self._thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._http: ThreadingHTTPServer | None = None
        self._control_endpoint = f"inproc://zmqmon-proxy-{uuid.uuid4().hex}"
        self._control: Any = None
        self._control_lock = threading.Lock()
        self._monitors: list[Any] = []
        self._publishers = _Peers()
        self._subscribers = _Peers()
        self._watching = threading.Event()
        self._started_at = time.monotonic()
        self._last = ProxyStats()
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
        # Monitors before the forwarding thread owns the sockets (they are not thread-safe).
        events = _ARRIVED | _LEFT
        self._monitors = [xsub.get_monitor_socket(events), xpub.get_monitor_socket(events)]
        try:
            self.endpoints = {
                "frontend": _attach(xsub, self.frontend),
                "backend": _attach(xpub, self.backend),
            }
            pull.bind(self._control_endpoint)
            self._control = ctx.socket(zmq.PAIR)
            self._control.setsockopt(zmq.LINGER, 0)
            self._control.connect(self._control_endpoint)
            if self._metrics_port is not None:
                self._start_http()
        except BaseException:
            for sock in (xsub, xpub, pull, *self._monitors):
                sock.close(0)
            if self._control is not None:
                self._control.close(0)
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

        self._started_at = time.monotonic()
        self._watching.set()
        self._thread = threading.Thread(target=forward, name="zmqmon-proxy", daemon=True)
        self._thread.start()
        self._watcher = threading.Thread(target=self._watch, name="zmqmon-proxy-peers", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        poller = zmq.Poller()
        for monitor in self._monitors:
            poller.register(monitor, zmq.POLLIN)
        sides = dict(zip(self._monitors, (self._publishers, self._subscribers), strict=True))
        while self._watching.is_set():
            try:
                ready = poller.poll(100)
                for monitor, _ in ready:
                    event = recv_monitor_message(monitor)
                    sides[monitor].on_event(int(event["event"]))
            except zmq.ZMQError:
                return  # closing

    def _start_http(self) -> None:
        http = self._http = serve_metrics(self._metrics_host, self._metrics_port or 0, self.stats)
        self.endpoints["metrics"] = f"http://{self._metrics_host}:{http.server_address[1]}"

    def stats(self) -> ProxyStats:
        """The counters now (the last known ones once forwarding stopped)."""
        frames = self._statistics()
        if frames is not None:
            fe_in, fe_in_b, fe_out, _, _, _, be_out, be_out_b = frames
            pubs, subs = self._publishers, self._subscribers
            self._last = ProxyStats(
                frames_in=fe_in,
                bytes_in=fe_in_b,
                frames_out=be_out,
                bytes_out=be_out_b,
                subscription_messages=fe_out,
                publishers=pubs.now,
                subscribers=subs.now,
                publisher_connects=pubs.connects,
                publisher_disconnects=pubs.disconnects,
                subscriber_connects=subs.connects,
                subscriber_disconnects=subs.disconnects,
                uptime_seconds=time.monotonic() - self._started_at,
            )
        return self._last

    def _statistics(self) -> list[int] | None:
        """libzmq's eight counters (frames/bytes in/out of frontend, then backend)."""
        with self._control_lock:
            control = self._control
            if control is None or not self.running:
                return None
            try:
                control.send(b"STATISTICS")
                if not control.poll(_STATS_TIMEOUT_MS):
                    return None
                reply = control.recv_multipart()
            except zmq.ZMQError:
                return None
        if len(reply) != 8:
            return None
        return [struct.unpack("=Q", frame)[0] for frame in reply]

    @property
    def running(self) -> bool:
        """True while the forwarding thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop forwarding and release the sockets (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        with self._control_lock, contextlib.suppress(zmq.ZMQError):
            self._control.send(b"TERMINATE")
        thread.join(5.0)
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join(2.0)
        with self._control_lock:
            self._control.close(0)
            self._control = None
        for monitor in self._monitors:
            monitor.close(0)
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_proxy(
    frontend: str, backend: str, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1"
) -> int:
    """``zmqmon proxy``: forward until SIGINT/SIGTERM; line 1 of stdout is the endpoints JSON.

    ``metrics_port`` (0: a free one) serves ``/metrics`` and ``/health`` on ``metrics_host``.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            proxy = Proxy(
                frontend, backend, metrics_port=metrics_port, metrics_host=metrics_host
            ).start()
        except (zmq.ZMQError, OSError) as exc:
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
