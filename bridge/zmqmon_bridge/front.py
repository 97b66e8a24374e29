"""The bridge's HTTP/1.1 front: one port for the HTTP API, the dashboard and the WebSocket.

websockets' HTTP side (``process_request``) reads no request body, answers one request per
connection and serves every method alike. The HTTP API needs bodies, so every connection on the
bridge's port starts here: an :class:`HttpFront` (an asyncio protocol) parses requests with
**h11** (sans-I/O HTTP/1.1: keep-alive, pipelining, chunked bodies, ``Expect: 100-continue``) and
answers them one at a time, in order. A ``GET /api/ws`` is handed over whole to websockets: the
request's bytes are replayed into a websockets ``ServerConnection``, which then owns the transport
— from the handshake on, a WebSocket costs exactly what it cost before (the front is no longer in
the data path).

Bounds: a request body over ``max_body`` is refused with 413 (before it is read when
``Content-Length`` says so) and the connection closed; header blocks are capped by h11 (16 KiB,
431); reading pauses while a request is being answered, so pipelined requests wait in the kernel,
not here; a connection that does not complete a request within ``idle_timeout`` of the last
answer (or of connecting) is closed.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

from zmqmon.core.wire import dumps

__all__ = ["HttpFront", "HttpReply", "HttpRequest", "error_reply", "json_reply"]

log = logging.getLogger("zmqmon.bridge.http")

SERVER = b"zmqmon-bridge"
_LINGER = 2.0  # seconds a refused request's remaining bytes are read and dropped before closing


@dataclass(frozen=True)
class HttpRequest:
    """One request as the routes see it: header names lower-case, the body read whole."""

    method: str
    target: str  # as sent: path and query, percent-encoded
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target's path (still percent-encoded)."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The target's query parameters."""
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)


@dataclass
class HttpReply:
    """One response: status, body, its content type, further headers; ``close`` ends the
    connection after it."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpReply:
    """A JSON response."""
    return HttpReply(status, dumps(body), "application/json", dict(headers or {}))


def error_reply(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> HttpReply:
    """The API's error shape: ``{"error": {"code", "message"}}``."""
    return json_reply(status, {"error": {"code": code, "message": message}}, headers)


Handler = Callable[[HttpRequest], Awaitable[HttpReply]]
#: called with a ``GET /api/ws`` request before the hand-over: a reply refuses it (403 …)
Gate = Callable[[HttpRequest], HttpReply | None]


def _reason(reply: HttpReply) -> bytes:
    try:
        return http.HTTPStatus(reply.status).phrase.encode()
    except ValueError:
        return b""


def _request_bytes(event: h11.Request) -> bytes:
    """The request line and headers as sent (names in their original case)."""
    lines = [event.method + b" " + event.target + b" HTTP/" + event.http_version]
    lines.extend(name + b": " + value for name, value in event.headers.raw_items())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _headers(event: h11.Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in event.headers.raw_items():
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class HttpFront(asyncio.Protocol):
    """One TCP connection until it becomes a WebSocket (if it does)."""

    def __init__(
        self,
        handler: Handler,
        gate: Gate,
        upgrade: Callable[[], asyncio.Protocol],
        *,
        ws_path: str,
        fronts: set[HttpFront],
        max_body: int,
        idle_timeout: float,
    ) -> None:
        self.handler = handler
        self.gate = gate
        self.upgrade = upgrade
        self.ws_path = ws_path
        self.fronts = fronts
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._discarding = False

    # -- asyncio protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.fronts.add(self)
        self._arm_timer()

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        try:
            self.conn.receive_data(data)
        except RuntimeError:  # data after a close we decided on: ignore it
            return
        if not self._busy:
            self._process()

    def eof_received(self) -> bool:
        if self._discarding:
            return False  # the lingering close is over: close
        # Half-closed by the client: requests it sent before still get their answers.
        self.conn.receive_data(b"")
        if not self._busy:
            self._process()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.fronts.discard(self)
        self._cancel_timer()
        self.transport = None

    def close(self) -> None:
        """Close at once (the bridge stopping)."""
        if self.transport is not None:
            self.transport.close()

    # -- requests ---------------------------------------------------------------------------------

    def _process(self) -> None:
        """Take events from h11 until a request is complete (then answer it) or data is needed."""
        while self.transport is not None and not self._busy:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._send_reply(error_reply(status, "bad_request", f"bad HTTP request: {exc}"))
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return
            if isinstance(event, h11.Request):
                if self._start(event):
                    return
            elif isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > self.max_body:
                    self._too_large()
                    return
                self._body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
                return

    def _start(self, event: h11.Request) -> bool:
        """A request line and headers arrived; True if nothing more is to be read here."""
        self._request = event
        self._body, self._body_size = [], 0
        target = urlsplit(event.target.decode("latin-1")).path
        if event.method == b"GET" and target == self.ws_path:
            refused = self.gate(self._as_request(event, b""))
            if refused is None:
                self._hand_over(event)
            else:
                refused.close = True
                self._send_reply(refused)
            return True
        declared = next((v for k, v in event.headers if k == b"content-length"), None)
        if declared is not None and int(declared) > self.max_body:
            self._too_large()  # refused before a byte of it is read
            return True
        if self.conn.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))
        return False

    def _too_large(self) -> None:
        reply = error_reply(
            413, "too_large", f"request body over {self.max_body} bytes: refused, not read"
        )
        reply.close = True
        self._send_reply(reply)

    def _as_request(self, event: h11.Request, body: bytes) -> HttpRequest:
        return HttpRequest(
            event.method.decode("latin-1"),
            event.target.decode("latin-1"),
            _headers(event),
            body,
        )

    def _dispatch(self) -> None:
        event = self._request
        assert event is not None and self.transport is not None
        request = self._as_request(event, b"".join(self._body))
        self._body = []
        self._busy = True
        self._cancel_timer()
        self.transport.pause_reading()  # pipelined requests wait in the kernel meanwhile
        self._task = asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, request: HttpRequest) -> None:
        try:
            reply = await self.handler(request)
        except Exception as exc:  # a route's bug: answer it, keep serving
            log.exception("HTTP %s %s failed", request.method, urlsplit(request.target).path)
            reply = error_reply(500, "internal", f"{type(exc).__name__}: {exc}")
        if self.transport is None:
            return
        self._send_reply(reply, head=request.method == "HEAD")
        if self.transport is None or self.transport.is_closing() or self._discarding:
            return
        self._busy = False
        self._arm_timer()
        self.transport.resume_reading()
        self._process()  # the next pipelined request, if h11 holds one already

    # -- responses --------------------------------------------------------------------------------

    def _send(self, event: Any) -> None:
        if self.transport is None:
            return
        data = self.conn.send(event)
        if data:
            self.transport.write(data)

    def _send_reply(self, reply: HttpReply, *, head: bool = False) -> None:
        if self.transport is None:
            return
        body = reply.body
        headers = [
            (b"Server", SERVER),
            (b"Content-Type", reply.content_type.encode("latin-1")),
            (b"Content-Length", str(len(body)).encode()),
            (b"X-Content-Type-Options", b"nosniff"),
            (b"Cache-Control", b"no-store"),
        ]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items())
        if reply.close:
            headers.append((b"Connection", b"close"))
        try:
            head_event = h11.Response(
                status_code=reply.status, headers=headers, reason=_reason(reply)
            )
            self._send(head_event)
            if body and not head:
                self._send(h11.Data(data=body))
            self._send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            # e.g. an error about a request h11 could not even parse: say it, then close
            self.transport.write(
                b"HTTP/1.1 %d \r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (reply.status, len(body), body)
            )
            self.transport.close()
            return
        conn = self.conn
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE and not reply.close:
            conn.start_next_cycle()
        elif conn.their_state is h11.DONE or conn.their_state is h11.CLOSED:
            self.transport.close()
        else:
            self._linger()

    def _linger(self) -> None:
        """Close after a reply while the client may still be sending (a refused body): end our
        side, then read and drop what comes for a moment — closing with unread bytes would reset
        the connection, and the client could lose the reply before reading it."""
        transport = self.transport
        assert transport is not None
        self._discarding = True
        if transport.can_write_eof():
            transport.write_eof()
        transport.resume_reading()
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(_LINGER, transport.close)

    # -- the WebSocket hand-over ----------------------------------------------------------------

    def _hand_over(self, event: h11.Request) -> None:
        """Give the connection to websockets: it reads the same request bytes we did."""
        transport = self.transport
        assert transport is not None
        replay = _request_bytes(event) + self.conn.trailing_data[0]
        self._cancel_timer()
        self.fronts.discard(self)
        self.transport = None
        protocol = self.upgrade()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(replay)

    # -- idle timeout -----------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.idle_timeout, self._on_idle)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_idle(self) -> None:
        self._timer = None
        if self.transport is not None and not self._busy:
            self.transport.close()
