"""The repair core (the ZeroMQ guide's *Clone* pattern), without sockets or clocks.

Every face that reads the event stream — :class:`~zmqmon.shells.subscriber.Subscriber`, its
asyncio twin, the notebook widgets' feed, ``zmqmon tail`` and the WebSocket bridge — drives this one
core the same way, so that what is repaired, given up, paged or replaced by a snapshot is decided
here once:

* feed it what the stream brings — :meth:`CloneCore.on_event`, :meth:`CloneCore.on_heartbeat`,
  :meth:`CloneCore.touch` (any traffic proves the publisher alive: heartbeats drop at a flooded
  PUB's high-water mark like everything else);
* make the requests :meth:`CloneCore.poll` returns (values of :mod:`zmqmon.core.delivery`) and hand
  back each outcome, failures included, with :meth:`CloneCore.on_reply`;
* take what is ready from :attr:`CloneCore.ready`: per execution in seq order, each event once, and
  in ``state`` mode fresh :class:`~zmqmon.core.delivery.Snapshot` values.

Per execution a tracker holds the last delivered ``seq``, the highest seq known to exist
(``known_last``: from live events and heartbeats) and a few live events that arrived ahead of a gap.

**The store is the buffer.** Live events ahead of a gap are kept only up to ``max_buffer`` in all
(the rest are dropped: the store has them). A backlog is fetched in pages of ``page_size``, and only
as much as the consumer says it can take (``room`` in :meth:`CloneCore.poll`). A live event of an
execution that is far behind is not even needed (:meth:`CloneCore.needs_live`), so a shell may skip
decoding it. Memory is bounded by configuration, not by the size of a burst.

**Modes** (per tracker; the core's ``mode`` is the default):

* ``log`` — every event once, in order, however far behind: gaps are paged from the store.
* ``state`` — when an execution's backlog exceeds ``max_lag`` events, a snapshot is fetched and
  delivered as a :class:`~zmqmon.core.delivery.Snapshot`; it replaces the backlog.

**Answers.** A page that brings events moves on at once (the next page is asked for immediately). A
page that brings nothing new, or ``not_found`` (the store writes in batches; a live event can
outrun it), is asked again after a backoff from ``retry_min`` doubling to ``retry_max``. A gap is
given up (counted in ``stats.skipped``) when the store lacks events it has later ones of (a hole),
or when it has made no progress on that execution for ``repair_timeout`` — never in ``log`` mode
merely because the service does not answer (it is retried until it does: the promise of ``log``
is nothing lost). With no state service at all (``Unavailable(permanent=True)``), gaps are skipped
at once.

**Joining.**

* ``subscribe_execution(id)`` returns a :class:`FetchSnapshot` for the shell to answer: the shell
  subscribes the ZMQ prefix first, then asks; live events meanwhile are buffered, those ``<=
  snapshot.lastSeq`` dropped. ``not_found`` here means "not started yet": every event from seq 1.
* ``subscribe_execution(id, after_seq=N)``: every event with seq > N, fetched, then live ones.
  Events 1..N are fetched too when states are kept (so the state is whole), but not delivered.
* An execution *first seen* through a workflow or raw-prefix subscription at seq ``s``: from there
  if ``s == 1``; in ``state`` mode (with ``snapshot_joins``) by a snapshot, delivered; else if
  ``s - 1 <= join_history`` its earlier events are fetched (a slow joiner sees it whole); else by a
  snapshot into :attr:`states` (``snapshot_joins``) or, for a relay, where first seen. An execution
  none of whose events arrived but that a heartbeat lists, and a raw prefix selects, is joined the
  same way (``s`` = the heartbeat's lastSeq + 1). Heartbeats carry no workflow id: a workflow
  subscription only repairs executions already tracked.

Bounds: trackers of executions seen through prefixes/workflows (``max_tracked``, oldest
forgotten), finished ids remembered to drop late duplicates, and finished executions' states in
:attr:`states` (``max_states``, oldest first; explicitly subscribed ones are kept while subscribed).
Liveness: alive from the first traffic; dead after ``heartbeat_timeout`` without any; each change is
queued in :attr:`liveness_changes`. On a return, every unfinished execution is checked once.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from itertools import islice
from typing import Final, Generic, TypeVar, cast

from zmqmon.core.delivery import (
    CloneStats,
    EventsPage,
    FetchEvents,
    FetchSnapshot,
    Mode,
    NotFound,
    Reply,
    Request,
    Sequenced,
    Snapshot,
    Unavailable,
)
from zmqmon.core.state import ExecutionState
from zmqmon.core.states import ExecutionStates
from zmqmon.core.topics import TopicIndex
from zmqmon.core.tracker import Tracker
from zmqmon.core.wire import EXEC_PREFIX, Heartbeat, execution_prefix

__all__ = ["CloneCore"]

E = TypeVar("E", bound=Sequenced)
_MAX_DONE: Final = 10_000  # finished executions remembered (to drop their late duplicates)
_MAX_SERVICES: Final = 256  # state services remembered from heartbeats (a directory, not a log)


class CloneCore(Generic[E]):
    """Gap-free, duplicate-free, in-order delivery of execution events (see the module doc)."""

    def __init__(
        self,
        *,
        mode: Mode = "log",
        heartbeat_timeout: float = 3.0,
        max_buffer: int = 10_000,
        page_size: int = 1000,
        join_history: int = 1000,
        max_lag: int = 1000,
        max_staleness: float = 1.0,
        retry_min: float = 0.05,
        retry_max: float = 1.0,
        repair_timeout: float = 5.0,
        keep_states: bool = True,
        snapshot_joins: bool = True,
        max_tracked: int = 20_000,
        max_states: int = 10_000,
    ) -> None:
        self.mode: Mode = mode
        self.heartbeat_timeout = heartbeat_timeout
        self.max_buffer = max_buffer
        self.page_size = page_size
        self.join_history = join_history
        self.max_lag = max_lag
        self.max_staleness = max_staleness
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.repair_timeout = repair_timeout
        self.keep_states = keep_states
        self.snapshot_joins = snapshot_joins
        self.max_tracked = max_tracked
        self.max_states = max_states
        self.ready: deque[E | Snapshot] = deque()
        self.states = ExecutionStates()
        self.stats = CloneStats()
        self.publisher_alive = False
        self.liveness_changes: deque[bool] = deque()
        self.last_traffic: float | None = None
        self.workflows: set[str] = set()
        self._topics: TopicIndex[bool] = TopicIndex()
        self._trackers: dict[str, Tracker[E]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()  # states of finished executions
        self._pending: set[str] = set()  # executions that may need a request
        self._buffered = 0  # live events held in all trackers' buffers
        self._was_alive = False
        self._filters_version = 0  # bumped by every change of workflow or topic filters
        #: execution → the state service its publisher's heartbeats name (bounded, newest kept)
        self.owners: OrderedDict[str, str] = OrderedDict()
        #: state service → when a heartbeat last named it (``now``; bounded, newest last)
        self.services: OrderedDict[str, float] = OrderedDict()

    def learn_owner(self, execution_id: str, service: str) -> None:
        """Record the state service owning an execution that heartbeats no longer name (a
        listing or an execute said so): its requests go there."""
        self.owners[execution_id] = service
        self.owners.move_to_end(execution_id)
        while len(self.owners) > self.max_tracked:
            self.owners.popitem(last=False)

    def services_heard(self, now: float, within: float) -> list[str]:
        """The state services heartbeats named in the last ``within`` seconds, newest first."""
        return [s for s, at in reversed(self.services.items()) if now - at <= within]

    # -- subscriptions ------------------------------------------------------------------------

    @property
    def prefixes(self) -> set[str]:
        """The raw topic prefixes subscribed."""
        return set(self._topics)

    def zmq_prefixes(self) -> set[str]:
        """The SUB socket's subscriptions these filters need (besides ``sys/heartbeat``)."""
        subs = {execution_prefix(t.execution_id) for t in self._trackers.values() if t.explicit}
        if self.workflows:
            subs.add(EXEC_PREFIX)  # workflow ids are not in topics: filter on the payload
        return subs | set(self._topics)

    def subscribe_execution(
        self, execution_id: str, after_seq: int | None = None, *, mode: Mode | None = None
    ) -> FetchSnapshot | None:
        """Track one execution. Returns the snapshot request the shell must answer now (with
        :meth:`on_reply`) when ``after_seq`` is None; None otherwise, or if it already was."""
        old = self._trackers.get(execution_id)
        if old is not None and old.explicit:
            return None  # already subscribed: keep its progress
        t: Tracker[E] = Tracker(execution_id, True, mode or self.mode)
        request = None
        if after_seq is None:
            t.base_known, t.fresh = False, True
            request = t.outstanding = FetchSnapshot(execution_id, self.owners.get(execution_id))
        else:
            t.known_last = t.quiet_until = max(0, after_seq)
            if not self.keep_states:  # nothing to rebuild: start right after it
                t.delivered = t.known_last
            t.needs_fetch = True
            self._pending.add(execution_id)
        if old is not None:
            self._discard_tracker(old)
            for event in old.buffer.values():
                self._buffer(t, event)
        self._trackers[execution_id] = t
        self._done.pop(execution_id, None)
        return request

    def is_subscribed(self, execution_id: str) -> bool:
        """Is this execution subscribed explicitly (``subscribe_execution``)?"""
        t = self._trackers.get(execution_id)
        return t is not None and t.explicit

    def unsubscribe_execution(self, execution_id: str) -> None:
        """Stop tracking it (unless a workflow or prefix subscription still covers it)."""
        t = self._trackers.get(execution_id)
        if t is not None and t.explicit:
            t.explicit = False
            if t.done:
                self._note_finished(execution_id)
            self._prune([t])

    def subscribe_workflow(self, workflow_id: str) -> None:
        """Every execution of a workflow (matched on each event's ``workflowId``)."""
        self.workflows.add(workflow_id)
        self._filters_version += 1

    def unsubscribe_workflow(self, workflow_id: str) -> None:
        """Drop a workflow subscription; its queued, undelivered events are dropped too."""
        self.workflows.discard(workflow_id)
        self._filters_version += 1
        self._prune([t for t in self._trackers.values() if t.workflow_id == workflow_id])

    def subscribe_topic(self, prefix: str) -> None:
        """A raw topic prefix, e.g. ``exec/``."""
        self._topics.set(prefix, True)
        self._filters_version += 1

    def unsubscribe_topic(self, prefix: str) -> None:
        """Drop a raw prefix; its queued, undelivered events are dropped too."""
        self._filters_version += 1
        if self._topics.remove(prefix) is None:
            return
        one = TopicIndex.execution_of(prefix)
        if one is None:
            self._prune(list(self._trackers.values()))
        elif (t := self._trackers.get(one)) is not None:
            self._prune([t])

    def wants(self, event: Sequenced) -> bool:
        """Does any subscription select this event?"""
        t = self._trackers.get(event.execution_id)
        if t is not None and t.explicit:
            return True
        if event.workflow_id in self.workflows:
            return True
        return self._topics.matches(event.execution_id, event.type)

    def _covered(self, t: Tracker[E]) -> bool:
        if t.explicit or t.pinned:
            return True
        if t.workflow_id is not None and t.workflow_id in self.workflows:
            return True
        return self._topics.may_select(t.execution_id)

    def _prune(self, candidates: list[Tracker[E]]) -> None:
        dropped = {t.execution_id for t in candidates if not self._covered(t)}
        for eid in dropped:
            t = self._trackers.pop(eid)
            self._discard_tracker(t)
        if self.ready:
            self.ready = deque(item for item in self.ready if self._selected(item))

    def _selects(self, t: Tracker[E]) -> bool | None:
        """Whether the filters select every event of a tracked execution (True), none of them
        (False), or only some types (None: ask per event)."""
        if t.workflow_id is not None and t.workflow_id in self.workflows:
            return True
        if self._topics.selects_every_type(t.execution_id):
            return True
        return None if self._topics.may_select(t.execution_id) else False

    @property
    def repairing(self) -> bool:
        """Is anything being repaired (a gap, a tail, a join)? Only then can a live event be
        of no use (:meth:`needs_live`): a shell can skip that question otherwise."""
        return bool(self._pending) or self._buffered > 0

    def _selected(self, item: E | Snapshot) -> bool:
        if isinstance(item, Snapshot):
            t = self._trackers.get(item.execution_id)
            return t is not None and (t.explicit or self._covered(t))
        return self.wants(item)

    # -- inputs -------------------------------------------------------------------------------

    def touch(self, now: float) -> None:
        """Traffic arrived from the stream (any message): the publisher is alive."""
        self.last_traffic = now
        if not self.publisher_alive:
            self.publisher_alive = True
            self.liveness_changes.append(True)
            if self._was_alive:
                # Back after an outage: what was published meanwhile may be lost; ask the store.
                for t in self._trackers.values():
                    if not t.done and t.base_known:
                        t.needs_fetch = True
                        self._pending.add(t.execution_id)
            self._was_alive = True

    def needs_live(self, execution_id: str) -> bool:
        """Would a live event of this execution be used? False when it is far behind (the
        store will provide it, or a snapshot will replace it) or selected by nothing: a shell
        may then skip decoding it (and count it in ``stats.skipped_live``)."""
        t = self._trackers.get(execution_id)
        if t is not None:
            if not t.base_known:
                return True  # joining: live events fill in after the snapshot
            if t.snapshot_due or isinstance(t.outstanding, FetchSnapshot):
                return False  # a snapshot replaces what comes meanwhile
            return t.known_last - t.delivered <= self.page_size
        if execution_id in self._done:
            return False
        return bool(self.workflows) or self._topics.may_select(execution_id)

    def on_event(self, event: E, age: float = 0.0, now: float = 0.0) -> bool:
        """A live event from the stream (filters applied here).

        ``age``: how long ago it was published (seconds; the shell reads its timestamp). In
        ``state`` mode an event older than ``max_staleness`` means the consumer is that far
        behind: a snapshot replaces the backlog (at most once per ``max_staleness``, by ``now``).

        Returns True if it was delivered or buffered, False if dropped (not selected, a
        duplicate, or the buffer was full): a relay keeping the bytes of events aside need not
        keep those.
        """
        eid = event.execution_id
        t = self._trackers.get(eid)
        if t is None:
            if eid in self._done:
                self.stats.duplicates += 1
                return False
            if not self.wants(event):
                return False
            t = self._untracked(eid)
            t.workflow_id = event.workflow_id
            self._join(t, event.seq)
        self.stats.received += 1
        if t.workflow_id is None:
            t.workflow_id = event.workflow_id
        seq = event.seq
        if age > self.max_staleness and t.mode == "state":
            self._late(t, now)
        if t.base_known:
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
        self.touch(now)
        if heartbeat.state is not None:  # who owns them: where their repairs are asked for
            owners, state = self.owners, heartbeat.state
            self.services[state] = now
            self.services.move_to_end(state)
            if len(self.services) > _MAX_SERVICES:
                self.services.popitem(last=False)
            for eid in heartbeat.executions:
                if owners.get(eid) != state:
                    owners[eid] = state
                    owners.move_to_end(eid)
            while len(owners) > self.max_tracked:
                owners.popitem(last=False)
        for eid, last in heartbeat.executions.items():
            t = self._trackers.get(eid)
            if t is None:
                if last > 0 and eid not in self._done and self._topics.may_select(eid):
                    # Every event of it was lost (e.g. published before the prefix subscription
                    # was live): the heartbeat is the only sign of it. Join as if first seen now.
                    t = self._untracked(eid)
                    self._join(t, last + 1)
                    t.known_last = max(t.known_last, last)
                    self._pending.add(eid)
                continue
            if last > t.known_last:
                t.known_last = last
                if last > t.delivered:
                    self._pending.add(eid)

    def on_reply(self, request: Request, reply: Reply, now: float) -> None:
        """The outcome of a request :meth:`poll` (or ``subscribe_execution``) asked for."""
        t = self._trackers.get(request.execution_id)
        if t is None or t.outstanding != request:
            return  # unsubscribed, subscribed anew, or already answered (offer_snapshot)
        t.outstanding = None
        self._pending.add(t.execution_id)
        if isinstance(request, FetchSnapshot):
            self._on_snapshot(t, reply, now)
        else:
            self._on_page(t, reply, now)

    def offer_snapshot(self, state: ExecutionState) -> None:
        """A snapshot obtained elsewhere (a relay's upstream re-snapshot): a tracker waiting for
        a snapshot takes it as its answer; a ``state``-mode tracker takes it only if it is over
        ``max_lag`` behind it (one that is not fetches the few events between, as the mode says:
        a snapshot replaces a *backlog*)."""
        t = self._trackers.get(state.execution_id)
        if t is None or t.fresh or (t.mode != "state" and t.base_known):
            return  # (a subscribe's own snapshot decides where it starts)
        if t.base_known and state.last_seq - t.delivered <= self.max_lag:
            t.known_last = max(t.known_last, state.last_seq)  # there is that much: fetch it
            if state.last_seq > t.delivered:
                self._pending.add(t.execution_id)
            return
        if isinstance(t.outstanding, FetchSnapshot):
            t.outstanding = None
        t.snapshot_due, t.announce = False, t.announce or t.base_known
        self._apply_snapshot(t, state)

    def pin(self, execution_id: str, delivered: int) -> None:
        """The consumer has every event up to ``delivered`` and lost the rest (a relay could
        not write them): deliver the events after it (``log`` mode), paged from the store.
        Tracked until it ends, then forgotten. Nothing changes if it is tracked already."""
        if execution_id in self._trackers:
            return
        t = self._trackers[execution_id] = Tracker(execution_id, False, "log")
        t.pinned = True
        t.delivered = t.known_last = max(0, delivered)
        t.needs_fetch = True
        self._done.pop(execution_id, None)
        self._pending.add(execution_id)

    def refresh(self, execution_id: str) -> None:
        """Ask the store once whether there is more of a tracked execution (its live events may
        have been dropped unseen: nothing else would reveal a tail)."""
        t = self._trackers.get(execution_id)
        if t is not None and t.base_known and not t.done:
            t.needs_fetch = True
            self._pending.add(execution_id)

    def resync(self, execution_id: str) -> None:
        """The consumer lost what was delivered of this execution (a relay could not write it):
        deliver a fresh snapshot, then what follows it. Tracked explicitly until it ends."""
        t = self._trackers.get(execution_id)
        if t is None:
            t = self._trackers[execution_id] = Tracker(execution_id, False, "state")
            self._done.pop(execution_id, None)
        t.pinned = True
        t.base_known = t.fresh = t.done = False
        t.snapshot_due = t.announce = True
        t.outstanding = None
        t.clear_stall()
        self._pending.add(execution_id)

    # -- outputs ------------------------------------------------------------------------------

    def check_liveness(self, now: float) -> bool:
        """Is the publisher alive at ``now``? (A change is queued in :attr:`liveness_changes`.)"""
        if (
            self.publisher_alive
            and self.last_traffic is not None
            and now - self.last_traffic > self.heartbeat_timeout
        ):
            self.publisher_alive = False
            self.liveness_changes.append(False)
        return self.publisher_alive

    def poll(self, now: float, room: int | None = None) -> list[Request]:
        """Check liveness; return the requests due now (each is then outstanding).

        ``room``: how many more events the consumer can take now (None: no limit); event pages
        are asked for only within it, so a backlog is read as fast as it is consumed.
        """
        self.check_liveness(now)
        out: list[Request] = []
        budget = room
        for eid in list(self._pending):
            t = self._trackers.get(eid)
            if t is None:
                self._pending.discard(eid)
                continue
            if t.outstanding is not None or now < t.retry_at:
                continue
            if not t.snapshot_due:
                if not t.base_known:
                    self._pending.discard(eid)  # the subscribe's snapshot is the shell's to ask
                    continue
                behind = t.known_last - t.delivered
                if not (t.needs_fetch or behind > 0 or t.buffer):
                    self._pending.discard(eid)
                    continue
                if t.mode == "state" and behind > self.max_lag:
                    t.snapshot_due = t.announce = True  # replace the backlog
                    self.stats.resnapshots += 1
            if t.snapshot_due:
                t.outstanding = FetchSnapshot(eid, self.owners.get(eid))
                out.append(t.outstanding)
                continue
            if budget is not None and budget <= 0:
                continue  # stays pending until the consumer has room
            limit = self.page_size if budget is None else min(self.page_size, budget)
            if budget is not None:
                budget -= limit
            t.outstanding = FetchEvents(eid, t.delivered, limit, self.owners.get(eid))
            self.stats.fetches += 1
            out.append(t.outstanding)
        return out

    def next_due(self) -> float | None:
        """The earliest time a pending retry falls due (None if nothing waits on time)."""
        times = [
            t.retry_at
            for eid in self._pending
            if (t := self._trackers.get(eid)) is not None and t.outstanding is None
        ]
        return min(times, default=None)

    def take_ready(self) -> E | Snapshot | None:
        """The next delivery, or None."""
        return self.ready.popleft() if self.ready else None

    def tracked(self) -> list[str]:
        """Execution ids currently tracked."""
        return list(self._trackers)

    def tracks(self, execution_id: str) -> bool:
        """Is this execution tracked (for any reason)?"""
        return execution_id in self._trackers

    def knows(self, execution_id: str) -> bool:
        """Is it tracked, or finished recently (so that any event of it is a late duplicate)?"""
        return execution_id in self._trackers or execution_id in self._done

    def mode_of(self, execution_id: str) -> Mode | None:
        """The delivery mode of a tracked execution (None if it is not tracked)."""
        t = self._trackers.get(execution_id)
        return None if t is None else t.mode

    @property
    def has_pending(self) -> bool:
        """Might :meth:`poll` have a request to make (now or after a backoff)?"""
        return bool(self._pending)

    @property
    def buffered(self) -> int:
        """Live events held ahead of gaps, in all (at most ``max_buffer``)."""
        return self._buffered

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
            or not self._topics.may_select(execution_id)
        ):
            return False
        t = self._untracked(execution_id)
        t.delivered = t.known_last = max(0, delivered)
        return True

    # -- answers ------------------------------------------------------------------------------

    def _on_snapshot(self, t: Tracker[E], reply: Reply, now: float) -> None:
        if isinstance(reply, ExecutionState):
            t.snapshot_due = False
            if self._apply_snapshot(t, reply):
                t.clear_stall()
            else:  # the store is behind what was delivered: its events will follow
                self._stalled(t, now, reply.last_seq)
            return
        if isinstance(reply, NotFound) and t.fresh:
            t.fresh = t.snapshot_due = False  # not started yet: every event from seq 1
            t.base_known = True
            self._drain(t)
            return
        t.fresh = False
        t.snapshot_due = True  # ask again
        if isinstance(reply, Unavailable):
            self.stats.fetch_failures += 1
            if reply.permanent:
                self._give_up(t)
                return
        if isinstance(reply, EventsPage):  # a wrong answer: as if none came
            self.stats.fetch_failures += 1
        self._stalled(t, now, None)

    def _apply_snapshot(self, t: Tracker[E], state: ExecutionState) -> bool:
        """Take a snapshot as the base; False if it is not ahead of what was delivered."""
        last = state.last_seq
        eid = t.execution_id
        if t.base_known and last <= t.delivered:
            t.announce = False  # the store is behind what was delivered: fetch the gap instead
            self._drain(t)
            return False
        t.base_known, t.fresh = True, False
        t.delivered = last
        t.known_last = max(t.known_last, last)
        self.stats.snapshots += 1
        if self.keep_states:
            self.states.set(eid, state)
        if t.workflow_id is None:
            t.workflow_id = state.workflow_id
        if t.announce:
            if self.ready:  # what it replaces need not be delivered any more
                self.ready = deque(
                    x for x in self.ready if x.execution_id != eid or isinstance(x, Snapshot)
                )
            if t.explicit or self._covered(t):
                self.ready.append(Snapshot(state))
        t.announce = False
        if state.is_terminal:
            t.done = True
        self._drop_buffered(t, upto=last)
        self._drain(t)
        return True

    def _on_page(self, t: Tracker[E], reply: Reply, now: float) -> None:
        if isinstance(reply, Unavailable):
            self.stats.fetch_failures += 1
            if reply.permanent:
                self._give_up(t)
            elif t.mode == "state":
                self._stalled(t, now, None)  # stay current: a gap may be given up
            else:  # log: wait for the service; never lose an event
                t.back_off(now, self.retry_min, self.retry_max)
            return
        if isinstance(reply, EventsPage):
            events, store_last = reply.events, reply.last_seq
        else:  # not_found (not stored yet), or a snapshot where a page was due
            events, store_last = (), 0
        before = t.delivered
        for event in events:
            seq = event.seq
            if event.execution_id != t.execution_id or seq <= t.delivered:
                continue
            if seq > t.delivered + 1:
                # The store has later events but not these: they are gone for good.
                self.stats.skipped += seq - t.delivered - 1
                t.delivered = seq - 1
                self._drop_buffered(t, upto=t.delivered)
            self._deliver(t, cast(E, event), fetched=True)
        t.known_last = max(t.known_last, store_last)
        self._drain(t)
        if t.delivered > before:
            t.needs_fetch = False
            t.clear_stall()
            t.retry_at, t.backoff = now, 0.0  # progress: page on at once
        elif t.known_last > t.delivered or t.buffer:
            self._stalled(t, now, store_last)
        else:
            t.needs_fetch = False  # asked once, nothing more known to exist
            t.clear_stall()

    def _stalled(self, t: Tracker[E], now: float, store_last: int | None) -> None:
        """A fruitless answer: give the gap up past ``repair_timeout``, else ask again later."""
        if t.stall(now, store_last, self.repair_timeout):
            self._give_up(t)
        else:
            t.back_off(now, self.retry_min, self.retry_max)

    def _give_up(self, t: Tracker[E]) -> None:
        """Accept the gap rather than stall the execution (counted in ``stats.skipped``)."""
        self.stats.skipped += t.give_up()
        self._drain(t)

    # -- internals ----------------------------------------------------------------------------

    def _late(self, t: Tracker[E], now: float) -> None:
        """A state-mode execution's live events come late: replace its backlog by a snapshot."""
        if t.late(now, self.max_staleness):
            self.stats.resnapshots += 1
            self._pending.add(t.execution_id)

    def _join(self, t: Tracker[E], seq: int) -> None:
        """How to start an execution first seen (by an event or a heartbeat) at ``seq``."""
        if t.join(seq, self.snapshot_joins, self.join_history):
            self._pending.add(t.execution_id)

    def _buffer(self, t: Tracker[E], event: E) -> bool:
        t.known_last = max(t.known_last, event.seq)
        if event.seq in t.buffer:
            self.stats.duplicates += 1
        elif self._buffered < self.max_buffer:
            t.buffer[event.seq] = event
            self._buffered += 1
            return True
        else:
            self.stats.overflow += 1  # the store has it: a page will bring it
        return False

    def _drop_buffered(self, t: Tracker[E], upto: int) -> None:
        stale = [s for s in t.buffer if s <= upto]
        for s in stale:
            del t.buffer[s]
        self._buffered -= len(stale)
        self.stats.duplicates += len(stale)

    def _deliver(self, t: Tracker[E], event: E, *, fetched: bool) -> None:
        seq = t.delivered = event.seq
        if self.keep_states:
            self.states.apply(event)  # type: ignore[arg-type]  # (states are kept of Events)
        self.stats.delivered += 1
        if fetched:
            self.stats.fetched += 1
        if seq > t.quiet_until:
            if t.explicit or t.pinned:
                self.ready.append(event)
            else:
                if t.selects_version != self._filters_version:
                    t.selects = self._selects(t)
                    t.selects_version = self._filters_version
                if t.selects or (t.selects is None and self.wants(event)):
                    self.ready.append(event)
        if event.is_terminal:
            t.done = True

    def _drain(self, t: Tracker[E]) -> None:
        buf = t.buffer
        if not buf and not t.done:  # nearly every live event: nothing held, nothing to finish
            if t.delivered > t.known_last:
                t.known_last = t.delivered
            return
        while buf:
            event = buf.pop(t.delivered + 1, None)
            if event is None:
                break
            self._buffered -= 1
            self._deliver(t, event, fetched=False)
        if buf and min(buf) <= t.delivered:
            self._drop_buffered(t, t.delivered)
        t.known_last = max(t.known_last, t.delivered)
        if t.done and not t.buffer and t.known_last <= t.delivered and t.base_known:
            self._finish(t)

    def _untracked(self, execution_id: str) -> Tracker[E]:
        """Start tracking an execution seen through a workflow or prefix subscription.

        Bounded: past ``max_tracked`` the oldest such trackers are forgotten (an execution whose
        terminal event never comes, its publisher gone for good, must not stay forever); one
        that speaks again is joined anew by the usual rules.
        """
        t: Tracker[E] = Tracker(execution_id, False, self.mode)
        self._trackers[execution_id] = t
        excess = len(self._trackers) - self.max_tracked
        if excess > 0:
            old = [
                e
                for e, o in islice(self._trackers.items(), excess + 64)
                if not (o.explicit or o.pinned) and e != execution_id
            ][:excess]
            for eid in old:
                self._discard_tracker(self._trackers.pop(eid))
                self.states.pop(eid, None)
        return t

    def _discard_tracker(self, t: Tracker[E]) -> None:
        self._buffered -= len(t.buffer)
        t.buffer = {}
        self._pending.discard(t.execution_id)

    def _finish(self, t: Tracker[E]) -> None:
        # An explicitly subscribed execution keeps its tracker; one seen through a workflow or
        # prefix is forgotten (a long-lived `exec/` subscriber must not grow without bound) and
        # the done-set (bounded) remembers it so that late duplicates do not start a new one.
        eid = t.execution_id
        if not t.explicit:
            self._trackers.pop(eid, None)
            self._discard_tracker(t)
        self._done[eid] = None
        self._done.move_to_end(eid)
        while len(self._done) > _MAX_DONE:
            self._done.popitem(last=False)
        self._note_finished(eid)

    def _note_finished(self, execution_id: str) -> None:
        """Bound the states of finished executions: the oldest go first (not subscribed ones)."""
        if not self.keep_states:
            return
        finished = self._finished
        finished[execution_id] = None
        finished.move_to_end(execution_id)
        while len(finished) > self.max_states:
            eid, _ = finished.popitem(last=False)
            t = self._trackers.get(eid)
            if t is None or not t.explicit:
                self.states.pop(eid, None)
