"""An execution's events and its state as of any seq: replay by seq, with the one reducer.

The notebook monitor's scrubber asks for the state at a seq many times a second while it is
dragged, over runs of many thousands of events; folding from the first event each time would cost
the whole run. :class:`History` keeps the state every ``checkpoint`` events, so a seq costs at most
``checkpoint`` calls of :func:`~zmqmon.core.state.apply_event`. Events are only appended (fetched
from the state service in order); the dashboard's ``static/replay.js`` does the same in the page.
Pure: the caller fetches the events.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.timeline import timestamp_ms

__all__ = ["History"]


class History:
    """Events of one execution, in seq order, and the states between them.

    ``extend`` takes events in order; an event at or below the last seq held is ignored (a page
    fetched twice), so the history never holds a seq twice. A gap (an event missing in the
    middle) is folded as the reducer folds it: the state simply moves on.
    """

    def __init__(self, checkpoint: int = 256) -> None:
        if checkpoint < 1:
            raise ValueError("checkpoint must be >= 1")
        self.checkpoint = checkpoint
        self.events: list[Event] = []
        self._seqs: list[int] = []
        self._marks: list[tuple[int, ExecutionState]] = []  # (index of the event, state after it)
        self._state: ExecutionState | None = None

    @property
    def first_seq(self) -> int | None:
        """The first seq held (None while empty)."""
        return self._seqs[0] if self._seqs else None

    @property
    def last_seq(self) -> int:
        """The last seq held (0 while empty)."""
        return self._seqs[-1] if self._seqs else 0

    def extend(self, events: Iterable[Event]) -> int:
        """Append events (in seq order); returns how many were new."""
        added = 0
        for event in events:
            if event.seq <= self.last_seq:
                continue
            self._state = apply_event(self._state, event)
            self.events.append(event)
            self._seqs.append(event.seq)
            added += 1
            if len(self.events) % self.checkpoint == 0:
                self._marks.append((len(self.events) - 1, self._state))
        return added

    def _upto(self, seq: int) -> int:
        """How many events have seq <= ``seq``."""
        return bisect_right(self._seqs, seq)

    def state_at(self, seq: int) -> ExecutionState | None:
        """The state after every event with seq <= ``seq`` (None before the first)."""
        count = self._upto(seq)
        if count == 0:
            return None
        if count == len(self.events):
            return self._state
        k = bisect_right(self._marks, count - 1, key=lambda mark: mark[0]) - 1
        start, state = (self._marks[k][0] + 1, self._marks[k][1]) if k >= 0 else (0, None)
        for event in self.events[start:count]:
            state = apply_event(state, event)
        return state

    def time_at(self, seq: int) -> int | None:
        """The instant of ``seq`` (epoch ms): the timestamp of the last event at or before it."""
        count = self._upto(seq)
        return timestamp_ms(self.events[count - 1].timestamp) if count else None

    def events_upto(self, seq: int, limit: int) -> list[Event]:
        """The last ``limit`` events with seq <= ``seq`` (what a log shows at that seq)."""
        count = self._upto(seq)
        return self.events[max(0, count - limit) : count]
