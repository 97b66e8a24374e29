"""Who owns each execution the bridge relays, and what waits until that is known (sans I/O).

With auth on, nothing of an execution is relayed before its owner (``userId``) is known: it is
learned from ``execution:started``, from a snapshot a subscription fetched, or by asking the state
service (the hub's lookup). Events that arrive meanwhile wait here, bounded in all; past the bound
the oldest waiting execution's are dropped (counted by the caller).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["OwnerBook"]

T = TypeVar("T")


class OwnerBook(Generic[T]):
    """Owners (LRU, bounded) and the items held for executions whose owner is not known yet."""

    def __init__(self, *, max_known: int = 20_000, max_held: int = 10_000) -> None:
        self.max_known = max_known
        self.max_held = max_held
        self._owners: OrderedDict[str, str | None] = OrderedDict()
        self._held: OrderedDict[str, list[T]] = OrderedDict()
        self._held_count = 0
        self.looking_up: set[str] = set()

    def known(self, execution_id: str) -> bool:
        """Is the owner of this execution known?"""
        return execution_id in self._owners

    def owner(self, execution_id: str) -> str | None:
        """Its owner (None: no user, or not known — see :meth:`known`)."""
        return self._owners.get(execution_id)

    def learn(self, execution_id: str, owner: str | None) -> list[T]:
        """Record an owner; returns what was held for it, in arrival order."""
        self._owners[execution_id] = owner
        self._owners.move_to_end(execution_id)
        if len(self._owners) > self.max_known:
            self._owners.popitem(last=False)
        return self.release(execution_id)

    def release(self, execution_id: str) -> list[T]:
        """Take what was held for an execution (to relay, or to drop)."""
        held = self._held.pop(execution_id, [])
        self._held_count -= len(held)
        return held

    def hold(self, execution_id: str, item: T) -> list[T]:
        """Keep an item until the owner is known; returns what had to be dropped to stay bounded."""
        self._held.setdefault(execution_id, []).append(item)
        self._held_count += 1
        dropped: list[T] = []
        while self._held_count > self.max_held and self._held:
            _, oldest = self._held.popitem(last=False)
            self._held_count -= len(oldest)
            dropped.extend(oldest)
        return dropped

    @property
    def held(self) -> int:
        """Items waiting, in all."""
        return self._held_count
