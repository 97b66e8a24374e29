"""One WebSocket connection: its non-blocking send queue and its message handling.

A :class:`Session` is the hub's :class:`~zmqmon_bridge.hub.Sink` for one client. Writes never
await: frames are queued and the hub flushes every queue once per loop turn, in one
``transport.write`` per connection (coalescing many events in one syscall), unless the transport's
buffer (the connection's bounded send queue) would then hold more than ``max_buffer`` bytes — the
client is too slow, and it is closed with 1013. Messages from the client are handled one at a
time, in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from zmqmon.core.events import format_timestamp
from zmqmon.core.wire import dumps
from zmqmon.errors import NotFoundError, ServiceError, ServiceUnavailableError
from zmqmon_bridge.hub import Hub
from zmqmon_bridge.protocol import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    ClientMessage,
    ClientMessageError,
    ConnectionState,
    control,
    error_message,
    parse_client_message,
    text_frame,
)

__all__ = ["Session"]


class Session:
    """A client connection: sends without waiting, handles its messages in order."""

    def __init__(
        self,
        ws: ServerConnection,
        state: ConnectionState,
        hub: Hub,
        *,
        max_buffer: int,
        max_subscriptions: int,
    ) -> None:
        self.ws = ws
        self.state = state
        self.hub = hub
        self.max_buffer = max_buffer
        self.max_subscriptions = max_subscriptions
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    # -- output ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one text message (see :meth:`send_frame`)."""
        self.send_frame(text_frame(data))

    def send_frame(self, frame: bytes) -> None:
        """Queue one encoded frame; the hub flushes every queue once per loop turn."""
        if self.closing:
            return
        if not self._pending:
            self.hub.mark_dirty(self)
        self._pending.append(frame)
        self._pending_bytes += len(frame)

    def flush(self) -> None:
        """Write what is queued in one write; a full send queue closes the client with 1013.

        The send queue is the transport's buffer: what the kernel would not take yet. Frames
        are complete when written, so websockets' own frames (pings, close) never split ours;
        once it has started closing, nothing more of ours is written.
        """
        frames, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        ws = self.ws
        if self.closing or not frames or ws.protocol.state is not State.OPEN:
            return
        transport: Any = ws.transport
        if transport.get_write_buffer_size() + size > self.max_buffer:
            self.hub.counters.slow_closes += 1
            self.close(CLOSE_TRY_AGAIN, "too slow: send queue full")
            return
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def close(self, code: int, reason: str) -> None:
        """Close without waiting; the hub forgets the connection right away."""
        if self.closing:
            return
        if code != CLOSE_TRY_AGAIN:
            self.flush()  # what was said before the close goes out first
            if self.closing:
                return
        self.closing = True
        self.hub.drop_connection(self)
        self._close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code, reason), self.ws.close_timeout or 10)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            transport: Any = self.ws.transport
            transport.abort()

    def error(self, code: str, message: str, **fields: Any) -> None:
        """Send an ``error`` message (and count it)."""
        self.hub.counters.error(code)
        self.send(error_message(code, message, **fields))

    # -- input ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes; cleanup is the caller's (``finally``)."""
        self.send(control("connected", connectionId=self.state.id))
        expires = self.state.principal.expires
        timer = None
        if expires is not None:
            # The token was valid at the handshake; it stops being so at its `exp`.
            loop = asyncio.get_running_loop()
            timer = loop.call_later(max(0.0, expires - time.time()), self._expired)
        try:
            await self._serve()
        finally:
            if timer is not None:
                timer.cancel()
        await self.closed()

    def _expired(self) -> None:
        self.error("unauthorized", "token expired")
        self.close(CLOSE_POLICY, "token expired")

    async def _serve(self) -> None:
        async for raw in self.ws:
            if self.closing:
                break
            verdict = self.state.limiter.check()
            if verdict != "ok":
                self.error("rate_limited", "too many messages; slow down")
                if verdict == "close":
                    self.hub.counters.rate_closes += 1
                    self.close(CLOSE_POLICY, "rate limit exceeded")
                    break
                continue
            try:
                msg = parse_client_message(raw)
            except ClientMessageError as exc:
                self.error(exc.code, exc.message)
                continue
            await self.handle(msg)

    async def closed(self) -> None:
        """Wait for a close this side started (the handler must not return first: that
        would close with 1000 instead of the code chosen)."""
        if self._close_task is not None:
            await self._close_task

    async def handle(self, msg: ClientMessage) -> None:
        """Act on one valid message."""
        if msg.type == "ping":
            self.send(control("pong", timestamp=format_timestamp(time.time())))
            return
        assert msg.kind is not None
        key = _key(msg)
        if msg.type == "unsubscribe":
            if self.state.remove(msg.kind, msg.value):
                self.hub.unindex(self, msg.kind, msg.value)
            self.send(control("unsubscribed", **key))
            return
        if msg.kind != "execution":
            if not self.state.holds(msg.kind, msg.value):
                if self.state.subscription_count >= self.max_subscriptions:
                    self.error("invalid_message", "too many subscriptions on this connection")
                    return
                self.state.add(msg.kind, msg.value)
                self.hub.index(self, msg.kind, msg.value)
            self.send(control("subscribed", **key))
            return
        await self._subscribe_execution(msg.value, msg.after_seq)

    async def _subscribe_execution(self, execution_id: str, after_seq: int | None) -> None:
        st, hub = self.state, self.hub
        if st.remove("execution", execution_id):  # subscribing again starts over
            hub.unindex(self, "execution", execution_id)
        elif st.subscription_count >= self.max_subscriptions:
            self.error("invalid_message", "too many subscriptions on this connection")
            return
        # Subscribe upstream FIRST, then fetch: live events meanwhile wait in the cursor's buffer.
        sub = st.add("execution", execution_id)
        assert sub is not None
        hub.index(self, "execution", execution_id)
        reach = hub.released(execution_id)  # fanned out already: they will not come live again
        try:
            snap = await hub.state.snapshot(execution_id)
        except (NotFoundError, ServiceError, ServiceUnavailableError) as exc:
            self._undo(execution_id)
            if isinstance(exc, NotFoundError):
                self.error("not_found", f"no execution {execution_id!r}", executionId=execution_id)
            else:
                self.error(
                    "not_found",
                    f"execution {execution_id!r} unavailable: {exc}",
                    executionId=execution_id,
                )
            return
        owner = snap.get("userId")
        hub.set_owner(execution_id, owner)
        if not st.principal.can_see(owner):
            self._undo(execution_id)
            self.error(
                "forbidden", f"execution {execution_id!r} is not yours", executionId=execution_id
            )
            return
        if st.executions.get(execution_id) is not sub:
            return  # unsubscribed or closed meanwhile
        self.send(control("subscribed", executionId=execution_id))
        if after_seq is None:
            self.send(dumps({"type": "snapshot", "executionId": execution_id, "execution": snap}))
            sub.delivered = int(snap.get("lastSeq") or 0)
        else:
            sub.delivered = after_seq
        await self._catch_up(execution_id, reach)

    def _undo(self, execution_id: str) -> None:
        if self.state.remove("execution", execution_id):
            self.hub.unindex(self, "execution", execution_id)

    async def _catch_up(self, execution_id: str, reach: int) -> None:
        """Send stored events after the cursor until they join the live ones."""
        hub = self.hub
        deadline = time.monotonic() + hub.repair_timeout
        delay = 0.01
        while True:
            sub = self.state.executions.get(execution_id)
            if sub is None or self.closing:
                return
            try:
                events, stored_last = await hub.state.events(execution_id, sub.delivered, 1000)
            except (ServiceError, ServiceUnavailableError):
                events, stored_last = [], 0
            items = [(e["seq"], dumps(e)) for e in events if isinstance(e.get("seq"), int)]
            reach = max(reach, stored_last)
            give_up = not items and time.monotonic() > deadline
            out, missing = self.state.catch_up(execution_id, items, reach, give_up)
            for payload in out:
                self.send(payload)
            hub.counters.events_out += len(out)
            if missing is None:
                done = self.state.executions.get(execution_id)
                if done is not None:
                    hub.baseline(execution_id, done.delivered)
                return
            if not items:
                await asyncio.sleep(delay)  # the store lags the live stream a little
                delay = min(delay * 2, 0.2)


def _key(msg: ClientMessage) -> dict[str, str]:
    name = {"execution": "executionId", "workflow": "workflowId", "topic": "topic"}
    assert msg.kind is not None
    return {name[msg.kind]: msg.value}
