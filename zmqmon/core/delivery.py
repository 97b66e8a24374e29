"""The values the repair core (:mod:`zmqmon.core.clone`) exchanges with its shells.

Pure data, no behaviour: what a shell must ask the state service (:data:`Request`), what it hands
back (:data:`Reply` — every outcome of a request, failures included, as a value), and what the
core delivers to the consumer (:data:`Delivery`: events, and in ``state`` mode fresh snapshots).

Delivery modes (contract §5):

* ``log`` — every event exactly once, in order, however far behind the consumer falls: a backlog is
  read from the store in pages, as fast as the consumer takes them;
* ``state`` — exact and current: past a bound of lag a fresh :class:`Snapshot` replaces the
  backlog (the ZeroMQ guide's Clone answer to a slow subscriber); events after it follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState

__all__ = [
    "MODES",
    "NOT_FOUND",
    "CloneStats",
    "Delivery",
    "EventsPage",
    "FetchEvents",
    "FetchSnapshot",
    "Mode",
    "NotFound",
    "Reply",
    "Request",
    "Sequenced",
    "Snapshot",
    "Unavailable",
]

Mode: TypeAlias = Literal["log", "state"]
MODES: Final[tuple[Mode, ...]] = ("log", "state")


class Sequenced(Protocol):
    """What the core reads of an event: a validated :data:`~zmqmon.core.events.Event`, or a
    relay's lighter record of one (the bridge keeps the published bytes beside these fields)."""

    @property
    def execution_id(self) -> str: ...

    @property
    def workflow_id(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def type(self) -> str: ...

    @property
    def is_terminal(self) -> bool: ...


# -- requests: what the shell must ask the state service ------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchEvents:
    """Ask for ``events(execution_id, afterSeq=after_seq, limit=limit)`` — of ``owner``, the
    state service a heartbeat named for it, when one did (None: the configured one)."""

    execution_id: str
    after_seq: int
    limit: int
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class FetchSnapshot:
    """Ask for ``snapshot(execution_id)`` (of ``owner``, as for :class:`FetchEvents`)."""

    execution_id: str
    owner: str | None = None


Request: TypeAlias = FetchEvents | FetchSnapshot


# -- replies: every outcome of a request, as a value ----------------------------------------------


@dataclass(frozen=True, slots=True)
class EventsPage:
    """The answer to :class:`FetchEvents`: events in seq order and the store's ``lastSeq``."""

    events: Sequence[Sequenced]
    last_seq: int


class NotFound:
    """The state service answered ``not_found``: it holds nothing of that execution (yet)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_FOUND"


NOT_FOUND: Final = NotFound()


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No usable answer: a timeout, a refusal, a malformed reply, or no state service at all."""

    reason: str
    permanent: bool = False  # no state service configured: nothing will ever answer


Reply: TypeAlias = EventsPage | ExecutionState | NotFound | Unavailable


# -- deliveries: what the consumer gets -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A ``state``-mode delivery: the execution's state as of ``state.last_seq``; it replaces
    everything delivered of that execution before it, and its events after ``last_seq`` follow."""

    state: ExecutionState

    @property
    def execution_id(self) -> str:
        return self.state.execution_id


Delivery: TypeAlias = Event | Snapshot


@dataclass(slots=True)
class CloneStats:
    """Counters of what the core (and its shell, for ``garbage`` and ``skipped_live``) saw."""

    received: int = 0  # live events that passed the filters
    delivered: int = 0  # events handed to the consumer (or applied to tracked state)
    duplicates: int = 0  # live or fetched events at or below what was delivered
    fetched: int = 0  # events delivered that came from a fetch: the repaired ones
    fetches: int = 0  # FetchEvents requests issued (gaps, tails, joins, resumes, pages)
    fetch_failures: int = 0  # requests answered Unavailable
    snapshots: int = 0  # snapshots applied (joins and state-mode re-snapshots)
    resnapshots: int = 0  # state mode: backlogs replaced by a snapshot
    overflow: int = 0  # live events not buffered because the buffer was full (the store has them)
    skipped: int = 0  # events given up on (the store could not provide them)
    skipped_live: int = 0  # live events not even decoded: their execution was being caught up
    heartbeats: int = 0
    garbage: int = 0  # malformed messages skipped
