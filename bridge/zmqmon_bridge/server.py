"""The bridge process: websockets server + HTTP routes + the hub, and ``zmqmon bridge``.

:class:`Bridge` runs on an asyncio loop — the caller's (:meth:`Bridge.astart`/:meth:`Bridge.astop`)
or its own in a background thread (:meth:`Bridge.start`/:meth:`Bridge.stop`, handy for tests and
embedding). :func:`run_bridge` is the command: line 1 of stdout is the endpoints as JSON; SIGINT and
SIGTERM stop it cleanly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import zmq.asyncio
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.server import ServerProtocol

from zmqmon.config import DEFAULT_EVENTS, DEFAULT_STATE, is_loopback
from zmqmon.shells.client import AsyncStateClient
from zmqmon.shells.curve import CurveClient, client_keys
from zmqmon.shells.repair import StateClients
from zmqmon_bridge.auth import ANONYMOUS, Authenticator
from zmqmon_bridge.front import HttpFront
from zmqmon_bridge.guard import BrowserGuard, parse_list
from zmqmon_bridge.hub import Hub
from zmqmon_bridge.protocol import CLOSE_TRY_AGAIN, ConnectionState, Principal, RateLimiter
from zmqmon_bridge.session import Session
from zmqmon_bridge.upstream import Upstream
from zmqmon_bridge.web import WS_PATH, HttpRoutes

__all__ = ["Bridge", "Limits", "run_bridge"]

log = logging.getLogger("zmqmon.bridge")


class _RedactTokens(logging.Filter):
    """websockets logs request lines at debug level: never let a ``?token=`` reach a log."""

    _pattern = re.compile(r"(token=)[^&\s]+|(Bearer )\S+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            args = record.args
            record.args = tuple(
                self._pattern.sub(lambda m: (m.group(1) or m.group(2)) + "<redacted>", a)
                if isinstance(a, str)
                else a
                for a in args
            )
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(
                lambda m: (m.group(1) or m.group(2)) + "<redacted>", record.msg
            )
        return True


_REDACT = _RedactTokens()
for _name in ("websockets", "websockets.server", "websockets.client"):
    logging.getLogger(_name).addFilter(_REDACT)


@dataclass(frozen=True)
class Limits:
    """The bridge's limits (all configurable; ``ZMQMON_BRIDGE_<FIELD>`` overrides each).

    Memory is bounded by these, whatever the event rate: ``upstream_hwm`` messages queued from
    ZeroMQ, ``lane_buffer`` events per lane and ``session_buffer`` per connection held ahead of
    gaps, and ``max_send_buffer`` bytes per connection's send queue.
    """

    max_frame: int = 1024 * 1024  # bytes; bigger closes with 1009
    rate: float = 50.0  # client messages per second, sustained
    burst: float = 100.0  # ... and in a burst
    max_strikes: int = 20  # refused messages in a row before closing with 1008
    max_send_buffer: int = 4 * 1024 * 1024  # bytes queued to a client, at most (then 1013)
    send_high_water: int = 256 * 1024  # bytes queued past which a client is written no more
    max_subscriptions: int = 256
    max_connections: int = 10_000  # connections at once; past it refused (close 1013)
    max_connections_per_user: int = 100  # ... per authenticated user (a token's sub)
    repair_timeout: float = 5.0  # a gap the store makes no progress on for this long is skipped
    upstream_hwm: int = 10_000  # messages queued from ZeroMQ before the publisher drops
    upstream_rcvbuf: int = 1024 * 1024  # bytes of kernel receive buffer (0: the system's)
    lane_buffer: int = 10_000  # live events held ahead of gaps, per lane
    session_buffer: int = 1000  # ... per connection (its execution subscriptions)
    max_lag: int = 1000  # events behind before a state-mode subscription gets a snapshot
    slow_timeout: float = 5.0  # a log client that reads nothing for this long is closed (1013)
    stop_timeout: float = 2.5  # seconds to close every connection when stopping
    flush_delay: float = 0.002  # seconds frames wait to be written together (0: each loop turn)
    max_body: int = 1024 * 1024  # bytes of an HTTP request body; bigger: 413, not read
    http_idle_timeout: float = 30.0  # an HTTP connection must complete a request within this
    # seconds between keepalive pings (0: none); no pong within as long closes the connection
    # (1011) — a peer gone without a FIN is noticed, and its queue freed
    ping_interval: float = 20.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """Defaults, overridden by ``ZMQMON_BRIDGE_<FIELD>`` variables (e.g. ``..._RATE=20``)."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"ZMQMON_BRIDGE_{f.name.upper()}")
            if raw:
                kind = int if f.type in ("int", int) else float
                try:
                    changes[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(f"ZMQMON_BRIDGE_{f.name.upper()}: not a number") from None
        return replace(cls(), **changes)


class Bridge:
    """A WebSocket bridge on ``host:port`` (port 0: any free one, see :attr:`port`)."""

    def __init__(
        self,
        events: str = DEFAULT_EVENTS,
        state: str | None = DEFAULT_STATE,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        jwt_secret: str | None = None,
        jwt_public_key: str | None = None,
        jwt_audience: str | None = None,
        jwt_issuer: str | None = None,
        limits: Limits | None = None,
        curve: CurveClient | None = None,
        allow_origin: str | Iterable[str] | None = None,
        allow_host: str | Iterable[str] | None = None,
    ) -> None:
        self.events = events
        self.state_endpoint = state
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.curve = curve
        self.auth = Authenticator(
            jwt_secret, jwt_public_key, audience=jwt_audience, issuer=jwt_issuer
        )
        self.guard = BrowserGuard(host, parse_list(allow_host), parse_list(allow_origin))
        self.hub: Hub
        self.routes: HttpRoutes
        self._fronts: set[HttpFront] = set()
        self._server: Server | None = None
        self._context: zmq.asyncio.Context | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._per_user: dict[str, int] = {}  # connections per authenticated user

    # -- URLs -------------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/api/ws``."""
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    @property
    def http_url(self) -> str:
        """``http://HOST:PORT`` (the dashboard is at ``/``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def endpoints(self) -> dict[str, str]:
        """What ``zmqmon bridge`` prints on its first line."""
        return {
            "ws": self.ws_url,
            "http": self.http_url,
            "health": f"{self.http_url}/api/ws/health",
            "dashboard": f"{self.http_url}/",
        }

    # -- asyncio face ---------------------------------------------------------------------------

    async def astart(self) -> Bridge:
        """Start on the running loop: connect upstream, listen."""
        self._context = zmq.asyncio.Context()
        ctx = self._context
        lim = self.limits
        clients: StateClients[AsyncStateClient] = StateClients(
            self.state_endpoint or None,
            lambda endpoint: AsyncStateClient(endpoint, context=ctx, curve=self.curve),
        )
        self.hub = Hub(
            lambda on_batch: Upstream(
                self.events,
                ctx,
                on_batch,
                rcvhwm=lim.upstream_hwm,
                rcvbuf=lim.upstream_rcvbuf,
                curve=self.curve,
            ),
            clients,
            auth_enabled=self.auth.enabled,
            repair_timeout=lim.repair_timeout,
            lane_buffer=lim.lane_buffer,
            max_lag=lim.max_lag,
            flush_delay=lim.flush_delay,
        )
        self.hub.start()
        self.routes = HttpRoutes(self.hub, self.auth, time.monotonic(), self.guard)
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self.routes,
            max_size=lim.max_frame,
            compression=None,  # per-message deflate would cost CPU on every fan-out write
            server_header="zmqmon-bridge",
            close_timeout=1.0,  # a client that never answers a close must not hold a stop
            ping_interval=lim.ping_interval or None,
            ping_timeout=lim.ping_interval or None,
            # Every connection starts at the HTTP front; a WebSocket is handed to websockets.
            create_connection=cast(Any, self._front),
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        log.info("zmqmon bridge on %s (auth %s)", self.ws_url, self.auth.enabled)
        return self

    def _front(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> HttpFront:
        """websockets' connection factory, wrapped: the connection starts as HTTP, and becomes
        the ``ServerConnection`` websockets would have made if it is a WebSocket handshake."""
        lim = self.limits
        return HttpFront(
            self.routes.handle,
            self.routes.gate,
            lambda: ServerConnection(protocol, server, **kwargs),
            ws_path=WS_PATH,
            fronts=self._fronts,
            max_body=lim.max_body,
            idle_timeout=lim.http_idle_timeout,
        )

    async def astop(self) -> None:
        """Close every connection, the listener and the upstream sockets — within
        ``limits.stop_timeout`` (connections that do not close by then are cut)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for front in list(self._fronts):  # plain HTTP connections (keep-alive)
                front.close()
            try:
                await asyncio.wait_for(server.wait_closed(), self.limits.stop_timeout)
            except TimeoutError:
                for conn in list(server.connections):
                    conn.transport.abort()
        await self.hub.close()
        self.hub.clients.close()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None

    async def _handler(self, ws: ServerConnection) -> None:
        principal = self.routes.principals.pop(ws, ANONYMOUS)
        lim = self.limits
        refusal = self._over_capacity(principal)
        if refusal is not None:
            self.hub.counters.error("capacity")
            await ws.close(CLOSE_TRY_AGAIN, refusal)
            return
        state = ConnectionState(
            str(uuid.uuid4()),
            principal,
            RateLimiter(lim.rate, lim.burst, time.monotonic, lim.max_strikes),
        )
        session = Session(
            ws,
            state,
            self.hub,
            max_buffer=lim.max_send_buffer,
            max_subscriptions=lim.max_subscriptions,
            buffer_events=lim.session_buffer,
            slow_timeout=lim.slow_timeout,
            high_water=lim.send_high_water,
        )
        self.hub.connections.add(session)
        if principal.user is not None:
            self._per_user[principal.user] = self._per_user.get(principal.user, 0) + 1
        try:
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            self.hub.drop_connection(session)
            if principal.user is not None:
                left = self._per_user.get(principal.user, 1) - 1
                if left:
                    self._per_user[principal.user] = left
                else:
                    self._per_user.pop(principal.user, None)
            await session.closed()

    def _over_capacity(self, principal: Principal) -> str | None:
        """Why a new connection is refused (1013, try again later), or None."""
        lim = self.limits
        if len(self.hub.connections) >= lim.max_connections:
            return f"too many connections (at most {lim.max_connections})"
        user = principal.user
        if user is not None and self._per_user.get(user, 0) >= lim.max_connections_per_user:
            return f"too many connections for this user (at most {lim.max_connections_per_user})"
        return None

    # -- thread face ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Bridge:
        """Run on a private loop in a daemon thread; returns once listening."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stop_event = asyncio.Event()
            try:
                await self.astart()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stop_event.wait()
            await self.astop()

        def target() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self._thread = threading.Thread(target=target, name="zmqmon-bridge", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("bridge did not start")
        if failure:
            raise failure[0]
        return self

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the bridge's loop and return its result (thread face)."""
        assert self._loop is not None
        fut: Any = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return fut.result(10)

    def stop(self) -> None:
        """Stop the thread face and wait for it."""
        if self._loop is not None and self._stop_event is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(15)
            self._thread = None

    def __enter__(self) -> Bridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


def run_bridge(
    events: str,
    state: str,
    host: str,
    port: int,
    jwt_secret: str | None,
    jwt_public_key: str | None,
    jwt_audience: str | None = None,
    jwt_issuer: str | None = None,
    curve: tuple[str | None, str] | None = None,
    allow_origin: str | None = None,
    allow_host: str | None = None,
) -> int:
    """``zmqmon bridge``: serve until SIGINT/SIGTERM; line 1 of stdout is the endpoints JSON.

    ``curve``: (keys directory, client name) when the service requires CURVE.
    ``allow_origin``/``allow_host``: comma-separated origins and host names browsers may use
    besides the bridge's own (see :mod:`zmqmon_bridge.guard`)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        bridge = Bridge(
            events or DEFAULT_EVENTS,
            state or None,  # none: the state services heartbeats name, one per publisher
            host or "127.0.0.1",
            port,
            jwt_secret=jwt_secret,
            jwt_public_key=jwt_public_key,
            jwt_audience=jwt_audience,
            jwt_issuer=jwt_issuer,
            limits=Limits.from_env(),
            curve=client_keys(curve),
            allow_origin=allow_origin,
            allow_host=allow_host,
        )
    except (OSError, ValueError) as exc:
        print(f"zmqmon bridge: {exc}", file=sys.stderr)
        return 2

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await bridge.astart()
        except OSError as exc:
            print(f"zmqmon bridge: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
            return 1
        if not is_loopback(bridge.host) and not bridge.auth.enabled:
            log.warning(
                "listening on %s without a JWT key: anyone who reaches it reads every execution; "
                "give --jwt-secret or --jwt-public-key",
                bridge.host,
            )
        print(json.dumps(bridge.endpoints), flush=True)
        print(f"zmqmon bridge: dashboard at {bridge.http_url}/", flush=True)
        await stop.wait()
        await bridge.astop()
        return 0

    return asyncio.run(main())
