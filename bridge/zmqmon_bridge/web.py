"""HTTP on the bridge's port (websockets' ``process_request``): health, metrics, data, dashboard.

Access policy:

* ``GET /`` and ``/static/*`` (the dashboard) are public: they carry no data.
* ``GET /api/ws/health`` and ``GET /metrics`` are public: counts only, no execution id, user or
  payload appears in them.
* ``GET /api/executions`` reveals executions, so with auth on it needs a token (``?token=`` or
  ``Authorization: Bearer``) and answers only what that user may see.
* ``/api/ws`` is the WebSocket: with auth on, a missing or bad token is refused with 401 here,
  before the handshake — nothing is relayed.

Static files are served from a fixed allow-list built at start (no path is ever joined from the
request, so no traversal).
"""

from __future__ import annotations

import mimetypes
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from zmqmon.core.wire import dumps
from zmqmon.errors import AuthError, ServiceUnavailableError, ZmqmonError
from zmqmon_bridge.auth import Authenticator
from zmqmon_bridge.hub import Hub
from zmqmon_bridge.metrics import CONTENT_TYPE, BridgeMetrics
from zmqmon_bridge.protocol import Principal

__all__ = ["STATIC_DIR", "WS_PATH", "HttpRoutes"]

WS_PATH = "/api/ws"
STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# The page loads only its own files and talks only to its own origin.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def respond(
    conn: ServerConnection,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """An HTTP response with a body of any content type."""
    response = conn.respond(status, "")
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = content_type
    response.headers["Content-Length"] = str(len(body))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.body = body
    return response


class HttpRoutes:
    """``process_request`` of the bridge; remembers each WebSocket's verified principal."""

    def __init__(self, hub: Hub, auth: Authenticator, started: float) -> None:
        self.hub = hub
        self.auth = auth
        self.metrics = BridgeMetrics(hub)
        self.started = started
        # Weak: a handshake that fails after this check never reaches the handler to pop it.
        self.principals: weakref.WeakKeyDictionary[ServerConnection, Principal] = (
            weakref.WeakKeyDictionary()
        )
        self.static: dict[str, Path] = {
            f"/static/{p.name}": p for p in STATIC_DIR.iterdir() if p.suffix in _TYPES
        }
        index = STATIC_DIR / "index.html"
        if index.exists():
            self.static["/"] = self.static["/index.html"] = index

    def health(self) -> dict[str, Any]:
        """The body of ``/api/ws/health``."""
        hub = self.hub
        alive = hub.alive()
        return {
            "status": "ok" if alive else "degraded",
            "connections": len(hub.connections),
            "subscriptions": hub.subscription_count,
            "upstream": alive,
            "eventsRelayed": hub.counters.events_out,
            "uptimeSeconds": round(time.monotonic() - self.started, 3),
            "auth": self.auth.enabled,
        }

    async def __call__(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        headers = {k: v for k, v in request.headers.raw_items()}
        if path == WS_PATH:
            try:
                self.principals[conn] = self.auth.from_request(request.path, headers)
            except AuthError as exc:
                self.hub.counters.error("unauthorized")
                return respond(
                    conn,
                    401,
                    dumps({"type": "error", "code": "unauthorized", "message": str(exc)}),
                    "application/json",
                    {"WWW-Authenticate": 'Bearer realm="zmqmon"'},
                )
            return None  # go on with the WebSocket handshake
        if path == "/api/ws/health":
            return respond(conn, 200, dumps(self.health()), "application/json")
        if path == "/metrics":
            return respond(conn, 200, self.metrics.render(), CONTENT_TYPE)
        if path == "/api/executions":
            return await self._executions(conn, request.path, headers)
        if path == "/api/config":
            return respond(conn, 200, dumps({"auth": self.auth.enabled}), "application/json")
        file = self.static.get(path)
        if file is not None:
            ctype = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "text/plain"
            extra = {"Content-Security-Policy": _CSP} if file.suffix == ".html" else None
            return respond(conn, 200, file.read_bytes(), ctype, extra)
        return respond(conn, 404, b"not found\n", "text/plain; charset=utf-8")

    async def _executions(
        self, conn: ServerConnection, raw_path: str, headers: dict[str, str]
    ) -> Response:
        try:
            principal = self.auth.from_request(raw_path, headers)
        except AuthError as exc:
            return respond(conn, 401, dumps({"error": str(exc)}), "application/json")
        client = self.hub.client
        try:
            if client is None:
                raise ServiceUnavailableError("no state service configured (--state)")
            states = await client.executions(limit=100)
        except ZmqmonError as exc:
            return respond(conn, 503, dumps({"error": str(exc)}), "application/json")
        visible = [s for s in states if principal.can_see(s.user_id)]
        for s in visible:
            self.hub.learn_owner(s.execution_id, s.user_id)
        body = {"executions": [s.to_json_dict() for s in visible]}
        return respond(conn, 200, dumps(body), "application/json")
