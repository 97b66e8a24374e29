"""One WebSocket connection: its send queue, its own repair core, and its message handling.

A :class:`Session` is the hub's :class:`~zmqmon_bridge.hub.Sink` for one client.

**Execution subscriptions** are tracked by the session's own :class:`~zmqmon.core.clone.CloneCore`
(no reducer): the snapshot or ``afterSeq`` start, the catch-up from the store at this client's
pace, the order and the "none twice" of what it sends are this client's alone. Workflow and topic
subscriptions are relayed as the hub's lanes deliver them.

**Writes never await**: frames are queued and the hub flushes every queue once per loop turn, in
one ``transport.write`` per connection. A client that reads more slowly than events come is
*congested* once its send queue passes ``high_water`` bytes: nothing more is queued for it, and
the executions whose events it missed are noted (bounded) with the last seq it was sent. Once it
has drained below ``low_water`` it catches up — per contract §5:

* ``log`` mode: every event after that seq, read from the store in pages as fast as it takes
  them (:meth:`CloneCore.pin`), then live ones again: nothing lost, nothing held in memory;
* ``state`` mode: a fresh snapshot, then what follows it (:meth:`CloneCore.resync`).

A client holding a ``log``-mode subscription that stays congested for ``slow_timeout`` (it reads
nothing) is closed with 1013 and may resume with ``afterSeq``; one with only ``state``-mode
subscriptions is never closed for being slow. ``max_buffer`` is a hard bound on the queue.

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
from zmqmon.errors import NotFoundError, ServiceUnavailableError, ZmqmonError
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
_SLOW_CLOSE_GRACE: Final = 5.0  # seconds a 1013 close frame gets to reach a slow client


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
        slow_timeout: float = 5.0,
        high_water: int = 256 * 1024,
    ) -> None:
        self.ws = ws
        self.state = state
        self.hub = hub
        self.max_buffer = max_buffer
        # Past high_water it is congested (nothing more queued); below low_water it catches up.
        # Small: what a slow client is owed waits in the store, not in this process.
        self.high_water = min(high_water, max_buffer // 2)
        self.low_water = self.high_water // 4
        self.slow_timeout = slow_timeout
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
        # The transport's buffer as of the last flush: it only drains between flushes, so this
        # bounds it from above, and the transport is asked again only when the bound says full.
        self._backlog = 0
        self._knows = self.core.knows
        self._congested_since: float | None = None
        # executions it missed while congested → the last seq it was sent (-1: tracked by its
        # own core, which knows); bounded
        self._stale: OrderedDict[str, int] = OrderedDict()

    # -- output ---------------------------------------------------------------------------------

    def _buffered(self) -> int:
        transport: Any = self.ws.transport
        size: int = transport.get_write_buffer_size() if transport is not None else 0
        return size + self._pending_bytes

    def congested(self) -> bool:
        """Is nothing being queued for it until it drains (see the module doc)?"""
        return self._congested_since is not None

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

    def _room_for(self, size: int) -> bool:
        """May a frame be queued now? Past ``high_water`` the client becomes congested (one
        frame always fits an empty queue: an event may be larger than ``high_water``)."""
        if self._congested_since is not None:
            return False
        if self._backlog + self._pending_bytes + size <= self.high_water:
            return True  # (the cheap bound: no need to ask the transport)
        buffered = self._buffered()
        if buffered and buffered + size > self.high_water:
            self._congested_since = time.monotonic()
            return False
        return True

    def relay(self, item: Item, frame: bytes) -> int:
        """An item one of its workflow or topic subscriptions selects: to its own core if that
        tracks the execution (or did, to its end: what the lanes bring of it now are late
        duplicates, which the core drops), else queued as it is. 1 if queued as it is, else 0.

        Called per event per client, so queueing (``_queue`` less its checks) is inlined here.
        """
        if self._knows(item.execution_id):
            self.feed(item)
            return 0
        if self.closing:
            return 0
        size = len(frame)
        if self._room_for(size):
            pending = self._pending
            if not pending:
                self.hub.mark_dirty(self)
            pending.append(frame)
            self._pending_bytes += size
            return 1
        if item.execution_id not in self._stale:
            self._note_stale(item.execution_id, item.seq - 1 if isinstance(item, Relayed) else -1)
        return 0

    def feed(self, item: Item) -> None:
        """An item of an execution its own core tracks."""
        if self.closing:
            return
        if self._congested_since is not None:
            # Not even to the core: it would pile up in its ready queue. The store has it.
            self._note_stale(item.execution_id, -1)
            return
        if isinstance(item, Snapshot):
            self.core.offer_snapshot(item.state)
        else:
            self.core.on_event(item)
        self._take_ready()

    def _take_ready(self) -> None:
        core = self.core
        counters = self.hub.counters
        while core.ready and not self.closing:
            item = core.ready[0]
            frame = snapshot_frame(item.state) if isinstance(item, Snapshot) else item.frame
            if not self._room_for(len(frame)):
                self._note_stale(item.execution_id, -1)
                return  # the rest waits in the core (bounded: nothing more is fed meanwhile)
            core.ready.popleft()
            self._queue(frame)
            if isinstance(item, Snapshot):
                counters.snapshots_out += 1
            else:
                counters.events_out += 1

    def _note_stale(self, execution_id: str, last_sent: int) -> None:
        stale = self._stale
        if execution_id in stale:
            return
        stale[execution_id] = last_sent
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
        self._backlog = transport.get_write_buffer_size()

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
        if code == CLOSE_TRY_AGAIN:
            # The close frame queues behind what the slow client has not read yet: give it the
            # time to get there (and its 1013), rather than cut the connection without a code.
            self.ws.close_timeout = _SLOW_CLOSE_GRACE
        try:
            await asyncio.wait_for(self.ws.close(code, reason), (self.ws.close_timeout or 10) + 1)
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
        """Every tick: end a congestion once drained (catch up what it missed), close a log
        client that stays congested, serve its core's requests (pages only while it keeps up)."""
        if self.closing:
            return
        since = self._congested_since
        if since is not None:
            if self._buffered() <= self.low_water:
                self._congested_since = None
                self._catch_up()
                self._take_ready()
            elif self.state.log_policy and now - since > self.slow_timeout:
                self.hub.counters.slow_closes += 1
                self.close_slow()
                return
        if self._congested_since is None and self.core.has_pending:
            for request in self.core.poll(now, self.core.page_size):
                self.hub.spawn(self._answer(request))

    def _catch_up(self) -> None:
        """What it missed while congested: log — from the store after the last seq sent;
        state — a fresh snapshot (see the module doc)."""
        stale, self._stale = self._stale, OrderedDict()
        core = self.core
        for eid, last_sent in stale.items():
            if core.tracks(eid):
                if core.mode_of(eid) == "state":
                    core.resync(eid)
                else:
                    core.refresh(eid)
            elif not self._still_wanted(eid):
                continue
            elif self._mode_for(eid) == "state":
                core.resync(eid)
            elif last_sent >= 0:
                core.pin(eid, last_sent)
            # else: what it missed waits in its core's ready queue (written next), or was a
            # late duplicate of an execution it had caught up on

    def _still_wanted(self, execution_id: str) -> bool:
        """Does a subscription still select it (a re-sync of what no one wants is skipped)?"""
        subs = self.state.subscriptions
        if Subscription("execution", execution_id) in subs:
            return True
        return any(s.kind != "execution" for s in subs)

    def _mode_for(self, execution_id: str) -> str:
        """The mode it follows an execution in through workflows/topics (log wins a tie)."""
        modes = {m for s, m in self.state.subscriptions.items() if s.kind != "execution"}
        return "log" if "log" in modes or not modes else "state"

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
        client = self.hub.client_for(execution_id)
        try:
            if client is None:
                raise ServiceUnavailableError("no state service known for it yet")
            snap = await client.snapshot(execution_id)
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
