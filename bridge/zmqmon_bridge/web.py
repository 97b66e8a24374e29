"""HTTP on the bridge's port: the route table, the dashboard's files, health, metrics, the API.

Every request passes, in this order: the browser guard (``Origin``/``Host``, 403 —
:mod:`zmqmon_bridge.guard`), the route (404), the method (405 with ``Allow``), then the route's
own access rule:

* ``GET /`` and ``/static/*`` (the dashboard) are public: they carry no data;
* ``GET /api/ws/health``, ``GET /metrics`` and ``GET /api/config`` are public: counts and flags
  only, no execution id, user or payload;
* the API of contract §8 (:mod:`zmqmon_bridge.api`) needs a token when auth is on (401);
* ``/api/ws`` is the WebSocket: the front hands a ``GET`` to websockets, whose
  ``process_request`` (:meth:`HttpRoutes.__call__`) refuses a missing or bad token with 401 before
  the handshake — nothing is relayed.

``HEAD`` is served wherever ``GET`` is. Static files come from a fixed allow-list built at start
(no path is ever joined from the request, so no traversal).
"""

from __future__ import annotations

import mimetypes
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from zmqmon.core.wire import dumps
from zmqmon.errors import AuthError
from zmqmon_bridge.api import Api
from zmqmon_bridge.auth import ANONYMOUS, Authenticator
from zmqmon_bridge.front import HttpReply, HttpRequest, error_reply, json_reply
from zmqmon_bridge.guard import BrowserGuard
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
_UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="zmqmon"'}

Route = Callable[..., Awaitable[HttpReply]]
# (pattern, {method: (handler, needs a token when auth is on)})
_Table = list[tuple[re.Pattern[str], dict[str, tuple[Route, bool]]]]


def _segment(name: str) -> str:
    return rf"(?P<{name}>[^/]+)"


class HttpRoutes:
    """The bridge's HTTP routes (for the front) and its WebSocket handshake check (websockets'
    ``process_request``, which remembers each connection's verified principal)."""

    def __init__(
        self,
        hub: Hub,
        auth: Authenticator,
        started: float,
        guard: BrowserGuard | None = None,
    ) -> None:
        self.hub = hub
        self.auth = auth
        self.guard = guard or BrowserGuard()
        self.metrics = BridgeMetrics(hub)
        self.started = started
        self.api = Api(hub, auth.enabled, hub.learn_owner)
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
        api = self.api
        self.table: _Table = [
            (re.compile(r"/api/ws/health"), {"GET": (self._health, False)}),
            (re.compile(r"/metrics"), {"GET": (self._metrics, False)}),
            (re.compile(r"/api/config"), {"GET": (self._config, False)}),
            (re.compile(WS_PATH), {"GET": (self._not_upgraded, False)}),
            (
                re.compile(r"/api/workflows"),
                {"GET": (api.list_workflows, True), "POST": (api.create_workflow, True)},
            ),
            (
                re.compile(rf"/api/workflows/{_segment('workflow_id')}/execute"),
                {"POST": (api.execute, True)},
            ),
            (re.compile(r"/api/executions"), {"GET": (api.list_executions, True)}),
            (re.compile(r"/api/services"), {"GET": (api.list_services, True)}),
            (
                re.compile(rf"/api/executions/{_segment('execution_id')}"),
                {"GET": (api.get_execution, True)},
            ),
            (
                re.compile(rf"/api/executions/{_segment('execution_id')}/events"),
                {"GET": (api.events, True)},
            ),
            (
                re.compile(rf"/api/executions/{_segment('execution_id')}/cancel"),
                {"POST": (api.cancel, True)},
            ),
        ]

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

    # -- the front's entry points ---------------------------------------------------------------

    def gate(self, request: HttpRequest) -> HttpReply | None:
        """Before a ``GET /api/ws`` goes to websockets: the browser guard (403) or None."""
        refusal = self.guard.refusal(request.headers.get("host"), request.headers.get("origin"))
        if refusal is not None:
            self.hub.counters.error("forbidden")
            return error_reply(403, "forbidden", refusal)
        return None

    async def handle(self, request: HttpRequest) -> HttpReply:
        """Answer one HTTP request (anything but a WebSocket handshake)."""
        refused = self.gate(request)
        if refused is not None:
            return refused
        path = request.path
        method = "GET" if request.method == "HEAD" else request.method
        file = self.static.get(path)
        if file is not None:
            if method != "GET":
                return self._not_allowed(("GET",), request.method)
            return self._file(file)
        for pattern, methods in self.table:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            entry = methods.get(method)
            if entry is None:
                return self._not_allowed(tuple(methods), request.method)
            route, needs_token = entry
            principal = ANONYMOUS
            if needs_token:
                try:
                    principal = self.auth.from_request(request.target, request.headers)
                except AuthError as exc:
                    self.hub.counters.error("unauthorized")
                    return error_reply(401, "unauthorized", str(exc), _UNAUTHORIZED_HEADERS)
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return await self.api.run(route, request, principal, *params.values())
        return error_reply(404, "not_found", f"no route {path[:200]!r}")

    @staticmethod
    def _not_allowed(methods: tuple[str, ...], method: str) -> HttpReply:
        allow = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
        return error_reply(
            405,
            "method_not_allowed",
            f"{method[:20]} is not allowed here; allowed: {allow}",
            {"Allow": allow},
        )

    def _file(self, file: Path) -> HttpReply:
        ctype = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "text/plain"
        extra = {"Content-Security-Policy": _CSP} if file.suffix == ".html" else {}
        return HttpReply(200, file.read_bytes(), ctype, extra)

    async def _health(self, request: HttpRequest, principal: Principal) -> HttpReply:
        return json_reply(200, self.health())

    async def _metrics(self, request: HttpRequest, principal: Principal) -> HttpReply:
        return HttpReply(200, self.metrics.render(), CONTENT_TYPE)

    async def _config(self, request: HttpRequest, principal: Principal) -> HttpReply:
        return json_reply(200, {"auth": self.auth.enabled})

    async def _not_upgraded(self, request: HttpRequest, principal: Principal) -> HttpReply:
        # Only reached for HEAD: a GET is handed to websockets by the front.
        return error_reply(426, "upgrade_required", "this is the WebSocket endpoint")

    # -- websockets' process_request: the handshake's auth check --------------------------------

    async def __call__(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path != WS_PATH:  # the front hands over nothing else
            return _respond(conn, 404, dumps({"error": {"code": "not_found"}}))
        headers = {k: v for k, v in request.headers.raw_items()}
        try:
            self.principals[conn] = self.auth.from_request(request.path, headers)
        except AuthError as exc:
            self.hub.counters.error("unauthorized")
            return _respond(
                conn,
                401,
                dumps({"type": "error", "code": "unauthorized", "message": str(exc)}),
                _UNAUTHORIZED_HEADERS,
            )
        return None  # go on with the WebSocket handshake


def _respond(
    conn: ServerConnection, status: int, body: bytes, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response from websockets' side of the port (a refused handshake)."""
    response = conn.respond(status, "")
    del response.headers["Content-Type"]
    del response.headers["Content-Length"]
    response.headers["Content-Type"] = "application/json"
    response.headers["Content-Length"] = str(len(body))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.body = body
    return response
