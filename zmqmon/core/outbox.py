"""A reporter's outbox (``zmqmon.track``): the events of one execution not yet acknowledged.

Pure: no sockets, no threads, no clock. The reporter's thread takes numbered batches from it and
acknowledges them; the watched code adds events from any thread (the shell holds the lock).

* **Bounded**: at most ``capacity`` events wait. Past it a new event is dropped and counted
  (:attr:`Outbox.dropped`) — except the terminal event, which always gets in, so an execution
  always ends. What was dropped is said in the terminal event (``droppedEvents``).
* **Coalesced**: a progress event replaces the one of the same agent (or of the execution) still
  waiting, in place: while the service is away, a loop's thousands of progress reports wait as
  one event per agent, the latest.
* **Once, in order**: a batch taken is the *in-flight* batch until :meth:`Outbox.acked`; until
  then :meth:`Outbox.take` hands out the same batch again (same number, so the service applies it
  once). Batches are numbered 1, 2, …; an empty one (:meth:`Outbox.keepalive`) says "still here".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ["Outbox"]

_PROGRESS: Final = frozenset({"agent:progress", "execution:progress"})
_TERMINAL: Final = frozenset({"execution:completed", "execution:failed", "execution:cancelled"})

Item = dict[str, Any]  # {"type", "data", "timestamp"}


def _key(item: Item) -> str:
    """Whose progress an item is: an agent id, or "" for the execution."""
    data = item.get("data") or {}
    return str(data.get("agentId", "")) if item["type"].startswith("agent:") else ""


class Outbox:
    """The waiting events of one execution (see the module doc).

    ``batch_size``: events per batch at most; ``batch_bytes`` with ``size``: a batch stops
    before its events' sizes pass it (always at least one event).
    """

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        batch_size: int = 500,
        batch_bytes: int = 1024 * 1024,
        size: Callable[[Item], int] = lambda item: 0,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self._size = size
        self._items: deque[Item] = deque()
        self._progress: dict[str, Item] = {}  # waiting progress items by whose they are
        self._in_flight: tuple[int, list[Item]] | None = None
        self._batch = 0
        #: events dropped because the outbox was full
        self.dropped = 0
        #: True once the terminal event was added: nothing is added after it
        self.ended = False

    @property
    def pending(self) -> int:
        """Events waiting, in flight included."""
        flying = len(self._in_flight[1]) if self._in_flight else 0
        return len(self._items) + flying

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is in flight."""
        return not self._items and self._in_flight is None

    def add(self, item: Item) -> bool:
        """Queue one event; False if it was dropped (full, or after the terminal event)."""
        kind = item["type"]
        if self.ended:
            return False
        if kind in _PROGRESS:
            key = _key(item)
            waiting = self._progress.get(key)
            if waiting is not None:  # the latest value wins, where the earlier one waits
                waiting["data"] = item["data"]
                waiting["timestamp"] = item.get("timestamp")
                return True
        elif kind.startswith("agent:"):
            self._progress.pop(_key(item), None)  # later progress must come after this
        if kind in _TERMINAL:
            self.ended = True
        elif len(self._items) >= self.capacity:
            self.dropped += 1
            return False
        self._items.append(item)
        if kind in _PROGRESS:
            self._progress[_key(item)] = item
        return True

    def take(self) -> tuple[int, list[Item]] | None:
        """The batch to send: the one in flight again, else a new one; None if nothing waits."""
        if self._in_flight is not None:
            return self._in_flight
        if not self._items:
            return None
        items: list[Item] = []
        total = 0
        while self._items and len(items) < self.batch_size:
            size = self._size(self._items[0])
            if items and total + size > self.batch_bytes:
                break
            item = self._items.popleft()
            if item["type"] in _PROGRESS and self._progress.get(_key(item)) is item:
                del self._progress[_key(item)]  # sent as it is now: no longer updated in place
            items.append(item)
            total += size
        self._batch += 1
        self._in_flight = (self._batch, items)
        return self._in_flight

    def keepalive(self) -> tuple[int, list[Item]]:
        """An empty batch (when nothing waits): the reporter is still alive."""
        if self._in_flight is None:
            self._batch += 1
            self._in_flight = (self._batch, [])
        return self._in_flight

    def acked(self, batch: int) -> None:
        """The service applied ``batch``."""
        if self._in_flight is not None and self._in_flight[0] == batch:
            self._in_flight = None

    def abandon(self) -> int:
        """Give up everything waiting (the service will take no more); how many events."""
        count = self.pending
        self._items.clear()
        self._progress.clear()
        self._in_flight = None
        self.ended = True
        return count
