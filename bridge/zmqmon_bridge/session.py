"""One WebSocket connection: its send queue, its own repair core, and its message handling.

A :class:`Session` is the hub's :class:`~zmqmon_bridge.hub.Sink` for one client.

**Execution subscriptions** are tracked by the session's own :class:`~zmqmon.core.clone.CloneCore`
(no reducer): the snapshot or ``afterSeq`` start, the catch-up from the store at this client's
pace, the order and the "none twice" of what it sends are this client's alone. Workflow and topic
subscriptions are relayed as the hub's lanes deliver them.

**Writes never await**: frames are queued and the hub flushes every queue once per loop turn, in
one ``transport.write`` per connection. What happens when the client reads too slowly depends on
its subscriptions (contract §5):

* holding any ``log``-mode subscription, its send queue is bounded by ``max_buffer`` bytes; past
  it the client is closed with 1013 (it resumes with ``afterSeq``). Catch-up pages are fetched only
  while its queue is below ``low_water``.
* with only ``state``-mode subscriptions it is never closed for that: past ``high_water`` nothing
  more is queued for it, and the executions it missed are noted (bounded); once it has drained
  below ``low_water``, each gets a fresh snapshot and what follows it (:meth:`CloneCore.resync`).

Messages from the client are handled one at a time, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from zmqmon.core.clone import CloneCore
from zmqmon.core.delivery import Mode, Request, Snapshot
from zmqmon.core.events import format_timestamp
from zmqmon.errors import NotFoundError, ZmqmonError
from zmqmon_bridge.hub import Hub, Item
from zmqmon_bridge.protocol import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    ClientMessage,
    ClientMessageError,
    ConnectionState,
    Subscription,
    control,
    error_message,
    parse_client_message,
    text_frame,
)
from zmqmon_bridge.relayed import Relayed, snapshot_frame

__all__ = ["Session"]

_MAX_STALE: Final = 1024  # executions a congested state-mode client is owed a re-sync of


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
        buffer_events: int = 1000,
        page_size: int = 500,
    ) -> None:
        self.ws = ws
        self.state = state
        self.hub = hub
        self.max_buffer = max_buffer
        self.high_water = max_buffer // 2
        self.low_water = min(256 * 1024, max_buffer // 4)
        self.max_subscriptions = max_subscriptions
        self.core: CloneCore[Relayed] = CloneCore(
            keep_states=False,
            snapshot_joins=False,
            max_buffer=buffer_events,
            page_size=page_size,
            repair_timeout=hub.repair_timeout,
        )
        self.closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._stale: OrderedDict[str, None] = OrderedDict()

    # -- output ---------------------------------------------------------------------------------

    def _buffered(self) -> int:
        transport: Any = self.ws.transport
        size: int = transport.get_write_buffer_size() if transport is not None else 0
        return size + self._pending_bytes

    def congested(self) -> bool:
        """Is the send queue above the low-water mark?"""
        return self._buffered() > self.low_water

    def send(self, data: bytes) -> None:
        """Queue one text message (control messages: always queued)."""
        self._queue(text_frame(data))

    def _queue(self, frame: bytes) -> None:
        if self.closing:
            return
        if not self._pending:
            self.hub.mark_dirty(self)
        self._pending.append(frame)
        self._pending_bytes += len(frame)

    def _send_item(self, execution_id: str, frame: bytes) -> bool:
        """Queue a relayed frame under the congestion policy; False if it was not queued."""
        if self.closing:
            return False
        if not self.state.log_policy and self._buffered() + len(frame) > self.high_water:
            self._note_stale(execution_id)
            return False
        self._queue(frame)
        return True

    def relay(self, execution_id: str, frame: bytes) -> None:
        """An item one of its workflow or topic subscriptions selects."""
        self._send_item(execution_id, frame)

    def tracks(self, execution_id: str) -> bool:
        """Does its own core track this execution?"""
        return self.core.tracks(execution_id)

    def feed(self, item: Item) -> None:
        """An item of an execution its own core tracks."""
        if isinstance(item, Snapshot):
            self.core.offer_snapshot(item.state)
        else:
            self.core.on_event(item)
        self._take_ready()

    def _take_ready(self) -> None:
        take = self.core.take_ready
        counters = self.hub.counters
        while (item := take()) is not None:
            if isinstance(item, Snapshot):
                if self._send_item(item.execution_id, snapshot_frame(item.state)):
                    counters.snapshots_out += 1
            elif self._send_item(item.execution_id, item.frame):
                counters.events_out += 1

    def _note_stale(self, execution_id: str) -> None:
        stale = self._stale
        stale[execution_id] = None
        stale.move_to_end(execution_id)
        if len(stale) > _MAX_STALE:
            stale.popitem(last=False)

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

    def close_slow(self) -> None:
        """Close for being too slow (1013): it may resume with ``afterSeq``."""
        self.close(CLOSE_TRY_AGAIN, "too slow: send queue full")

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

    # -- its own core's requests ---------------------------------------------------------------

    def service(self, now: float) -> None:
        """Serve its core's requests (pages only while it keeps up) and owed re-syncs."""
        if self.closing or not (self._stale or self.core.has_pending):
            return
        if self._stale and self._buffered() <= self.low_water:
            stale, self._stale = self._stale, OrderedDict()
            for eid in stale:
                if self._still_wanted(eid):
                    self.core.resync(eid)
        room = 0 if self.congested() else self.core.page_size
        for request in self.core.poll(now, room):
            self.hub.spawn(self._answer(request))

    def _still_wanted(self, execution_id: str) -> bool:
        """Does a subscription still select it (a re-sync of what no one wants is skipped)?"""
        subs = self.state.subscriptions
        if Subscription("execution", execution_id) in subs:
            return True
        return any(s.kind != "execution" for s in subs)

    async def _answer(self, request: Request) -> None:
        reply = await self.hub.answer(request)
        if self.closing:
            return
        self.core.on_reply(request, reply, time.monotonic())
        self._take_ready()
        self.service(time.monotonic())  # page on at once

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
        sub = msg.subscription
        assert sub is not None
        if msg.type == "unsubscribe":
            self._remove(sub)
            self.send(control("unsubscribed", **sub.key))
            return
        if sub.kind != "execution":
            held = self.state.holds(sub)
            if held != msg.mode:
                if held is None and self.state.subscription_count >= self.max_subscriptions:
                    self.error("invalid_message", "too many subscriptions on this connection")
                    return
                self._remove(sub)
                self.state.add(sub, msg.mode)
                self.hub.subscribe(self, sub, msg.mode)
            self.send(control("subscribed", **sub.key))
            return
        await self._subscribe_execution(sub, msg.after_seq, msg.mode)

    def _remove(self, sub: Subscription) -> None:
        mode = self.state.remove(sub)
        if mode is not None:
            self.hub.unsubscribe(self, sub, mode)
        if sub.kind == "execution":
            self.core.unsubscribe_execution(sub.value)

    async def _subscribe_execution(
        self, sub: Subscription, after_seq: int | None, mode: Mode
    ) -> None:
        execution_id = sub.value
        if self.state.holds(sub) is not None:
            self._remove(sub)  # subscribing again starts over
        elif self.state.subscription_count >= self.max_subscriptions:
            self.error("invalid_message", "too many subscriptions on this connection")
            return
        # Subscribe upstream FIRST, then ask: live events meanwhile wait in the core's buffer.
        self.state.add(sub, mode)
        self.hub.subscribe(self, sub, mode)
        request = self.core.subscribe_execution(execution_id, after_seq, mode=mode)
        try:
            snap = await self.hub.client.snapshot(execution_id)
        except NotFoundError:
            self._undo(sub)
            self.error("not_found", f"no execution {execution_id!r}", executionId=execution_id)
            return
        except ZmqmonError as exc:
            self._undo(sub)
            self.error(
                "unavailable",
                f"execution {execution_id!r}: state service unavailable: {exc}",
                executionId=execution_id,
            )
            return
        self.hub.learn_owner(execution_id, snap.user_id)
        if not self.state.principal.can_see(snap.user_id):
            self._undo(sub)
            self.error(
                "forbidden", f"execution {execution_id!r} is not yours", executionId=execution_id
            )
            return
        if self.state.holds(sub) != mode or self.closing:
            return  # unsubscribed, re-subscribed or closed meanwhile
        self.send(control("subscribed", executionId=execution_id))
        if request is not None:
            self._queue(snapshot_frame(snap))
            self.core.on_reply(request, snap, time.monotonic())
        self._take_ready()
        self.service(time.monotonic())

    def _undo(self, sub: Subscription) -> None:
        if self.state.holds(sub) is not None:
            self._remove(sub)
