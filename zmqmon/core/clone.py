"""The subscriber's repair core (the ZeroMQ guide's *Clone* pattern), without sockets or clocks.

:class:`CloneCore` is fed what a subscriber's shell receives — live events, heartbeats, snapshots
and fetched events, each with the time ``now`` the shell read from its clock — and hands back
events ready to deliver (:attr:`CloneCore.ready`: per execution in seq order, each exactly once)
and the requests the shell must make to the state service (:meth:`CloneCore.poll`).

Per execution it tracks the last delivered ``seq``. A live event above ``delivered + 1`` is
buffered (bounded by ``max_buffer``; past it the event is dropped, since the store has it) and a
:class:`FetchEvents` for ``afterSeq = delivered`` is requested; a heartbeat whose ``lastSeq`` is
above ``delivered`` reveals a lost tail and is fetched the same way. A fetch that fails, or that
brings nothing new (the store writes in batches, a live event can outrun it), is retried after a
backoff from ``retry_min`` doubling to ``retry_max``. Fetches page by ``page_size``.

Joining rules:

* ``subscribe_execution(id)`` (no ``after_seq``): the shell subscribes the ZMQ prefix first, then
  asks for the snapshot and hands it to :meth:`on_snapshot`; live events received meanwhile are
  buffered, those ``<= snapshot.lastSeq`` dropped. No snapshot (unknown execution, ``None``)
  means "not started yet": every event from seq 1.
* ``subscribe_execution(id, after_seq=N)``: every event with seq > N, fetched from the store, then
  live ones. Events 1..N are fetched too, but only applied to :attr:`states` (so the state is
  whole), not delivered.
* Workflow and raw-prefix subscriptions: an execution *first seen* through them by a live event
  with seq ``s``: if ``s == 1``, from there; if ``s - 1 <= join_history`` its earlier events are
  fetched, so the consumer sees it whole (right for an execution that started just after the
  subscription and lost its first events to the publisher's high-water mark); otherwise (a long
  execution already under way) it is joined by snapshot (:class:`FetchSnapshot`: its state goes
  to :attr:`states`, events after it are delivered). From then on, no gaps. An execution none
  of whose events reached the subscriber, but that a heartbeat lists and a raw prefix selects, is
  joined the same way (``s`` = the heartbeat's lastSeq). Heartbeats carry no workflow id, so a
  workflow subscription cannot do that: there, heartbeats repair executions already tracked.
* ``snapshot_joins=False`` (for a relay whose consumers get no snapshot, such as the WebSocket
  bridge): an execution first seen beyond ``join_history`` is joined *where first seen* (its
  earlier events are neither fetched nor delivered, no snapshot is asked for); one a heartbeat
  alone reveals, at the heartbeat's lastSeq. :meth:`CloneCore.track` starts tracking an execution
  a raw prefix selects from a seq its consumer reached by other means (a relay's own catch-up),
  so that a tail a heartbeat reveals later is fetched from there.

:attr:`states` holds each tracked execution's state through the one reducer (``apply_event``);
``keep_states=False`` skips it (the reducer is most of the per-event cost) for consumers that
only relay events.
Liveness: the publisher is alive once a heartbeat arrives, and not after ``heartbeat_timeout``
without one (:meth:`poll` checks); each change is queued in :attr:`liveness_changes`. When it
comes back every unfinished execution is checked against the store once.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.wire import EXEC_PREFIX, Heartbeat, event_topic, execution_prefix

__all__ = ["CloneCore", "CloneStats", "FetchEvents", "FetchSnapshot", "Request"]

_MAX_DONE: Final = 10_000  # finished executions remembered (to drop their late duplicates)


@dataclass(frozen=True, slots=True)
class FetchEvents:
    """Ask the state service for ``events(execution_id, after_seq, limit)``."""

    execution_id: str
    after_seq: int
    limit: int


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """Ask the state service for ``snapshot(execution_id)`` (a snapshot join)."""

    execution_id: str


Request: TypeAlias = FetchEvents | FetchSnapshot


@dataclass(slots=True)
class CloneStats:
    """Counters of what the core (and its shell, for ``garbage``) saw and did."""

    received: int = 0  # live events that passed the filters
    delivered: int = 0  # events handed to the consumer (or applied to tracked state)
    duplicates: int = 0  # live or fetched events at or below what was delivered
    fetched: int = 0  # events delivered that came from a fetch: the repaired ones
    fetches: int = 0  # FetchEvents requests issued (gaps, tails, joins, resumes)
    fetch_failures: int = 0
    snapshots: int = 0  # snapshots applied
    overflow: int = 0  # live events not buffered because the buffer was full
    skipped: int = 0  # events given up on (no state service to fetch them from)
    heartbeats: int = 0
    garbage: int = 0  # malformed messages skipped (counted by the shell)


@dataclass(slots=True)
class _Tracker:
    execution_id: str
    explicit: bool
    workflow_id: str | None = None
    phase: str = "ready"  # "snapshot": base unknown until on_snapshot; "ready": tracking
    delivered: int = 0
    known_last: int = 0  # highest seq known to exist
    buffer: dict[int, Event] = field(default_factory=dict)
    quiet_until: int = 0  # events up to this seq are applied to the state, not delivered
    needs_fetch: bool = False  # ask the store once even if no gap is known (resume, recovery)
    outstanding: bool = False
    retry_at: float = 0.0
    backoff: float = 0.0
    done: bool = False


class CloneCore:
    """Gap-free, duplicate-free, in-order delivery of execution events (see module doc)."""

    def __init__(
        self,
        *,
        heartbeat_timeout: float = 3.0,
        max_buffer: int = 10_000,
        page_size: int = 1000,
        join_history: int = 1000,
        retry_min: float = 0.05,
        retry_max: float = 1.0,
        keep_states: bool = True,
        snapshot_joins: bool = True,
        max_tracked: int = 20_000,
    ) -> None:
        self.heartbeat_timeout = heartbeat_timeout
        self.max_tracked = max_tracked
        self.max_buffer = max_buffer
        self.page_size = page_size
        self.join_history = join_history
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.ready: deque[Event] = deque()
        self.states: dict[str, ExecutionState] = {}
        self.stats = CloneStats()
        self.publisher_alive = False
        self.liveness_changes: deque[bool] = deque()
        self.last_heartbeat: float | None = None
        self.workflows: set[str] = set()
        self.prefixes: set[str] = set()
        self._trackers: dict[str, _Tracker] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._pending: set[str] = set()  # executions that may need a request
        self._prefix_cache: dict[tuple[str, str], bool] = {}
        self.keep_states = keep_states
        self.snapshot_joins = snapshot_joins

    # -- subscriptions ------------------------------------------------------------------------

    def zmq_prefixes(self) -> set[str]:
        """The SUB socket's subscriptions these filters need (besides ``sys/heartbeat``)."""
        subs = {execution_prefix(t.execution_id) for t in self._trackers.values() if t.explicit}
        if self.workflows:
            subs.add(EXEC_PREFIX)  # workflow ids are not in topics: filter on the payload
        return subs | self.prefixes

    def subscribe_execution(self, execution_id: str, after_seq: int | None = None) -> bool:
        """Track one execution; False if it already was (nothing changes).

        ``after_seq=None``: the shell must then call :meth:`on_snapshot`.
        """
        old = self._trackers.get(execution_id)
        if old is not None and old.explicit:
            return False  # already subscribed: keep its progress
        t = _Tracker(execution_id, explicit=True)
        if after_seq is None:
            t.phase, t.outstanding = "snapshot", True
        else:
            t.quiet_until = t.known_last = max(0, after_seq)
            t.needs_fetch = True
            self._pending.add(execution_id)
        if old is not None:
            t.buffer = {s: e for s, e in old.buffer.items() if s > t.delivered}
        self._trackers[execution_id] = t
        self._done.pop(execution_id, None)
        return True

    def unsubscribe_execution(self, execution_id: str) -> None:
        """Stop tracking it (unless a workflow or prefix subscription still covers it)."""
        t = self._trackers.get(execution_id)
        if t is not None:
            t.explicit = False
            self._prune()

    def subscribe_workflow(self, workflow_id: str) -> None:
        """Every execution of a workflow (matched on each event's ``workflowId``)."""
        self.workflows.add(workflow_id)

    def unsubscribe_workflow(self, workflow_id: str) -> None:
        """Drop a workflow subscription; its queued, undelivered events are dropped too."""
        self.workflows.discard(workflow_id)
        self._prune()

    def subscribe_topic(self, prefix: str) -> None:
        """A raw topic prefix, e.g. ``exec/``."""
        self.prefixes.add(prefix)
        self._prefix_cache.clear()

    def unsubscribe_topic(self, prefix: str) -> None:
        """Drop a raw prefix; its queued, undelivered events are dropped too."""
        self.prefixes.discard(prefix)
        self._prefix_cache.clear()
        self._prune()

    def wants(self, event: Event) -> bool:
        """Does any subscription select this event?"""
        t = self._trackers.get(event.execution_id)
        if t is not None and t.explicit:
            return True
        if event.workflow_id in self.workflows:
            return True
        if self.prefixes:
            key = (event.execution_id, event.type)
            hit = self._prefix_cache.get(key)
            if hit is None:  # cached: this runs for every event of a prefix subscription
                if len(self._prefix_cache) > 10_000:
                    self._prefix_cache.clear()
                topic = event_topic(event.execution_id, event.type).decode()
                hit = self._prefix_cache[key] = any(topic.startswith(p) for p in self.prefixes)
            return hit
        return False

    def _prefix_wants(self, execution_id: str) -> bool:
        own = execution_prefix(execution_id)
        return any(own.startswith(p) or p.startswith(own) for p in self.prefixes)

    def _covered(self, t: _Tracker) -> bool:
        if t.explicit or (t.workflow_id is not None and t.workflow_id in self.workflows):
            return True
        return self._prefix_wants(t.execution_id)

    def _prune(self) -> None:
        for eid in [eid for eid, t in self._trackers.items() if not self._covered(t)]:
            del self._trackers[eid]
            self._pending.discard(eid)
        if self.ready:
            self.ready = deque(e for e in self.ready if self.wants(e))

    # -- inputs -------------------------------------------------------------------------------

    def on_event(self, event: Event) -> bool:
        """A live event from the stream (filters applied here).

        Returns True if the event was delivered or buffered (it goes to :attr:`ready` unless an
        unsubscribe drops it meanwhile), False if it was dropped (not selected, a duplicate, or
        the buffer was full): a relay keeping the raw bytes of events aside need not keep those.
        """
        eid = event.execution_id
        t = self._trackers.get(eid)
        if t is None:
            if eid in self._done or not self.wants(event):
                if eid in self._done:
                    self.stats.duplicates += 1
                return False
            t = self._untracked(eid)
            if event.seq > 1 and event.seq - 1 > self.join_history:
                if self.snapshot_joins:
                    t.phase = "join"
                    self._pending.add(eid)
                else:
                    t.delivered = t.known_last = event.seq - 1  # joined where first seen
        self.stats.received += 1
        if t.workflow_id is None:
            t.workflow_id = event.workflow_id
        seq = event.seq
        if t.phase != "ready":
            return self._buffer(t, event)
        if seq <= t.delivered:
            self.stats.duplicates += 1
            return False
        if seq == t.delivered + 1:
            self._deliver(t, event, fetched=False)
            self._drain(t)
            return True
        self._pending.add(eid)
        return self._buffer(t, event)

    def on_heartbeat(self, heartbeat: Heartbeat, now: float) -> None:
        """A heartbeat: the publisher lives, and the last seq of its recent executions."""
        self.stats.heartbeats += 1
        self.last_heartbeat = now
        if not self.publisher_alive:
            self.publisher_alive = True
            self.liveness_changes.append(True)
            if self.stats.heartbeats > 1:
                # Back after an outage: what was published meanwhile may be lost; ask the store.
                for t in self._trackers.values():
                    if not t.done and t.phase == "ready":
                        t.needs_fetch = True
                        self._pending.add(t.execution_id)
        for eid, last in heartbeat.executions.items():
            tracked = self._trackers.get(eid)
            if tracked is None and last > 0 and eid not in self._done and self._prefix_wants(eid):
                # Every event of it was lost (e.g. published before the prefix subscription
                # was live): the heartbeat is the only sign of it. Join as if first seen now.
                tracked = self._untracked(eid)
                if last > self.join_history:
                    if self.snapshot_joins:
                        tracked.phase = "join"
                    else:
                        tracked.delivered = tracked.known_last = last  # joined where seen
                self._pending.add(eid)
            if tracked is not None and last > tracked.known_last:
                tracked.known_last = last
                if last > tracked.delivered:
                    self._pending.add(eid)

    def on_snapshot(self, execution_id: str, state: ExecutionState | None) -> None:
        """The snapshot asked for (``None``: the execution is not known yet)."""
        t = self._trackers.get(execution_id)
        if t is None or t.phase == "ready":
            return  # unsubscribed meanwhile, or a stale answer
        t.phase, t.outstanding = "ready", False
        if state is not None:
            self.stats.snapshots += 1
            self.states[execution_id] = state
            t.delivered = state.last_seq
            t.done = state.is_terminal
            t.workflow_id = state.workflow_id
        t.known_last = max(t.known_last, t.delivered)
        self.stats.duplicates += sum(1 for s in t.buffer if s <= t.delivered)
        t.buffer = {s: e for s, e in t.buffer.items() if s > t.delivered}
        self._drain(t)
        self._pending.add(execution_id)
        if t.done:
            self._finish(t)

    def on_events(self, execution_id: str, events: list[Event], last_seq: int, now: float) -> None:
        """The answer to a :class:`FetchEvents`: events in seq order and the store's lastSeq."""
        t = self._trackers.get(execution_id)
        if t is None or not t.outstanding or t.phase != "ready":
            return  # unsubscribed (or subscribed anew) while the fetch was out
        t.outstanding = t.needs_fetch = False
        before = t.delivered
        for event in events:
            if event.seq <= t.delivered:
                continue
            if event.seq == t.delivered + 1:
                self._deliver(t, event, fetched=True)
            elif len(t.buffer) < self.max_buffer:
                t.buffer.setdefault(event.seq, event)
        t.known_last = max(t.known_last, last_seq)
        self._drain(t)
        if t.delivered > before:
            t.retry_at, t.backoff = now, 0.0  # progress: page on at once
        else:
            self._back_off(t, now)
        self._pending.add(execution_id)

    def on_fetch_failed(self, request: Request, now: float, *, give_up: bool = False) -> None:
        """A request failed. ``give_up`` (no state service): accept the gap and move on."""
        t = self._trackers.get(request.execution_id)
        if t is None or not t.outstanding:
            return
        t.outstanding = False
        self._pending.add(t.execution_id)
        if not give_up:
            self.stats.fetch_failures += 1
            if isinstance(request, FetchSnapshot) and t.phase == "snapshot":
                t.phase = "join"  # ask for the snapshot again
            self._back_off(t, now)
            return
        t.needs_fetch = False
        if t.phase != "ready":  # no snapshot: start at the first event we hold
            t.phase = "ready"
            t.delivered = min(t.buffer, default=1) - 1
        else:
            target = min(t.buffer, default=t.known_last + 1) - 1
            self.stats.skipped += max(0, target - t.delivered)
            t.delivered = max(t.delivered, target)
        t.known_last = max(t.known_last, t.delivered)
        self._drain(t)

    # -- outputs ------------------------------------------------------------------------------

    def check_liveness(self, now: float) -> bool:
        """Is the publisher alive at ``now``? (A change is queued in :attr:`liveness_changes`.)"""
        if (
            self.publisher_alive
            and self.last_heartbeat is not None
            and now - self.last_heartbeat > self.heartbeat_timeout
        ):
            self.publisher_alive = False
            self.liveness_changes.append(False)
        return self.publisher_alive

    def poll(self, now: float) -> list[Request]:
        """Check liveness; return the requests due now (each is then outstanding)."""
        self.check_liveness(now)
        out: list[Request] = []
        for eid in list(self._pending):
            t = self._trackers.get(eid)
            if t is None:
                self._pending.discard(eid)
                continue
            if t.outstanding or now < t.retry_at:
                continue
            if t.phase == "join":
                t.phase, t.outstanding = "snapshot", True
                out.append(FetchSnapshot(eid))
            elif t.phase == "ready" and (t.needs_fetch or t.known_last > t.delivered or t.buffer):
                t.outstanding = True
                self.stats.fetches += 1
                out.append(FetchEvents(eid, t.delivered, self.page_size))
            else:
                self._pending.discard(eid)
        return out

    def next_due(self) -> float | None:
        """The earliest time a pending retry falls due (None if nothing waits on time)."""
        times = [
            t.retry_at
            for eid in self._pending
            if (t := self._trackers.get(eid)) is not None and not t.outstanding
        ]
        return min(times, default=None)

    def take_ready(self) -> Event | None:
        """The next event to deliver, or None."""
        return self.ready.popleft() if self.ready else None

    def tracked(self) -> list[str]:
        """Execution ids currently tracked."""
        return list(self._trackers)

    def delivered_seq(self, execution_id: str) -> int:
        """The last seq delivered of a tracked execution (0 if it is not tracked)."""
        t = self._trackers.get(execution_id)
        return 0 if t is None else t.delivered

    def track(self, execution_id: str, delivered: int) -> bool:
        """Track an execution a raw prefix selects, as delivered up to ``delivered``.

        For a consumer that reached ``delivered`` by other means (e.g. a relay's catch-up from
        the store) before any live event of it arrived: a later gap, or a tail a heartbeat
        reveals, is then fetched from there. False (nothing changes) if it is already tracked,
        finished, or no prefix selects it.
        """
        if (
            execution_id in self._trackers
            or execution_id in self._done
            or not self._prefix_wants(execution_id)
        ):
            return False
        t = self._untracked(execution_id)
        t.delivered = t.known_last = max(0, delivered)
        return True

    # -- internals ----------------------------------------------------------------------------

    def _buffer(self, t: _Tracker, event: Event) -> bool:
        t.known_last = max(t.known_last, event.seq)
        if event.seq in t.buffer:
            self.stats.duplicates += 1
        elif len(t.buffer) < self.max_buffer:
            t.buffer[event.seq] = event
            return True
        else:
            self.stats.overflow += 1  # the store has it: the fetch will bring it
        return False

    def _deliver(self, t: _Tracker, event: Event, *, fetched: bool) -> None:
        t.delivered = event.seq
        t.known_last = max(t.known_last, event.seq)
        if self.keep_states:
            self.states[t.execution_id] = apply_event(self.states.get(t.execution_id), event)
        self.stats.delivered += 1
        if fetched:
            self.stats.fetched += 1
        if event.seq > t.quiet_until and self.wants(event):
            self.ready.append(event)
        if event.is_terminal:
            t.done = True

    def _drain(self, t: _Tracker) -> None:
        buf = t.buffer
        while buf:
            event = buf.pop(t.delivered + 1, None)
            if event is None:
                break
            self._deliver(t, event, fetched=False)
        if buf and min(buf) <= t.delivered:
            t.buffer = {s: e for s, e in buf.items() if s > t.delivered}
        if t.done and not t.buffer and t.known_last <= t.delivered:
            self._finish(t)

    def _untracked(self, execution_id: str) -> _Tracker:
        """Start tracking an execution seen through a workflow or prefix subscription.

        Bounded: past ``max_tracked`` the oldest such trackers are forgotten (an execution whose
        terminal event never comes, its publisher gone for good, must not stay forever); one
        that speaks again is joined anew by the usual rules.
        """
        t = self._trackers[execution_id] = _Tracker(execution_id, explicit=False)
        if len(self._trackers) > self.max_tracked:
            for eid in [e for e, old in self._trackers.items() if not old.explicit][
                : len(self._trackers) - self.max_tracked
            ]:
                if eid != execution_id:
                    del self._trackers[eid]
                    self._pending.discard(eid)
        return t

    def _finish(self, t: _Tracker) -> None:
        # An explicitly subscribed execution keeps its tracker; one seen through a workflow or
        # prefix is forgotten (a long-lived `exec/` subscriber must not grow without bound) and
        # the done-set (bounded) remembers it so that late duplicates do not start a new one.
        if not t.explicit:
            self._trackers.pop(t.execution_id, None)
            self._pending.discard(t.execution_id)
        self._done[t.execution_id] = None
        self._done.move_to_end(t.execution_id)
        while len(self._done) > _MAX_DONE:
            self._done.popitem(last=False)

    def _back_off(self, t: _Tracker, now: float) -> None:
        t.backoff = min(self.retry_max, max(self.retry_min, t.backoff * 2))
        t.retry_at = now + t.backoff
