"""The proxy's counters as values, Prometheus text and health JSON, and the HTTP server for them.

:class:`ProxyStats` is a plain value (what :meth:`zmqmon.shells.proxy.Proxy.stats` returns);
:func:`serve_metrics` serves it on ``GET /metrics`` and ``GET /health`` with the standard
library's HTTP server — the proxy needs no web framework, and the bridge's ``prometheus_client``
is an extra the proxy does not require.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ProxyStats", "serve_metrics"]


@dataclass(frozen=True)
class ProxyStats:
    """The proxy's counters (see the module docstring); frames and bytes since start."""

    frames_in: int = 0  # from publishers (frontend in)
    bytes_in: int = 0
    frames_out: int = 0  # to subscribers (backend out)
    bytes_out: int = 0
    subscription_messages: int = 0  # subscribe/unsubscribe passed upstream (frontend out)
    publishers: int = 0  # connected now
    subscribers: int = 0
    publisher_connects: int = 0
    publisher_disconnects: int = 0
    subscriber_connects: int = 0
    subscriber_disconnects: int = 0
    uptime_seconds: float = 0.0

    def to_health(self) -> dict[str, Any]:
        """The ``GET /health`` body (camelCase, like the bridge's)."""
        return {
            "status": "ok",
            "publishers": self.publishers,
            "subscribers": self.subscribers,
            "messagesIn": self.frames_in // 2,
            "messagesOut": self.frames_out // 2,
            "subscriptionMessages": self.subscription_messages,
            "uptimeSeconds": round(self.uptime_seconds, 3),
        }

    def to_prometheus(self) -> str:
        """The ``GET /metrics`` body (Prometheus text format 0.0.4)."""
        rows = [
            (
                "zmqmon_proxy_frames_in_total",
                "counter",
                "frames received from publishers",
                self.frames_in,
            ),
            (
                "zmqmon_proxy_bytes_in_total",
                "counter",
                "bytes received from publishers",
                self.bytes_in,
            ),
            (
                "zmqmon_proxy_frames_out_total",
                "counter",
                "frames sent to subscribers",
                self.frames_out,
            ),
            (
                "zmqmon_proxy_bytes_out_total",
                "counter",
                "bytes sent to subscribers",
                self.bytes_out,
            ),
            (
                "zmqmon_proxy_subscription_messages_total",
                "counter",
                "subscribe/unsubscribe messages passed upstream to publishers",
                self.subscription_messages,
            ),
            ("zmqmon_proxy_publishers", "gauge", "publishers connected", self.publishers),
            ("zmqmon_proxy_subscribers", "gauge", "subscribers connected", self.subscribers),
            (
                "zmqmon_proxy_publisher_connects_total",
                "counter",
                "publisher connections",
                self.publisher_connects,
            ),
            (
                "zmqmon_proxy_publisher_disconnects_total",
                "counter",
                "publisher disconnections",
                self.publisher_disconnects,
            ),
            (
                "zmqmon_proxy_subscriber_connects_total",
                "counter",
                "subscriber connections",
                self.subscriber_connects,
            ),
            (
                "zmqmon_proxy_subscriber_disconnects_total",
                "counter",
                "subscriber disconnections",
                self.subscriber_disconnects,
            ),
            (
                "zmqmon_proxy_uptime_seconds",
                "gauge",
                "seconds since the proxy started",
                self.uptime_seconds,
            ),
        ]
        lines = []
        for name, kind, text, value in rows:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(lines) + "\n"


def serve_metrics(host: str, port: int, stats: Callable[[], ProxyStats]) -> ThreadingHTTPServer:
    """Serve ``stats()`` on ``host:port`` (0: a free port) in a daemon thread; returns the server
    (``shutdown()`` and ``server_close()`` stop it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = stats().to_prometheus().encode()
                kind = "text/plain; version=0.0.4; charset=utf-8"
            elif path == "/health":
                body = json.dumps(stats().to_health()).encode()
                kind = "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds: not worth a log line each

    http = ThreadingHTTPServer((host, port), Handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, name="zmqmon-proxy-http", daemon=True).start()
    return http
