"""One execution's delivery cursor in the repair core, and the rules that move it alone.

:class:`~zmqmon.core.clone.CloneCore` multiplexes many of these (one per execution tracked): it
routes events, requests and answers to them and keeps what they share — the ready queue, the
states, the buffer bound, the counters. What concerns one execution only — how it joins, when a
stall is given up, how far a give-up skips, when a state-mode execution is late — is here, pure.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from zmqmon.core.delivery import FetchSnapshot, Mode, Request, Sequenced

__all__ = ["Tracker"]

E = TypeVar("E", bound=Sequenced)


class Tracker(Generic[E]):
    """One execution's delivery cursor and what is needed to move it."""

    __slots__ = (
        "announce",
        "backoff",
        "base_known",
        "buffer",
        "delivered",
        "done",
        "execution_id",
        "explicit",
        "fresh",
        "known_last",
        "mode",
        "needs_fetch",
        "outstanding",
        "pinned",
        "quiet_until",
        "resnap_after",
        "retry_at",
        "selects",
        "selects_version",
        "snapshot_due",
        "stall_mark",
        "stall_since",
        "workflow_id",
    )

    def __init__(self, execution_id: str, explicit: bool, mode: Mode) -> None:
        self.execution_id = execution_id
        self.explicit = explicit
        self.pinned = False  # selected until it ends, then forgotten (see CloneCore.resync)
        self.mode: Mode = mode
        self.workflow_id: str | None = None
        self.base_known = True  # False: a snapshot will say where delivery starts
        self.fresh = False  # the explicit subscribe's first snapshot: not_found = not started
        self.snapshot_due = False  # a FetchSnapshot is to be asked for
        self.announce = False  # deliver that snapshot as a Snapshot value
        self.delivered = 0
        self.known_last = 0  # highest seq known to exist
        self.quiet_until = 0  # events up to this seq are applied to the state, not delivered
        self.buffer: dict[int, E] = {}
        self.needs_fetch = False  # ask the store once even if no gap is known
        self.outstanding: Request | None = None
        self.retry_at = 0.0
        self.backoff = 0.0
        self.stall_since: float | None = None  # first fruitless answer of the current stall
        self.stall_mark = 0  # the store's lastSeq then (its progress restarts the clock)
        self.resnap_after = 0.0  # state mode: no new late-event re-snapshot before this
        # does a subscription select every event of it (True), none (False), some (None)?
        # Cached per version of the filters: this is asked for every event delivered.
        self.selects: bool | None = None
        self.selects_version = -1
        self.done = False

    # -- rules of one execution -----------------------------------------------------------------

    def join(self, seq: int, snapshot_joins: bool, join_history: int) -> bool:
        """How to start when first seen (by an event or a heartbeat) at ``seq``; True if a
        request is then needed."""
        if seq <= 1:
            return False
        if snapshot_joins and self.mode == "state":
            self.base_known, self.snapshot_due, self.announce = False, True, True
        elif seq - 1 <= join_history:
            self.needs_fetch = True  # the slow joiner's lost start: fetch it whole
        elif snapshot_joins:
            self.base_known, self.snapshot_due = False, True
        else:
            self.delivered = self.known_last = seq - 1  # a relay joins where first seen
        return True

    def stall(self, now: float, store_last: int | None, timeout: float) -> bool:
        """A fruitless answer; True if the gap is to be given up (no progress for ``timeout``).
        The clock restarts whenever the store's lastSeq moves on."""
        if self.stall_since is None or (store_last is not None and store_last > self.stall_mark):
            self.stall_since = now
            if store_last is not None:
                self.stall_mark = store_last
            return False
        return now - self.stall_since >= timeout

    def clear_stall(self) -> None:
        """Progress: a later stall starts its clock anew."""
        self.stall_since = None
        self.stall_mark = 0

    def back_off(self, now: float, low: float, high: float) -> None:
        """Ask again later: after ``low`` seconds, doubling up to ``high``."""
        self.backoff = min(high, max(low, self.backoff * 2))
        self.retry_at = now + self.backoff

    def give_up(self) -> int:
        """Accept the gap: move on to the first event held (or what is known to exist);
        returns how many events were skipped."""
        self.clear_stall()
        self.needs_fetch = self.snapshot_due = self.announce = self.fresh = False
        first_held = min(self.buffer) if self.buffer else None
        skipped = 0
        if not self.base_known:  # no snapshot: start at the first event held
            self.base_known = True
            self.delivered = first_held - 1 if first_held is not None else self.known_last
        else:
            target = first_held - 1 if first_held is not None else self.known_last
            if target > self.delivered:
                skipped = target - self.delivered
                self.delivered = target
        self.known_last = max(self.known_last, self.delivered)
        return skipped

    def late(self, now: float, staleness: float) -> bool:
        """Its live events come late (state mode): ask for a snapshot to replace the backlog,
        at most once per ``staleness``; True if one is now due."""
        if (
            not self.base_known
            or self.snapshot_due
            or isinstance(self.outstanding, FetchSnapshot)
            or now < self.resnap_after
        ):
            return False
        self.snapshot_due = self.announce = True
        self.resnap_after = now + staleness
        return True
