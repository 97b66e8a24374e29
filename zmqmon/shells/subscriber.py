"""Subscriber: a SUB socket plus the state service, repairing the stream (the Clone pattern).

The repair logic is the pure :class:`~zmqmon.core.clone.CloneCore`; this module is its sync I/O
shell, and :mod:`zmqmon.shells.async_subscriber` its asyncio face (same names, ``async``).

What a consumer gets (contract §3): for ``subscribe_execution(id)`` the snapshot (returned, and
in :attr:`Subscriber.states`), then every later event exactly once, in seq order — even where the
publisher's high-water mark dropped messages (gaps, lost tails and late joins are fetched from the
state service with ``events``). Workflow and raw-prefix subscriptions: see the joining rules in
:mod:`zmqmon.core.clone`.

The shell is pull-based: it reads the socket, answers the core's requests and checks liveness
while :meth:`Subscriber.recv` (or iteration) runs. Garbage on the stream (wrong frame count, bad
JSON, wrong schema, topic/payload mismatch) is counted in ``stats.garbage`` and logged at most
once a second, never raised. ``publisher_alive`` turns False after ``heartbeat_timeout`` without
a heartbeat and True when heartbeats return; ``on_publisher_change(alive)`` is called on each
change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import zmq

from zmqmon.config import DEFAULT_EVENTS, DEFAULT_STATE
from zmqmon.core.clone import CloneCore, CloneStats, FetchEvents, FetchSnapshot, Request
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState
from zmqmon.core.wire import HEARTBEAT_TOPIC, Heartbeat, decode_message
from zmqmon.errors import NotFoundError, ProtocolError, ZmqmonError
from zmqmon.shells.client import StateClient

__all__ = ["Subscriber", "SubscriberBase", "sub_socket"]

log = logging.getLogger("zmqmon.subscriber")

TICK: Final = 0.1  # longest wait between liveness checks and retries
BATCH: Final = 1000  # messages read per wake-up before looking at the queue again
RCVHWM: Final = 100_000


class SubscriberBase:
    """What both faces share: the core, filters → SUB subscriptions, decoding, reporting."""

    _socket: Any  # a sync (or shadowed) SUB socket for non-blocking reads
    _closed: bool

    def __init__(
        self,
        heartbeat_timeout: float,
        on_publisher_change: Callable[[bool], None] | None,
        join_history: int,
        keep_states: bool = True,
    ) -> None:
        self._core = CloneCore(
            heartbeat_timeout=heartbeat_timeout,
            join_history=join_history,
            keep_states=keep_states,
        )
        self._subscribed: set[bytes] = set()
        self.on_publisher_change = on_publisher_change
        self._garbage_logged_at = -1e9
        self._garbage_quiet = 0
        self._closed = False

    # -- read-only views ------------------------------------------------------------------------

    @property
    def states(self) -> dict[str, ExecutionState]:
        """Reducer state of every execution seen (snapshot, then each event applied)."""
        return self._core.states

    @property
    def stats(self) -> CloneStats:
        """Counters: received, delivered, duplicates, fetched (repaired), garbage …"""
        return self._core.stats

    @property
    def publisher_alive(self) -> bool:
        """False after ``heartbeat_timeout`` without a heartbeat (and before the first one)."""
        now = time.monotonic()
        self._pump(now)
        alive = self._core.check_liveness(now)
        self._report_liveness()
        return alive

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- shared machinery -----------------------------------------------------------------------

    def _sync_subscriptions(self) -> None:
        """Make the SUB socket's subscriptions match the core's filters (each prefix once)."""
        if self._closed:
            return
        want = {p.encode() for p in self._core.zmq_prefixes()}
        for prefix in want - self._subscribed:
            self._socket.setsockopt(zmq.SUBSCRIBE, prefix)
        for prefix in self._subscribed - want:
            self._socket.setsockopt(zmq.UNSUBSCRIBE, prefix)
        self._subscribed = want

    def _pump(self, now: float, limit: int = BATCH) -> int:
        """Feed up to ``limit`` waiting messages to the core, without blocking."""
        if self._closed:
            return 0
        recv = self._socket.recv_multipart
        n = 0
        while n < limit:
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            self._feed(frames, now)
        return n

    def _feed(self, frames: list[bytes], now: float) -> None:
        try:
            msg = decode_message(frames)
        except ProtocolError as exc:
            self._garbage(exc, now)
            return
        if isinstance(msg, Heartbeat):
            self._core.on_heartbeat(msg, now)
        else:
            self._core.on_event(msg)

    def _garbage(self, exc: ProtocolError, now: float) -> None:
        self._core.stats.garbage += 1
        if now - self._garbage_logged_at >= 1.0:
            more = (
                f" ({self._garbage_quiet} more since the last report)"
                if self._garbage_quiet
                else ""
            )
            log.warning("skipped a malformed message: %s%s", exc, more)
            self._garbage_logged_at, self._garbage_quiet = now, 0
        else:
            self._garbage_quiet += 1

    def _report_liveness(self) -> None:
        changes = self._core.liveness_changes
        while changes:
            alive = changes.popleft()
            if alive:
                log.info("publisher alive (heartbeats received)")
            else:
                log.warning("publisher lost: no heartbeat for %.1fs", self._core.heartbeat_timeout)
            if self.on_publisher_change is not None:
                self.on_publisher_change(alive)

    def _wait_time(self, now: float, deadline: float | None) -> float:
        wait = TICK
        if deadline is not None:
            wait = min(wait, deadline - now)
        due = self._core.next_due()
        if due is not None:
            wait = min(wait, due - now)
        return max(0.0, wait)

    def _fetch_failed(self, req: Request, exc: Exception) -> None:
        log.debug("repair request %s failed: %s", req, exc)
        self._core.on_fetch_failed(req, time.monotonic())

    # -- filters that need no I/O beyond the socket options ----------------------------------

    def subscribe_workflow(self, workflow_id: str) -> None:
        """Every execution of a workflow, from now on (matched on each event's workflowId)."""
        self._core.subscribe_workflow(workflow_id)
        self._sync_subscriptions()

    def unsubscribe_workflow(self, workflow_id: str) -> None:
        """Stop a workflow subscription; none of its undelivered events follow."""
        self._core.unsubscribe_workflow(workflow_id)
        self._sync_subscriptions()

    def subscribe_topic(self, prefix: str) -> None:
        """A raw topic prefix, e.g. ``exec/`` for every execution."""
        self._core.subscribe_topic(prefix)
        self._sync_subscriptions()

    def unsubscribe_topic(self, prefix: str) -> None:
        """Stop a raw prefix subscription; none of its undelivered events follow."""
        self._core.unsubscribe_topic(prefix)
        self._sync_subscriptions()

    def unsubscribe_execution(self, execution_id: str) -> None:
        """Stop following one execution; none of its undelivered events follow."""
        self._core.unsubscribe_execution(execution_id)
        self._sync_subscriptions()


def sub_socket(context: zmq.Context[Any], endpoint: str, rcvhwm: int = RCVHWM) -> Any:
    """A SUB socket connected to ``endpoint``, subscribed to ``sys/heartbeat``."""
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
    sock.connect(endpoint)
    return sock


class Subscriber(SubscriberBase):
    """Sync subscriber: ``recv()`` / iteration yield repaired events (see the module doc).

    ``request_timeout`` bounds each repair request; ``join_history``: see
    :mod:`zmqmon.core.clone`; ``rcvhwm``: the SUB socket's receive high-water mark;
    ``keep_states=False``: no reducer per event (:attr:`states` then holds snapshots only),
    for relays such as the bridge.
    ``state=None`` runs without a state service: events arrive in order, but gaps are skipped
    (``stats.skipped``) instead of repaired, and ``subscribe_execution`` has no snapshot.
    Not thread-safe: use it from one thread (ZeroMQ sockets are not thread-safe).
    """

    def __init__(
        self,
        events: str = DEFAULT_EVENTS,
        state: str | None = DEFAULT_STATE,
        *,
        heartbeat_timeout: float = 3.0,
        context: zmq.Context[Any] | None = None,
        on_publisher_change: Callable[[bool], None] | None = None,
        request_timeout: float = 2.0,
        join_history: int = 1000,
        rcvhwm: int = RCVHWM,
        keep_states: bool = True,
    ) -> None:
        super().__init__(heartbeat_timeout, on_publisher_change, join_history, keep_states)
        self.events_endpoint = events
        self.state_endpoint = state
        ctx = context or zmq.Context.instance()
        self._socket = sub_socket(ctx, events, rcvhwm)
        self._client: StateClient | None = (
            StateClient(state, timeout=request_timeout, context=ctx) if state else None
        )

    def subscribe_execution(
        self, execution_id: str, after_seq: int | None = None
    ) -> ExecutionState | None:
        """Follow one execution. ``after_seq=None``: returns its snapshot (None if it has not
        started yet), then every later event once, in order. ``after_seq=N``: every event with
        seq > N (from the store), then live ones. Raises ``ServiceUnavailableError`` if the
        state service does not answer the snapshot (the subscription is then undone)."""
        if not self._core.subscribe_execution(execution_id, after_seq):
            return self._core.states.get(execution_id)  # already subscribed
        self._sync_subscriptions()  # subscribe FIRST, then ask for the snapshot
        if after_seq is not None:
            return None
        if self._client is None:
            self._core.on_fetch_failed(FetchSnapshot(execution_id), time.monotonic(), give_up=True)
            return None
        try:
            state: ExecutionState | None = self._client.snapshot(execution_id)
        except NotFoundError:
            state = None
        except BaseException:
            self.unsubscribe_execution(execution_id)
            raise
        self._core.on_snapshot(execution_id, state)
        return state

    def recv(self, timeout: float | None = None) -> Event | None:
        """The next repaired event; None after ``timeout`` seconds (None: wait) or once closed."""
        core = self._core
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            event = core.take_ready()
            if event is not None or self._closed:
                return event
            now = time.monotonic()
            self._serve(now)
            self._report_liveness()
            event = core.take_ready()
            if event is not None:
                return event
            if self._pump(now):
                continue
            if deadline is not None and now >= deadline:
                return None
            wait = self._wait_time(now, deadline)
            if wait > 0:
                self._socket.poll(int(wait * 1000) + 1, zmq.POLLIN)

    def _serve(self, now: float) -> None:
        for req in self._core.poll(now):
            if self._client is None:
                self._core.on_fetch_failed(req, now, give_up=True)
                continue
            try:
                if isinstance(req, FetchEvents):
                    try:
                        got, last = self._client.events(req.execution_id, req.after_seq, req.limit)
                    except NotFoundError:  # not stored yet
                        got, last = [], 0
                    self._core.on_events(req.execution_id, got, last, time.monotonic())
                else:
                    try:
                        snap: ExecutionState | None = self._client.snapshot(req.execution_id)
                    except NotFoundError:
                        snap = None
                    self._core.on_snapshot(req.execution_id, snap)
            except ZmqmonError as exc:
                self._fetch_failed(req, exc)

    def __iter__(self) -> Iterator[Event]:
        while not self._closed:
            event = self.recv()
            if event is not None:
                yield event

    def close(self) -> None:
        """Close the sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._socket.close(0)
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
