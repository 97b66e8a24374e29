"""The hub: upstream events → the connections that want them and may see them.

One hub per bridge. It owns the per-execution :class:`~zmqmon_bridge.protocol.OrderedStream`
(order, no duplicates, gaps repaired from the state service, lost tails noticed by heartbeat),
the owner (``userId``) of each execution it has relayed, and the indexes from execution,
workflow and topic prefix to connections. Fan-out never awaits: each connection's ``send`` is a
non-blocking write (see :class:`Sink`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

from zmqmon.core.events import TERMINAL_TYPES
from zmqmon.core.wire import HEARTBEAT_TOPIC, dumps, execution_prefix, loads
from zmqmon.errors import NotFoundError, ZmqmonError
from zmqmon_bridge.protocol import ConnectionState, Kind, OrderedStream, text_frame
from zmqmon_bridge.upstream import StateSource, Upstream

__all__ = ["Counters", "Hub", "Sink"]

_MAX_TRACKED = 20_000  # executions whose order/owner the hub remembers (LRU)


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
        self.join_history = join_history
        self.counters = Counters()
        self.connections: set[Sink] = set()
        self._streams: OrderedDict[str, OrderedStream] = OrderedDict()
        self.owners: OrderedDict[str, str | None] = OrderedDict()
        self._held: dict[str, list[tuple[int, bytes, str, str]]] = {}
        self._by_exec: dict[str, set[Sink]] = {}
        self._by_workflow: dict[str, set[Sink]] = {}
        self._by_topic: dict[str, set[Sink]] = {}
        self._fetching: set[str] = set()
        self._owner_fetching: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
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

    def stream(self, execution_id: str) -> OrderedStream:
        stream = self._streams.get(execution_id)
        if stream is None:
            stream = self._streams[execution_id] = OrderedStream()
            if len(self._streams) > _MAX_TRACKED:
                self._streams.popitem(last=False)
        return stream

    def set_owner(self, execution_id: str, owner: str | None) -> None:
        self.owners[execution_id] = owner
        if len(self.owners) > _MAX_TRACKED:
            self.owners.popitem(last=False)

    def baseline(self, execution_id: str, seq: int) -> None:
        """A client caught up to ``seq`` before any live event of the execution arrived: order
        the stream from there, so that a heartbeat revealing a lost tail gets it fetched."""
        stream = self.stream(execution_id)
        if stream.last is None:
            stream.last = seq

    @staticmethod
    def upstream_prefix(kind: Kind, value: str) -> str:
        """What the SUB socket must hold for a subscription (topics carry no workflow id)."""
        if kind == "execution":
            return execution_prefix(value)
        return "exec/" if kind == "workflow" else value

    def index(self, sink: Sink, kind: Kind, value: str) -> None:
        """Register a subscription already recorded in ``sink.state``; hold its prefix."""
        table = {"execution": self._by_exec, "workflow": self._by_workflow, "topic": self._by_topic}
        table[kind].setdefault(value, set()).add(sink)
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
        self.upstream.release(self.upstream_prefix(kind, value))

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
        if topic == HEARTBEAT_TOPIC:
            self._on_heartbeat(payload)
            return
        try:
            ev = loads(payload)
            execution_id = ev["executionId"]
            seq = ev["seq"]
            if not isinstance(seq, int) or not isinstance(execution_id, str):
                raise TypeError
            workflow_id = str(ev.get("workflowId", ""))
            ev_type = str(ev.get("type", ""))
        except (ZmqmonError, KeyError, TypeError, AttributeError):
            self.counters.drops += 1  # not an event of the contract: never relayed
            return
        self.counters.events_in += 1
        if ev_type == "execution:started":
            data = ev.get("data") or {}
            self.set_owner(execution_id, data.get("userId") if isinstance(data, dict) else None)
        self._offer(execution_id, [(seq, (payload, workflow_id, ev_type))])

    def _offer(self, execution_id: str, items: Iterable[tuple[int, Any]]) -> None:
        stream = self.stream(execution_id)
        items = list(items)
        if stream.last is None and items and 1 < items[0][0] <= self.join_history + 1:
            # First seen a little after its start (its first events went by before our ZMQ
            # subscription was live — the slow joiner): fetch them, so it is seen whole.
            stream.last = 0
        for seq, item in items:
            for rseq, (payload, workflow_id, ev_type) in stream.offer(seq, item):
                self._release(execution_id, rseq, payload, workflow_id, ev_type)
        if stream.gap() is not None and execution_id not in self._fetching:
            self._fetching.add(execution_id)
            self._spawn(self._repair(execution_id, None))

    def _on_heartbeat(self, payload: bytes) -> None:
        try:
            executions = loads(payload).get("executions") or {}
        except (ZmqmonError, AttributeError):
            return
        for execution_id, last in executions.items():
            stream = self._streams.get(execution_id)
            if (
                stream is not None
                and stream.last is not None
                and isinstance(last, int)
                and last > stream.last
                and execution_id not in self._fetching
            ):
                # A lost tail (the end of a burst, the terminal event itself): fetch it.
                self._fetching.add(execution_id)
                self._spawn(self._repair(execution_id, last))

    async def _repair(self, execution_id: str, upto: int | None) -> None:
        """Fill a stream's gap (or reach ``upto``) from the store; give up after a while."""
        self.counters.gap_fetches += 1
        deadline = time.monotonic() + self.repair_timeout
        delay = 0.01
        try:
            while True:
                stream = self._streams.get(execution_id)
                if stream is None or stream.last is None:
                    return
                gap = stream.gap()
                target = gap[1] if gap is not None else upto
                if target is None or stream.last >= target:
                    return
                try:
                    events, _ = await self.state.events(execution_id, stream.last, 1000)
                except ZmqmonError:
                    events = []
                items = [
                    (e["seq"], (dumps(e), str(e.get("workflowId", "")), str(e.get("type", ""))))
                    for e in events
                    if isinstance(e, dict) and isinstance(e.get("seq"), int)
                ]
                if items:
                    first = events[0]
                    if first.get("type") == "execution:started":
                        owner = (first.get("data") or {}).get("userId")
                        self.set_owner(execution_id, owner)
                    self._offer(execution_id, items)
                    continue
                if time.monotonic() > deadline:
                    # The store never caught up: release what waits rather than stall forever.
                    self.counters.drops += 1
                    for rseq, (payload, wf, ev_type) in stream.skip():
                        self._release(execution_id, rseq, payload, wf, ev_type)
                    return
                await asyncio.sleep(delay)  # the store's writer lags the PUB socket a little
                delay = min(delay * 2, 0.2)
        finally:
            self._fetching.discard(execution_id)

    # -- fan-out -------------------------------------------------------------------------------

    def _release(
        self, execution_id: str, seq: int, payload: bytes, workflow_id: str, ev_type: str
    ) -> None:
        if self.auth_enabled and execution_id not in self.owners:
            # Nothing of an execution is relayed before its owner is known.
            self._held.setdefault(execution_id, []).append((seq, payload, workflow_id, ev_type))
            if execution_id not in self._owner_fetching:
                self._owner_fetching.add(execution_id)
                self._spawn(self._learn_owner(execution_id))
            return
        if ev_type in TERMINAL_TYPES and execution_id in self._streams:
            self._streams.move_to_end(execution_id, last=False)  # first to be forgotten
        owner = self.owners.get(execution_id)
        groups: list[set[Sink]] = []
        holders = self._by_exec.get(execution_id)
        if holders:
            groups.append(holders)
        holders = self._by_workflow.get(workflow_id)
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
        sent = 0
        for sink in targets:
            st = sink.state
            if not st.principal.can_see(owner):
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
        for seq, payload, wf, ev_type in self._held.pop(execution_id, []):
            self._release(execution_id, seq, payload, wf, ev_type)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.upstream.close()
