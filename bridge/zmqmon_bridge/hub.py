"""The hub: upstream events → the connections that want them and may see them.

One hub per bridge. The repair — per-execution order, no duplicates, gaps and lost tails (a
heartbeat's lastSeq) fetched from the state service, executions first seen mid-stream joined —
is the project's one repair logic, :class:`zmqmon.core.clone.CloneCore` (the Clone pattern, the
same core the Python subscribers and the notebook widgets run), driven here by the asyncio loop:

* every upstream message is decoded (:func:`zmqmon.core.wire.decode_message`; garbage is counted
  in ``drops`` and skipped) and fed to the core;
* the fetches it asks for run as concurrent tasks on the :class:`StateSource` (many requests in
  flight: one slow fetch holds back no other execution); a gap the store has not filled after
  ``repair_timeout`` is given up (counted in ``drops``) rather than stall its execution;
* after each feed or answer, what the core delivers is fanned out at once.

The core runs with ``keep_states=False`` (the bridge relays, it reduces nothing) and
``snapshot_joins=False``: browsers subscribed to a workflow or a topic get no snapshot, so an
execution first seen far from its start is relayed from where it was first seen (one first seen
within ``join_history`` events of its start is fetched whole). The core's filters follow the
connections' subscriptions (an execution ``X`` is the prefix ``exec/X/``), refcounted like the
SUB socket's prefixes.

The published bytes are relayed untouched: the payload of each event fed live is kept aside,
keyed by ``(executionId, seq)``, until the core delivers that event (bounded: nothing leaks);
fetched events are encoded once. Each event's WebSocket frame is built once and written to every
client. The hub also holds the owner (``userId``) of each execution it has relayed, and the
indexes from execution, workflow and topic prefix to connections. Fan-out never awaits: each
connection's ``send`` is a non-blocking write (see :class:`Sink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from typing import Any, Protocol

from zmqmon.core.clone import CloneCore, FetchEvents, Request
from zmqmon.core.events import Event, ExecutionStarted, parse_event
from zmqmon.core.wire import Heartbeat, decode_message, dumps, execution_prefix
from zmqmon.errors import NotFoundError, ProtocolError, ZmqmonError
from zmqmon_bridge.protocol import ConnectionState, Kind, text_frame
from zmqmon_bridge.upstream import StateSource, Upstream

__all__ = ["Counters", "Hub", "Sink"]

_MAX_TRACKED = 20_000  # executions whose owner the hub remembers (LRU)
_MAX_PAYLOADS = 50_000  # raw payloads waiting for their delivery (normally a handful)


class Sink(Protocol):
    """A connection as the hub sees it."""

    state: ConnectionState

    def send(self, data: bytes) -> None:
        """Queue one text message without waiting."""
        ...

    def send_frame(self, frame: bytes) -> None:
        """Queue one already encoded text frame without waiting."""
        ...

    def flush(self) -> None:
        """Write what is queued (a full send queue closes the connection)."""
        ...


class Counters:
    """Plain counters read by /metrics and /api/ws/health (cheaper than metric objects)."""

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.drops = 0
        self.slow_closes = 0
        self.rate_closes = 0
        self.gap_fetches = 0
        self.errors: dict[str, int] = {}

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Hub:
    """Routes upstream events to connections; holds upstream prefixes while they are wanted."""

    def __init__(
        self,
        upstream_factory: Any,
        state: StateSource,
        *,
        auth_enabled: bool,
        repair_timeout: float = 3.0,
        join_history: int = 1000,
    ) -> None:
        self.upstream: Upstream = upstream_factory(self.on_message)
        self.state = state
        self.auth_enabled = auth_enabled
        self.repair_timeout = repair_timeout
        #: the one repair logic (see the module doc)
        self.core = CloneCore(join_history=join_history, keep_states=False, snapshot_joins=False)
        self.counters = Counters()
        self.connections: set[Sink] = set()
        self.owners: OrderedDict[str, str | None] = OrderedDict()
        self._payloads: dict[tuple[str, int], bytes] = {}  # live payloads the core holds
        self._held: dict[str, list[tuple[Event, bytes]]] = {}
        self._by_exec: dict[str, set[Sink]] = {}
        self._by_workflow: dict[str, set[Sink]] = {}
        self._by_topic: dict[str, set[Sink]] = {}
        self._filters: dict[str, int] = {}  # core prefix → subscriptions needing it
        self._fruitless: dict[str, float] = {}  # execution → first fetch that brought nothing
        self._owner_fetching: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._dirty: list[Sink] = []

    # -- bookkeeping --------------------------------------------------------------------------

    @property
    def subscription_count(self) -> int:
        return sum(c.state.subscription_count for c in self.connections)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def mark_dirty(self, sink: Sink) -> None:
        """A sink queued its first frame since the last flush: flush it this loop turn."""
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self.flush_all)
        self._dirty.append(sink)

    def flush_all(self) -> None:
        """Flush every sink with queued frames (once per loop turn, after a batch)."""
        dirty, self._dirty = self._dirty, []
        for sink in dirty:
            sink.flush()

    @property
    def join_history(self) -> int:
        """An execution first seen within this many events of its start is fetched whole."""
        return self.core.join_history

    @join_history.setter
    def join_history(self, value: int) -> None:
        self.core.join_history = value

    @property
    def busy(self) -> bool:
        """A fetch or owner lookup is running, or a retry is scheduled."""
        return bool(self._tasks) or self._timer is not None

    def released(self, execution_id: str) -> int:
        """The last seq of an execution fanned out live (0: none, or no longer tracked)."""
        return self.core.delivered_seq(execution_id)

    def set_owner(self, execution_id: str, owner: str | None) -> None:
        self.owners[execution_id] = owner
        if len(self.owners) > _MAX_TRACKED:
            self.owners.popitem(last=False)

    def baseline(self, execution_id: str, seq: int) -> None:
        """A client caught up to ``seq`` before any live event of the execution arrived: the
        core tracks it from there, so that a heartbeat revealing a lost tail gets it fetched."""
        self.core.track(execution_id, seq)

    @staticmethod
    def upstream_prefix(kind: Kind, value: str) -> str:
        """What the SUB socket must hold for a subscription (topics carry no workflow id)."""
        if kind == "execution":
            return execution_prefix(value)
        return "exec/" if kind == "workflow" else value

    def index(self, sink: Sink, kind: Kind, value: str) -> None:
        """Register a subscription already recorded in ``sink.state``; hold its prefix."""
        table = {"execution": self._by_exec, "workflow": self._by_workflow, "topic": self._by_topic}
        holders = table[kind].setdefault(value, set())
        if not holders:
            self._filter(kind, value, True)
        holders.add(sink)
        self.upstream.acquire(self.upstream_prefix(kind, value))

    def unindex(self, sink: Sink, kind: Kind, value: str) -> None:
        """Undo :meth:`index`."""
        table = {"execution": self._by_exec, "workflow": self._by_workflow, "topic": self._by_topic}
        holders = table[kind].get(value)
        if holders is None or sink not in holders:
            return
        holders.discard(sink)
        if not holders:
            del table[kind][value]
            self._filter(kind, value, False)
        self.upstream.release(self.upstream_prefix(kind, value))

    def _filter(self, kind: Kind, value: str, on: bool) -> None:
        """The core selects what the connections want (an execution ``X`` and the topic
        ``exec/X/`` are the same prefix there: refcounted)."""
        core = self.core
        if kind == "workflow":
            if on:
                core.subscribe_workflow(value)
            else:
                core.unsubscribe_workflow(value)
            return
        prefix = self.upstream_prefix(kind, value)
        count = self._filters.get(prefix, 0) + (1 if on else -1)
        if count > 0:
            self._filters[prefix] = count
            if on and count == 1:
                core.subscribe_topic(prefix)
        elif prefix in self._filters:
            del self._filters[prefix]
            core.unsubscribe_topic(prefix)

    def drop_connection(self, sink: Sink) -> None:
        """Forget everything a connection held, however it went."""
        st = sink.state
        for value in list(st.executions):
            self.unindex(sink, "execution", value)
        for value in list(st.workflows):
            self.unindex(sink, "workflow", value)
        for value in list(st.topics):
            self.unindex(sink, "topic", value)
        st.executions.clear()
        st.workflows.clear()
        st.topics.clear()
        self.connections.discard(sink)

    # -- upstream ------------------------------------------------------------------------------

    def on_message(self, topic: bytes, payload: bytes) -> None:
        """One ZMQ message (called by the upstream reader; never awaits)."""
        core = self.core
        try:
            msg = decode_message((topic, payload))
        except ProtocolError:
            self.counters.drops += 1  # not an event of the contract: never relayed
            core.stats.garbage += 1
            return
        if isinstance(msg, Heartbeat):
            core.on_heartbeat(msg, time.monotonic())
        else:
            self.counters.events_in += 1
            kept = core.on_event(msg)
            first = core.take_ready()
            if first is msg:
                # The common case: delivered at once, in order. No new gap, so no request to
                # make (retries have a timer); what it released from the buffer follows it.
                self._release(msg, payload)
                self._release_ready()
                return
            if kept and core.delivered_seq(msg.execution_id) < msg.seq:
                self._keep((msg.execution_id, msg.seq), payload)  # buffered: its bytes wait too
            if first is not None:  # it was not selected itself, but filled a gap
                self._release_kept(first)
        self._release_ready()
        self._service()

    def _keep(self, key: tuple[str, int], payload: bytes) -> None:
        payloads = self._payloads
        payloads[key] = payload
        if len(payloads) > _MAX_PAYLOADS:
            # Oldest first: one the core dropped meanwhile (pruned by an unsubscribe); should a
            # buffered one go, its event is re-encoded when delivered.
            del payloads[next(iter(payloads))]

    def _release_ready(self) -> None:
        """Fan out what the core delivered, with the bytes it was published as."""
        take = self.core.take_ready
        while (event := take()) is not None:
            self._release_kept(event)

    def _release_kept(self, event: Event) -> None:
        payload = self._payloads.pop((event.execution_id, event.seq), None)
        if payload is None:  # evicted (see _keep): its fields as they came, encoded again
            payload = dumps(event.model_dump(by_alias=True, mode="json", exclude_unset=True))
        self._release(event, payload)

    def _service(self) -> None:
        """Start the fetches the core asks for; wake up when a retry falls due."""
        core = self.core
        now = time.monotonic()
        for req in core.poll(now):
            if isinstance(req, FetchEvents):
                self.counters.gap_fetches += 1
                self._spawn(self._fetch(req))
            else:
                # Never asked with snapshot_joins=False; were it, join at the first event held.
                core.on_fetch_failed(req, now, give_up=True)
                self._release_ready()
        due = core.next_due()
        if due is not None and (self._timer is None or due < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = due
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.001, due - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._service()

    async def _fetch(self, req: FetchEvents) -> None:
        """Answer one of the core's fetches (each in its own task: many run at once)."""
        eid = req.execution_id
        failed = False
        asked = time.monotonic()
        try:
            raw, last = await self.state.events(eid, req.after_seq, req.limit)
        except NotFoundError:  # not stored yet
            raw, last = [], 0
        except Exception:  # ZmqmonError or worse: the core must not wait for an answer forever
            raw, last, failed = [], 0, True
        events: list[Event] = []
        delivered = self.core.delivered_seq(eid)  # live events may have gone by meanwhile
        for item in raw:
            try:
                if not isinstance(item, dict):
                    raise ProtocolError("stored event is not an object")
                event = parse_event(item)
            except ProtocolError:
                self.counters.drops += 1
                continue
            if event.execution_id != eid:
                continue
            events.append(event)
            key = (eid, event.seq)
            if event.seq > delivered and key not in self._payloads:
                self._keep(key, dumps(item))  # encoded once, like a published payload
        now = time.monotonic()
        if any(e.seq > req.after_seq for e in events):
            self._fruitless.pop(eid, None)
        else:
            since = self._fruitless.setdefault(eid, asked)
            if len(self._fruitless) > _MAX_TRACKED:
                self._fruitless.clear()
            if now - since > self.repair_timeout:
                # The store never caught up: accept the gap rather than stall the execution.
                self._fruitless.pop(eid, None)
                self.counters.drops += 1
                self._answer(req, None, 0, now, give_up=True)
                return
        self._answer(req, None if failed else events, last, now)

    def _answer(
        self,
        req: Request,
        events: list[Event] | None,
        last: int,
        now: float,
        *,
        give_up: bool = False,
    ) -> None:
        if events is None:
            self.core.on_fetch_failed(req, now, give_up=give_up)
        else:
            self.core.on_events(req.execution_id, events, last, now)
        self._release_ready()
        self._service()

    # -- fan-out -------------------------------------------------------------------------------

    def _release(self, event: Event, payload: bytes) -> None:
        execution_id = event.execution_id
        if isinstance(event, ExecutionStarted):
            self.set_owner(execution_id, event.data.user_id)
        if self.auth_enabled and execution_id not in self.owners:
            # Nothing of an execution is relayed before its owner is known.
            self._held.setdefault(execution_id, []).append((event, payload))
            if execution_id not in self._owner_fetching:
                self._owner_fetching.add(execution_id)
                self._spawn(self._learn_owner(execution_id))
            return
        ev_type = event.type
        owner = self.owners.get(execution_id)
        groups: list[set[Sink]] = []
        holders = self._by_exec.get(execution_id)
        if holders:
            groups.append(holders)
        holders = self._by_workflow.get(event.workflow_id)
        if holders:
            groups.append(holders)
        if self._by_topic:
            topic = f"exec/{execution_id}/{ev_type}"
            for prefix, sinks in self._by_topic.items():
                if topic.startswith(prefix):
                    groups.append(sinks)
        if not groups:
            return
        # One connection gets an event once, however many of its subscriptions match.
        targets = groups[0] if len(groups) == 1 else set().union(*groups)
        frame = text_frame(payload)  # the same bytes for every client: encoded once
        seq = event.seq
        sent = 0
        for sink in targets:
            st = sink.state
            who = st.principal  # Principal.can_see, inlined: this runs per client per event
            if not who.admin and (who.user is None or owner != who.user):
                continue
            # route() keeps the cursor of an execution subscription (catch-up, none twice)
            if st.executions and st.route(execution_id, seq, payload) is None:
                continue
            sink.send_frame(frame)
            sent += 1
        self.counters.events_out += sent

    async def _learn_owner(self, execution_id: str) -> None:
        deadline = time.monotonic() + self.repair_timeout
        try:
            while True:
                try:
                    snap = await self.state.snapshot(execution_id)
                    self.set_owner(execution_id, snap.get("userId"))
                    break
                except NotFoundError:
                    pass  # the store has not written it yet
                except ZmqmonError:
                    pass
                if time.monotonic() > deadline:
                    held = self._held.pop(execution_id, [])
                    self.counters.drops += len(held)  # owner unknown: relay nothing of it
                    return
                await asyncio.sleep(0.05)
        finally:
            self._owner_fetching.discard(execution_id)
        for event, payload in self._held.pop(execution_id, []):
            self._release(event, payload)

    async def close(self) -> None:
        """Stop every fetch and the upstream reader."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.upstream.close()
