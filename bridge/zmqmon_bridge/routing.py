"""Who wants what, per delivery mode — the bridge's routing tables, sans I/O.

A connection's subscription (:class:`~zmqmon_bridge.protocol.Subscription`) is held in one *lane*,
its delivery mode (``log`` or ``state``). For each lane :class:`Routes` keeps the indexes the
fan-out reads per event (execution id → holders, workflow id → holders, topic prefix → holders,
the last through :class:`~zmqmon.core.topics.TopicIndex`, so no event scans every prefix), and
refcounts of what must be held upstream:

* the lane's repair core filters — a topic prefix (an execution ``X`` is ``exec/X/``) or a workflow;
* the SUB socket's prefixes, shared by both lanes.

:meth:`Routes.add` and :meth:`Routes.remove` say which of those became needed or unneeded; the
hub applies that to the cores and the socket. Nothing here touches either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from zmqmon.core.delivery import MODES, Mode
from zmqmon.core.topics import TopicIndex
from zmqmon_bridge.protocol import Subscription

__all__ = ["Change", "Routes"]

H = TypeVar("H")


@dataclass(frozen=True, slots=True)
class Change:
    """What a subscription change means upstream (None: nothing to do there)."""

    lane_filter: tuple[str, str] | None = None  # ("topic", prefix) or ("workflow", id)
    upstream_prefix: str | None = None


@dataclass
class _Lane(Generic[H]):
    by_execution: dict[str, set[H]] = field(default_factory=dict)
    by_workflow: dict[str, set[H]] = field(default_factory=dict)
    by_topic: TopicIndex[set[H]] = field(default_factory=TopicIndex)
    filters: dict[tuple[str, str], int] = field(default_factory=dict)
    members: dict[H, int] = field(default_factory=dict)  # holder → subscriptions in this lane


def _filter(sub: Subscription) -> tuple[str, str]:
    return ("workflow", sub.value) if sub.kind == "workflow" else ("topic", sub.upstream_prefix)


class Routes(Generic[H]):
    """Holders of subscriptions, per lane, and the refcounts of what they need upstream."""

    def __init__(self) -> None:
        self.lanes: dict[Mode, _Lane[H]] = {mode: _Lane() for mode in MODES}
        self._upstream: dict[str, int] = {}

    @property
    def upstream_prefixes(self) -> dict[str, int]:
        """SUB prefix → how many subscriptions need it."""
        return dict(self._upstream)

    def _table(self, lane: _Lane[H], sub: Subscription) -> dict[str, set[H]] | None:
        if sub.kind == "execution":
            return lane.by_execution
        if sub.kind == "workflow":
            return lane.by_workflow
        return None

    def add(self, holder: H, sub: Subscription, mode: Mode) -> Change:
        """Register a subscription; what became needed upstream."""
        lane = self.lanes[mode]
        table = self._table(lane, sub)
        if table is not None:
            holders = table.setdefault(sub.value, set())
        else:
            got = lane.by_topic.get(sub.value)
            holders = got if got is not None else set()
            if got is None:
                lane.by_topic.set(sub.value, holders)
        if holder in holders:
            return Change()
        holders.add(holder)
        lane.members[holder] = lane.members.get(holder, 0) + 1
        key = _filter(sub)
        count = lane.filters.get(key, 0)
        lane.filters[key] = count + 1
        prefix = sub.upstream_prefix
        held = self._upstream.get(prefix, 0)
        self._upstream[prefix] = held + 1
        return Change(key if count == 0 else None, prefix if held == 0 else None)

    def remove(self, holder: H, sub: Subscription, mode: Mode) -> Change:
        """Undo :meth:`add`; what became unneeded upstream."""
        lane = self.lanes[mode]
        table = self._table(lane, sub)
        holders = table.get(sub.value) if table is not None else lane.by_topic.get(sub.value)
        if holders is None or holder not in holders:
            return Change()
        holders.discard(holder)
        left = lane.members[holder] - 1
        if left:
            lane.members[holder] = left
        else:
            del lane.members[holder]
        if not holders:
            if table is not None:
                del table[sub.value]
            else:
                lane.by_topic.remove(sub.value)
        key = _filter(sub)
        count = lane.filters[key] - 1
        if count:
            lane.filters[key] = count
        else:
            del lane.filters[key]
        prefix = sub.upstream_prefix
        held = self._upstream[prefix] - 1
        if held:
            self._upstream[prefix] = held
        else:
            del self._upstream[prefix]
        return Change(key if not count else None, prefix if not held else None)

    def targets(
        self, mode: Mode, execution_id: str, workflow_id: str | None, event_type: str | None
    ) -> tuple[set[H], set[H]]:
        """Who gets an item of an execution in a lane: (holders of the execution itself, every
        other holder whose workflow or topic selects it). ``event_type`` None (a snapshot):
        every topic that selects any type of it."""
        lane = self.lanes[mode]
        own = lane.by_execution.get(execution_id) or set()
        groups: list[set[H]] = []
        if workflow_id is not None:
            holders = lane.by_workflow.get(workflow_id)
            if holders:
                groups.append(holders)
        if len(lane.by_topic):
            if event_type is None:
                groups.extend(lane.by_topic.match_any(execution_id))
            else:
                groups.extend(lane.by_topic.match(execution_id, event_type))
        if not groups:
            return own, set()
        others = groups[0] if len(groups) == 1 else set().union(*groups)
        return own, others - own if own else others

    def members(self, mode: Mode) -> dict[H, int]:
        """Everyone holding anything in a lane (→ how many subscriptions there)."""
        return self.lanes[mode].members
