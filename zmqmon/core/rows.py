"""KeyedRows: an execution's agent rows as a persistent vector, so one agent event costs
O(log n) of an n-agent state instead of a copy of all n rows.

The reducer is pure: it returns a new state and leaves the old one intact, and each agent event
changes one row. With a plain list that meant copying the list (and scanning it for the agent) on
every event: 20,000 agents made every ``agent:progress`` cost about a millisecond. Here the rows
live in a 32-way trie of tuples (as Clojure's vectors do): replacing or appending a row copies
the path to it — at most ``log32(n)`` tuples of 32 — and every other tuple is shared with the
previous state. Looking an agent up goes through an id → position index.

The index is shared by successive versions too. Positions never change (rows are only replaced
or appended), so one ``dict`` serves a whole lineage of states: a version of length ``n`` trusts
an entry ``id → p`` exactly when ``p < n``. Only appends write to it, and only the version at
the tip of the lineage may: an append to a version that is not the tip (a state that was already
extended elsewhere — branches are rare, but the reducer is pure) builds a fresh index for the
new branch. Appends claim their position in a shared list with ``list.append``, atomic in
CPython, so two threads extending the same state cannot both win it.

It is a read-only :class:`~collections.abc.Sequence`: ``len``, indexing, iteration and ``==``
(with any sequence of the same rows, a list included) behave as a list's would. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

__all__ = ["KeyedRows"]

T = TypeVar("T")

_BITS = 5
_WIDTH = 1 << _BITS  # children per node
_MASK = _WIDTH - 1


class _Index:
    """Row key → position, shared by the versions of one lineage (see the module docstring)."""

    __slots__ = ("claims", "positions")

    def __init__(self, keys: list[str]) -> None:
        self.claims = keys  # claims[p]: the key whose row is at p, in the lineage's tip
        self.positions: dict[str, int] = {}
        for position, key in enumerate(keys):
            self.positions.setdefault(key, position)  # a duplicate key: its first row counts


def _assoc(root: tuple[Any, ...], shift: int, i: int, value: Any) -> tuple[Any, ...]:
    """``root`` with item ``i`` replaced: the path to it copied, everything else shared."""
    path = []
    node, level = root, shift
    while level > 0:
        path.append(node)
        node = node[(i >> level) & _MASK]
        level -= _BITS
    copy = list(node)  # list-assign-tuple: the cheapest way to copy a tuple with one change
    copy[i & _MASK] = value
    new = tuple(copy)
    for parent in reversed(path):
        level += _BITS
        copy = list(parent)
        copy[(i >> level) & _MASK] = new
        new = tuple(copy)
    return new


def _path(level: int, value: Any) -> tuple[Any, ...]:
    return (value,) if level == 0 else (_path(level - _BITS, value),)


def _push(node: tuple[Any, ...], level: int, i: int, value: Any) -> tuple[Any, ...]:
    if level == 0:
        return (*node, value)
    j = (i >> level) & _MASK
    if j < len(node):
        return (*node[:j], _push(node[j], level - _BITS, i, value))
    return (*node, _path(level - _BITS, value))


class KeyedRows(Sequence[T], Generic[T]):
    """An immutable sequence of rows with O(log n) replace, append and lookup by key."""

    __slots__ = ("_index", "_key", "_len", "_root", "_shift")

    def __init__(
        self,
        root: tuple[Any, ...],
        shift: int,
        length: int,
        index: _Index,
        key: Callable[[T], str],
    ) -> None:
        self._root = root
        self._shift = shift
        self._len = length
        self._index = index
        self._key = key

    @classmethod
    def from_rows(cls, rows: Iterable[T], key: Callable[[T], str]) -> KeyedRows[T]:
        """The rows of ``rows``, in order; ``key`` gives a row's key (e.g. its agent id)."""
        items = list(rows)
        level_nodes: list[tuple[Any, ...]] = [
            tuple(items[i : i + _WIDTH]) for i in range(0, len(items), _WIDTH)
        ] or [()]
        shift = 0
        while len(level_nodes) > 1:
            level_nodes = [
                tuple(level_nodes[i : i + _WIDTH]) for i in range(0, len(level_nodes), _WIDTH)
            ]
            shift += _BITS
        return cls(level_nodes[0], shift, len(items), _Index([key(r) for r in items]), key)

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> T: ...

    @overload
    def __getitem__(self, i: slice) -> list[T]: ...

    def __getitem__(self, i: int | slice) -> T | list[T]:
        if isinstance(i, slice):
            return list(self)[i]
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError("row index out of range")
        node = self._root
        level = self._shift
        while level > 0:
            node = node[(i >> level) & _MASK]
            level -= _BITS
        row: T = node[i & _MASK]
        return row

    def _leaves(self) -> Iterator[tuple[Any, ...]]:
        stack: list[tuple[tuple[Any, ...], int]] = [(self._root, self._shift)]
        while stack:
            node, level = stack.pop()
            if level == 0:
                yield node
            else:
                stack.extend((child, level - _BITS) for child in reversed(node))

    def __iter__(self) -> Iterator[T]:
        for leaf in self._leaves():
            yield from leaf

    def position(self, key: str) -> int | None:
        """The position of the (first) row with ``key``, or None: O(1)."""
        p = self._index.positions.get(key)
        return p if p is not None and p < self._len else None

    def get(self, key: str) -> T | None:
        """The (first) row with ``key``, or None."""
        p = self.position(key)
        return None if p is None else self[p]

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if isinstance(other, KeyedRows):
            if self._root is other._root and self._len == other._len:
                return True
        elif not isinstance(other, (list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking sequence semantics, as list

    def __repr__(self) -> str:
        return repr(list(self))

    # -- new versions -----------------------------------------------------------------------------

    def replace(self, i: int, row: T) -> KeyedRows[T]:
        """A new version with row ``i`` replaced by ``row`` (same key): O(log n)."""
        if not 0 <= i < self._len:
            raise IndexError("row index out of range")
        return KeyedRows(
            _assoc(self._root, self._shift, i, row), self._shift, self._len, self._index, self._key
        )

    def append(self, row: T) -> KeyedRows[T]:
        """A new version with ``row`` added at the end: O(log n)."""
        n = self._len
        if n == 1 << (self._shift + _BITS):  # full: one level more
            root: tuple[Any, ...] = (self._root, _path(self._shift, row))
            shift = self._shift + _BITS
        else:
            root, shift = _push(self._root, self._shift, n, row), self._shift
        key = self._key(row)
        index = self._index
        claims = index.claims
        if len(claims) == n:
            claims.append(key)  # atomic: of two appends racing for position n, one lands there
            won = claims[n] is key
        else:
            won = False  # this version is not the tip of its lineage any more
        if won:
            index.positions.setdefault(key, n)
        else:  # a branch: its own index
            index = _Index([*(self._key(r) for r in self), key])
        return KeyedRows(root, shift, n + 1, index, self._key)

    def extend(self, rows: Iterable[T]) -> KeyedRows[T]:
        """A new version with ``rows`` added at the end (rebuilt: O(n), for bulk additions)."""
        return KeyedRows.from_rows([*self, *rows], self._key)

    def map_rows(self, change: Callable[[T], T]) -> KeyedRows[T]:
        """A new version with ``change`` applied to every row (keys unchanged): O(n)."""
        return KeyedRows.from_rows((change(r) for r in self), self._key)
