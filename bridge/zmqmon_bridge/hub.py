"""The hub: upstream events → the connections that want them and may see them.

One hub per bridge. Every decision about order, gaps, catch-up and snapshots is the project's one
repair logic, :class:`zmqmon.core.clone.CloneCore`, driven here on the asyncio loop:

* **Two lanes**, one core per delivery mode, each filtering what its connections' subscriptions
  select (:class:`~zmqmon_bridge.routing.Routes`): the ``log`` lane delivers every event in order,
  paging a backlog from the store only while its connections keep up (``room``); the ``state``
  lane replaces a backlog past ``max_lag`` by a snapshot, which goes to its connections as a
  ``snapshot`` message. Both relay (no reducer) and never hold more than ``lane_buffer`` events
  ahead of gaps.
* **Per connection**, execution subscriptions (and state-mode re-syncs) are tracked by the
  connection's own core (:mod:`zmqmon_bridge.session`): its snapshot/``afterSeq`` catch-up reads
  the store at that client's pace, and its cursor keeps "in order, none twice" for it alone — one
  client's ``afterSeq`` never moves another's.

Upstream, every message is read by :class:`~zmqmon_bridge.upstream.Upstream` in bounded batches
from a SUB socket with a bounded queue (past it, the publisher drops and the store fills in). A
live event no lane needs (its execution is far behind, or replaced by a coming snapshot) is skipped
undecoded. Each one needed is validated once, kept as its WebSocket frame
(:class:`~zmqmon_bridge.relayed.Relayed`) and fanned out. Any message proves the publisher alive.

Requests to the state service (pages, snapshots, owner lookups) run as concurrent tasks on one
:class:`~zmqmon.shells.client.AsyncStateClient`; a periodic tick serves retries and paging. Fan-out
never awaits: a connection's send is a non-blocking queue flushed once per loop turn.

With auth on, nothing of an execution is relayed before its owner is known
(:class:`~zmqmon_bridge.owners.OwnerBook`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

from zmqmon.core import calls
from zmqmon.core.clone import CloneCore
from zmqmon.core.delivery import (
    MODES,
    EventsPage,
    FetchEvents,
    Mode,
    Reply,
    Request,
    Snapshot,
    Unavailable,
)
from zmqmon.core.wire import Heartbeat
from zmqmon.errors import NotFoundError, ProtocolError, ZmqmonError
from zmqmon.shells.client import AsyncStateClient
from zmqmon.shells.repair import NO_SERVICE, StateClients, failure
from zmqmon_bridge.owners import OwnerBook
from zmqmon_bridge.protocol import ConnectionState, Subscription
from zmqmon_bridge.relayed import Relayed, decode, decode_stored, page_payloads, snapshot_frame
from zmqmon_bridge.routing import Change, Routes
from zmqmon_bridge.upstream import Upstream

__all__ = ["Counters", "Hub", "Sink"]

log = logging.getLogger("zmqmon.bridge")

TICK: Final = 0.02  # seconds between services of retries, paging and slow-client checks
#: requests to the state service in flight at once (lanes' and connections' pages, snapshots):
#: replies are processed a few at a time, so the loop stays free for pings and live events
MAX_REQUESTS: Final = 8
#: pages the log lane may have asked for and not yet handed out (memory: this many pages at most)
LANE_PAGES: Final = MAX_REQUESTS
_CHUNK: Final = 256  # items fanned out per loop turn when a page is released
SERVICE_TTL: Final = 15.0  # seconds a state service heartbeats named stays offered to the API
_PAGES: Final = 32  # full pages kept for clients catching up on the same execution
_EXEC: Final = b"exec/"

Item = Relayed | Snapshot


class Sink(Protocol):
    """A connection as the hub sees it (:class:`~zmqmon_bridge.session.Session`)."""

    state: ConnectionState

    def feed(self, item: Item) -> None:
        """An item for its own core (which orders, dedups and catches up)."""
        ...

    def relay(self, item: Item, frame: bytes) -> int:
        """An item selected by a workflow or topic subscription, and its frame: to its own core
        if that tracks the execution, else queued as it is (→ 1; 0 if not queued as it is)."""
        ...

    def congested(self) -> bool:
        """Is it too far behind to be written to (it will catch up on its own)?"""
        ...

    def service(self, now: float) -> None:
        """Serve its own core's requests, re-syncs and send queue (called every tick)."""
        ...

    def flush(self) -> None:
        """Write what is queued (a full send queue closes the connection)."""
        ...


class Counters:
    """Plain counters read by /metrics and /api/ws/health (cheaper than metric objects)."""

    def __init__(self) -> None:
        self.events_in = 0  # decoded live events
        self.events_out = 0  # frames of events queued to clients
        self.skipped_live = 0  # live events not decoded: their execution was being caught up
        self.snapshots_out = 0  # state-mode snapshot messages sent
        self.drops = 0  # garbage upstream, unreadable stored events, owner never learned
        self.slow_closes = 0
        self.rate_closes = 0
        self.gap_fetches = 0
        self.page_hits = 0  # pages served from the hub's cache
        self.errors: dict[str, int] = {}

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Hub:
    """Routes upstream events to connections; holds upstream prefixes while they are wanted."""

    def __init__(
        self,
        upstream_factory: Callable[[Callable[[list[tuple[bytes, bytes]], float], None]], Upstream],
        clients: StateClients[AsyncStateClient],
        *,
        auth_enabled: bool,
        repair_timeout: float = 5.0,
        join_history: int = 1000,
        lane_buffer: int = 10_000,
        max_lag: int = 1000,
        flush_delay: float = 0.0,
    ) -> None:
        self.upstream: Upstream = upstream_factory(self.on_batch)
        #: the configured state service, and each one heartbeats name (executors behind a proxy)
        self.clients = clients
        self.auth_enabled = auth_enabled
        self.repair_timeout = repair_timeout
        self.flush_delay = flush_delay
        self.lanes: dict[Mode, CloneCore[Relayed]] = {
            mode: CloneCore(
                mode=mode,
                keep_states=False,
                snapshot_joins=mode == "state",  # state clients get a snapshot, log ones events
                join_history=join_history,
                max_buffer=lane_buffer,
                page_size=1000,
                max_lag=max_lag,
                repair_timeout=repair_timeout,
            )
            for mode in MODES
        }
        self.routes: Routes[Sink] = Routes()
        self.owners: OwnerBook[tuple[Mode, Item]] = OwnerBook()
        self.counters = Counters()
        self.connections: set[Sink] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: list[Sink] = []
        self._lane_pages = 0  # the log lane's page fetches not yet handed out
        self._ticker: asyncio.Task[None] | None = None
        self._requests = asyncio.Semaphore(MAX_REQUESTS)
        self._pages: OrderedDict[tuple[str, int, int, str | None], EventsPage] = OrderedDict()
        self._in_flight: dict[tuple[str, int, int, str | None], asyncio.Future[Reply]] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the upstream reader and the tick on the running loop."""
        self.upstream.start()
        self._ticker = asyncio.create_task(self._tick())

    async def close(self) -> None:
        """Stop every task and the upstream reader."""
        tasks = list(self._tasks)
        if self._ticker is not None:
            tasks.append(self._ticker)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.upstream.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.service(time.monotonic())
            except Exception:  # a bug here must not end the relay
                log.exception("hub tick failed")

    # -- bookkeeping --------------------------------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return sum(c.state.subscription_count for c in self.connections)

    @property
    def busy(self) -> bool:
        """A request to the state service is under way."""
        return bool(self._tasks)

    def spawn(self, coro: Any) -> None:
        """Run a coroutine as a task the hub cancels when it closes."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def mark_dirty(self, sink: Sink) -> None:
        """A sink queued its first frame since the last flush: flush it ``flush_delay`` from now
        (0: this loop turn). A short delay coalesces a busy stream's frames into fewer writes,
        one system call per connection for many events (the lever Centrifugo reports)."""
        if not self._dirty:
            loop = asyncio.get_running_loop()
            if self.flush_delay > 0:
                loop.call_later(self.flush_delay, self.flush_all)
            else:
                loop.call_soon(self.flush_all)
        self._dirty.append(sink)

    def flush_all(self) -> None:
        """Flush every sink with queued frames (once per loop turn, after a batch)."""
        dirty, self._dirty = self._dirty, []
        for sink in dirty:
            sink.flush()

    def subscribe(self, sink: Sink, sub: Subscription, mode: Mode) -> None:
        """Register a subscription already recorded in ``sink.state``; hold what it needs."""
        self._apply(self.routes.add(sink, sub, mode), mode, True)

    def unsubscribe(self, sink: Sink, sub: Subscription, mode: Mode) -> None:
        """Undo :meth:`subscribe`."""
        self._apply(self.routes.remove(sink, sub, mode), mode, False)

    def _apply(self, change: Change, mode: Mode, on: bool) -> None:
        if change.lane_filter is not None:
            lane = self.lanes[mode]
            kind, value = change.lane_filter
            if kind == "workflow":
                (lane.subscribe_workflow if on else lane.unsubscribe_workflow)(value)
            else:
                (lane.subscribe_topic if on else lane.unsubscribe_topic)(value)
        if change.upstream_prefix is not None:
            if on:
                self.upstream.acquire(change.upstream_prefix)
            else:
                self.upstream.release(change.upstream_prefix)

    def drop_connection(self, sink: Sink) -> None:
        """Forget everything a connection held, however it went."""
        for sub, mode in sink.state.clear():
            self.unsubscribe(sink, sub, mode)
        self.connections.discard(sink)

    def learn_owner(self, execution_id: str, owner: str | None) -> None:
        """An execution's owner became known (a snapshot, a listing): relay what waited."""
        for mode, item in self.owners.learn(execution_id, owner):
            self._fan_out(mode, item)

    # -- upstream ------------------------------------------------------------------------------

    def on_message(self, topic: bytes, payload: bytes) -> None:
        """One ZMQ message (a batch of one; see :meth:`on_batch`)."""
        self._relay_batch([(topic, payload)])

    def on_batch(self, batch: list[tuple[bytes, bytes]], now: float) -> None:
        """A batch from the upstream reader (never awaits): relay it; the publisher lives;
        serve what the lanes asked."""
        if batch:
            self._relay_batch(batch)
        for lane in self.lanes.values():
            lane.touch(now)
        self._service_lanes(now)

    def _relay_batch(self, batch: list[tuple[bytes, bytes]]) -> None:
        """Two passes: decode every message a lane needs, then hand each to the lanes and fan it
        out, in order. Each pass keeps its own code and data warm in the CPU's caches, which the
        other processes of a busy host keep evicting: the bridge bench measured ~30 % less time
        per message than decoding and relaying each message in turn.

        Whether a lane needs an event is asked before the batch moves the lanes; either answer
        is safe: an event a lane no longer needs is dropped or buffered there (bounded), one
        skipped is fetched from the store like any gap."""
        decoded = [self._decode(topic, payload) for topic, payload in batch]
        for msg in decoded:
            if isinstance(msg, Relayed):
                self._relay(msg)
            elif isinstance(msg, Heartbeat):
                now = time.monotonic()
                for lane in self.lanes.values():
                    lane.on_heartbeat(msg, now)

    def _decode(self, topic: bytes, payload: bytes) -> Relayed | Heartbeat | None:
        """The message decoded; None if it is garbage, or an event no lane needs now: of an
        execution far behind (the store will provide it) or about to be re-snapshotted."""
        if topic.startswith(_EXEC):
            eid = topic[5 : topic.rfind(b"/")].decode(errors="replace")
            lanes = self.lanes
            if not (lanes["log"].needs_live(eid) or lanes["state"].needs_live(eid)):
                self.counters.skipped_live += 1  # caught up from the store, or re-snapshotted
                return None
        try:
            return decode(topic, payload)
        except ProtocolError:
            self.counters.drops += 1  # not an event of the contract: never relayed
            self.lanes["log"].stats.garbage += 1
            return None

    def _relay(self, msg: Relayed) -> None:
        self.counters.events_in += 1
        lanes = self.lanes
        if lanes["log"].on_event(msg) and lanes["log"].ready:
            self._release("log")
        if not self.routes.members("state"):
            return  # (no state-mode subscription: nothing there to select it)
        state = lanes["state"]
        # (how late it comes: past max_staleness, a state-mode execution gets a snapshot)
        if state.on_event(msg, time.time() - msg.published, time.monotonic()) and state.ready:
            self._release("state")

    def alive(self) -> bool:
        """Is the event stream alive (any message within the heartbeat timeout)?"""
        now = time.monotonic()
        return any(lane.check_liveness(now) for lane in self.lanes.values())

    # -- requests to the state service ----------------------------------------------------------

    def service(self, now: float) -> None:
        """Every tick: lanes' retries and pages, connections' own cores, slow clients."""
        self._service_lanes(now)
        for sink in list(self.connections):
            sink.service(now)

    def _service_lanes(self, now: float) -> None:
        for mode, lane in self.lanes.items():
            room = None if mode == "state" else self._log_room()
            for request in lane.poll(now, room):
                if isinstance(request, FetchEvents):
                    self.counters.gap_fetches += 1
                    if mode == "log":
                        self._lane_pages += 1
                self.spawn(self._answer_lane(mode, request))

    def _log_room(self) -> int:
        """Events the log lane may ask the store for now: up to ``LANE_PAGES`` pages in flight
        while any of its connections can take them (a congested one catches up on its own, from
        where it was, at its own pace). Several at once: after a flood, every execution has a
        gap, and one page per tick would keep the last of a hundred silent for two seconds."""
        members = self.routes.members("log")
        if members and all(sink.congested() for sink in members):
            return 0
        return max(0, LANE_PAGES - self._lane_pages) * self.lanes["log"].page_size

    async def answer(self, request: Request) -> Reply:
        """Make one repair request (for a lane or a connection's core); a few at a time.

        Pages are read on a grid (``afterSeq`` a multiple of the page size; the core skips what
        it has), and a full page is kept for a while: clients catching up on one execution from
        nearby positions share its reads and its decoding instead of each paying for them.
        """
        if not isinstance(request, FetchEvents):
            async with self._requests:
                return await self._answer(request)
        size = request.limit
        key = (
            request.execution_id,
            request.after_seq - request.after_seq % size,
            size,
            request.owner,
        )
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
            self.counters.page_hits += 1
            return page
        flight = self._in_flight.get(key)
        if flight is None:
            flight = self._in_flight[key] = asyncio.ensure_future(self._page(key))
            flight.add_done_callback(lambda _: self._in_flight.pop(key, None))
        reply = await asyncio.shield(flight)
        after = request.after_seq
        if (
            isinstance(reply, EventsPage)
            and reply.last_seq > after
            and not any(e.seq > after for e in reply.events)
        ):
            # The grid's page stopped short of where this one starts (a reply is capped in
            # bytes: large events fill it early): ask from there.
            async with self._requests:
                return await self._answer(request)
        return reply

    async def _page(self, key: tuple[str, int, int, str | None]) -> Reply:
        execution_id, after, size, owner = key
        async with self._requests:
            reply = await self._answer(FetchEvents(execution_id, after, size, owner))
        if isinstance(reply, EventsPage) and len(reply.events) == size:
            self._pages[key] = reply  # full: what it holds can never change
            while len(self._pages) > _PAGES:
                self._pages.popitem(last=False)
        return reply

    def client_for(self, execution_id: str | None = None) -> AsyncStateClient | None:
        """The state service owning an execution: the one its heartbeats name, else the
        configured one (None: neither is known)."""
        owner = None if execution_id is None else self.lanes["log"].owners.get(execution_id)
        return self.clients.get(owner)

    @property
    def client(self) -> AsyncStateClient | None:
        """The configured state service (or None: only those heartbeats name)."""
        return self.clients.get(None)

    def services(self) -> list[str]:
        """The state services requests may go to: the configured one first, then those
        heartbeats named in the last ``SERVICE_TTL`` seconds, newest first."""
        default = self.clients.default
        heard = self.lanes["log"].services_heard(time.monotonic(), SERVICE_TTL)
        return ([default] if default else []) + [s for s in heard if s != default]

    def client_at(self, endpoint: str) -> AsyncStateClient | None:
        """The client of one of :meth:`services`; None for any other endpoint — a request
        naming a service never makes the bridge connect somewhere new."""
        return self.clients.get(endpoint) if endpoint in self.services() else None

    def learn_service(self, execution_id: str, endpoint: str) -> None:
        """An execution's state service, as a listing or an execute told it."""
        for lane in self.lanes.values():
            lane.learn_owner(execution_id, endpoint)

    async def _answer(self, request: Request) -> Reply:
        # (a connection's core hears no heartbeats: the lanes know who owns what)
        client = self.clients.get(
            request.owner or self.lanes["log"].owners.get(request.execution_id)
        )
        if client is None:
            if not self.services():
                # None configured and none heard of: nothing will ever answer (a log-mode gap
                # is skipped, not waited on forever)
                return NO_SERVICE
            return Unavailable("no state service known for it yet")
        try:
            if isinstance(request, FetchEvents):
                payloads, last = await client.call(
                    calls.events_payloads(
                        request.execution_id,
                        request.after_seq,
                        request.limit,
                        fresh=False,
                        read_raw=page_payloads,  # the stored bytes, cut out, not parsed
                    )
                )
                return EventsPage(self._stored(request.execution_id, payloads), last)
            state = await client.call(calls.snapshot(request.execution_id, fresh=False))
            self.learn_owner(state.execution_id, state.user_id)
            return state
        except ZmqmonError as exc:
            return failure(request, exc)

    def _stored(self, execution_id: str, payloads: list[bytes]) -> list[Relayed]:
        out = []
        for payload in payloads:
            try:
                rel = decode_stored(payload)
            except ProtocolError:
                self.counters.drops += 1
                continue
            if rel.execution_id == execution_id:
                out.append(rel)
        return out

    async def _answer_lane(self, mode: Mode, request: Request) -> None:
        try:
            reply = await self.answer(request)
            lane = self.lanes[mode]
            lane.on_reply(request, reply, time.monotonic())
            while lane.ready:  # a page goes out a chunk per loop turn: pings are not held up
                self._release(mode, _CHUNK)
                await asyncio.sleep(0)
        finally:
            if mode == "log" and isinstance(request, FetchEvents):
                self._lane_pages -= 1  # handed out (or given up): room for the next page

    async def lookup_owner(self, execution_id: str) -> None:
        """Learn an execution's owner from the state service (auth on; waiting items relayed
        then). Not stored yet is asked again until ``repair_timeout``; then its items drop."""
        deadline = time.monotonic() + self.repair_timeout
        delay = 0.02
        try:
            while not self.owners.known(execution_id):
                client = self.client_for(execution_id)
                try:
                    if client is None:
                        raise NotFoundError("no state service known for it yet")
                    state = await client.snapshot(execution_id)
                except NotFoundError:
                    pass
                except ZmqmonError:
                    pass
                else:
                    self.learn_owner(execution_id, state.user_id)
                    return
                if time.monotonic() > deadline:
                    self.counters.drops += len(self.owners.release(execution_id))
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        finally:
            self.owners.looking_up.discard(execution_id)

    # -- fan-out -------------------------------------------------------------------------------

    def _release(self, mode: Mode, limit: int | None = None) -> None:
        """Fan out what a lane delivered (at most ``limit`` items)."""
        ready = self.lanes[mode].ready
        n = len(ready) if limit is None else min(limit, len(ready))
        for _ in range(n):
            self._fan_out(mode, ready.popleft())

    def _fan_out(self, mode: Mode, item: Item) -> None:
        eid = item.execution_id
        owners = self.owners
        if isinstance(item, Relayed) and item.started:
            if not owners.known(eid) or owners.owner(eid) != item.user_id:
                self.learn_owner(eid, item.user_id)
        elif isinstance(item, Snapshot) and not owners.known(eid):
            self.learn_owner(eid, item.state.user_id)
        if self.auth_enabled and not owners.known(eid):
            # Nothing of an execution is relayed before its owner is known.
            self.counters.drops += len(owners.hold(eid, (mode, item)))
            if eid not in owners.looking_up:
                owners.looking_up.add(eid)
                self.spawn(self.lookup_owner(eid))
            return
        if isinstance(item, Relayed):
            own, others = self.routes.targets(mode, eid, item.workflow_id, item.type)
            frame = item.frame
        else:
            own, others = self.routes.targets(mode, eid, item.state.workflow_id, None)
            frame = snapshot_frame(item.state) if others else b""
        if not own and not others:
            return
        owner = owners.owner(eid)
        sent = 0
        for sink in own:
            who = sink.state.principal
            if who.admin or (who.user is not None and owner == who.user):
                sink.feed(item)
        for sink in others:
            who = sink.state.principal  # Principal.can_see, inlined: per client per event
            if not who.admin and (who.user is None or owner != who.user):
                continue
            sent += sink.relay(item, frame)
        if isinstance(item, Snapshot):
            self.counters.snapshots_out += sent
        else:
            self.counters.events_out += sent
