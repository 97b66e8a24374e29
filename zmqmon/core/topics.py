"""Topic-prefix matching without scanning every prefix (contract §3 topics).

A raw subscription is a prefix of ``exec/<executionId>/<type>``. Subscribers hold many of them
(a bridge holds one per execution its clients follow), so matching an event, or asking which
executions a dropped prefix could have covered, must not walk them all. :class:`TopicIndex` sorts
each prefix into one of four kinds:

* a prefix of ``exec/`` itself (``exec/``, ``ex`` …): matches every execution;
* ``exec/<id>/<type-prefix>``: one execution (looked up by id), the types starting with the rest;
* ``exec/<partial-id>`` (no second ``/``): executions whose id starts with it (scanned; rare);
* anything else (``sys/…``): matches no execution event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Generic, TypeVar

__all__ = ["TopicIndex"]

T = TypeVar("T")
_EXEC: Final = "exec/"


class TopicIndex(Generic[T]):
    """Prefixes mapped to values (a holder set, a refcount …), matched per event cheaply."""

    def __init__(self) -> None:
        self._values: dict[str, T] = {}
        self._all: dict[str, T] = {}
        self._exact: dict[str, dict[str, str]] = {}  # id → {prefix: type-prefix}
        self._partial: dict[str, str] = {}  # prefix → id-prefix

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, prefix: str) -> T | None:
        """The value held for a prefix, or None."""
        return self._values.get(prefix)

    def set(self, prefix: str, value: T) -> None:
        """Hold ``value`` for ``prefix`` (replacing any earlier one)."""
        new = prefix not in self._values
        self._values[prefix] = value
        if not new:
            if prefix in self._all:
                self._all[prefix] = value
            return
        if _EXEC.startswith(prefix):
            self._all[prefix] = value
        elif prefix.startswith(_EXEC):
            rest = prefix[len(_EXEC) :]
            execution_id, slash, type_prefix = rest.partition("/")
            if slash:
                self._exact.setdefault(execution_id, {})[prefix] = type_prefix
            else:
                self._partial[prefix] = rest

    def remove(self, prefix: str) -> T | None:
        """Drop a prefix; returns its value (None if it was not held)."""
        if prefix not in self._values:
            return None
        value = self._values.pop(prefix)
        self._all.pop(prefix, None)
        self._partial.pop(prefix, None)
        execution_id = self.execution_of(prefix)
        if execution_id is not None:
            by_id = self._exact.get(execution_id)
            if by_id is not None:
                by_id.pop(prefix, None)
                if not by_id:
                    del self._exact[execution_id]
        return value

    @staticmethod
    def execution_of(prefix: str) -> str | None:
        """The one execution a prefix selects (``exec/<id>/…``), or None if it selects many/none."""
        if not prefix.startswith(_EXEC):
            return None
        execution_id, slash, _ = prefix[len(_EXEC) :].partition("/")
        return execution_id if slash else None

    def match(self, execution_id: str, event_type: str) -> list[T]:
        """The values of every prefix of the topic ``exec/<execution_id>/<event_type>``."""
        out = list(self._all.values()) if self._all else []
        by_id = self._exact.get(execution_id)
        if by_id:
            values = self._values
            for prefix, type_prefix in by_id.items():
                if event_type.startswith(type_prefix):
                    out.append(values[prefix])
        if self._partial:
            values = self._values
            for prefix, id_prefix in self._partial.items():
                if execution_id.startswith(id_prefix):
                    out.append(values[prefix])
        return out

    def match_any(self, execution_id: str) -> list[T]:
        """The values of every prefix that selects some event of this execution."""
        out = list(self._all.values()) if self._all else []
        by_id = self._exact.get(execution_id)
        if by_id:
            out.extend(self._values[prefix] for prefix in by_id)
        for prefix, id_prefix in self._partial.items():
            if execution_id.startswith(id_prefix):
                out.append(self._values[prefix])
        return out

    def matches(self, execution_id: str, event_type: str) -> bool:
        """Does any prefix select this topic?"""
        if self._all:
            return True
        by_id = self._exact.get(execution_id)
        if by_id and any(event_type.startswith(t) for t in by_id.values()):
            return True
        return any(execution_id.startswith(p) for p in self._partial.values())

    def selects_every_type(self, execution_id: str) -> bool:
        """Does some prefix select every event of this execution, whatever its type?"""
        if self._all:
            return True
        by_id = self._exact.get(execution_id)
        if by_id and "" in by_id.values():
            return True
        return any(execution_id.startswith(p) for p in self._partial.values())

    def may_select(self, execution_id: str) -> bool:
        """Could some event of this execution match (any of its types)?"""
        if self._all or execution_id in self._exact:
            return True
        return any(execution_id.startswith(p) for p in self._partial.values())

    def selects_many(self, prefix: str) -> bool:
        """Does this prefix (held or not) reach beyond one execution?"""
        return self.execution_of(prefix) is None
