"""The service's side of ``report`` (``zmqmon.track``): which reported events it publishes.

Pure: the clock comes in as ``now``, and whether an execution id is already stored comes in as a
function. A :class:`ReportBook` holds the executions that reporters opened and decides, for each
``report`` request:

* **who may report**: the first report of an execution starts with ``execution:started`` and
  opens it under the reporter's secret ``key`` (kept as a SHA-256 digest). Every later report must
  carry the same key, so a reporter cannot add events to an execution it did not create — not to
  another reporter's, and not to a workflow the executor runs (those ids are stored: opening one
  again is a ``conflict``);
* **once only**: reports are numbered (``batch``); one that comes again after a lost reply is
  acknowledged without being applied twice;
* **the contract's order**: no second ``execution:started``, nothing after a terminal event;
  each event's data is checked as the contract's model for its type (``bad_request`` naming the
  field). The service numbers the accepted events (``seq``) like its own;
* **liveness**: an open execution whose reporter says nothing for ``lost_after`` seconds (a
  reporter sends an empty report every few seconds while it runs) is given up —
  :meth:`ReportBook.sweep` names it, and the service fails it with ``errorType: "ReporterLost"``;
* **bounds**: at most ``max_open`` executions open at once (``conflict`` past it), at most
  ``max_agents`` agents announced by one ``execution:started`` (as a workflow's cap); finished
  ones are remembered (to answer a repeated last report) up to ``keep_finished``.

An execution closed by someone else — cancelled through the state service, given up as lost —
answers the reporter's next report with ``closed: true`` and publishes nothing more of it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from zmqmon.core.events import TERMINAL_TYPES, build_event_dict, parse_event
from zmqmon.core.requests import ReportItem, ReportRequest
from zmqmon.errors import BadRequestError, ConflictError, NotFoundError, ProtocolError

__all__ = ["LOST", "Accepted", "ReportBook"]

#: ``errorType`` of an execution whose reporter went silent
LOST: Final = "ReporterLost"
_CHECK_TIMESTAMP: Final = "2000-01-01T00:00:00.000Z"


@dataclass
class _Open:
    key: bytes
    workflow_id: str
    batch: int
    seen: float
    finished: bool = False
    closed_outside: bool = False  # cancelled, or given up as lost: not ended by its reporter


@dataclass(frozen=True)
class Accepted:
    """What to publish for one report: ``events`` (possibly none) of ``execution_id`` under
    ``workflow_id``; ``closed``: the execution was closed by someone else (publish nothing)."""

    execution_id: str
    workflow_id: str
    events: tuple[ReportItem, ...]
    closed: bool = False


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ReportBook:
    """The executions reporters opened (see the module doc)."""

    def __init__(
        self,
        *,
        lost_after: float = 60.0,
        max_open: int = 10_000,
        keep_finished: int = 10_000,
        max_agents: int | None = 1000,
    ) -> None:
        self.lost_after = lost_after
        self.max_open = max_open
        self.max_agents = max_agents
        self.keep_finished = keep_finished
        self._open: dict[str, _Open] = {}
        self._finished: OrderedDict[str, _Open] = OrderedDict()

    @property
    def open_count(self) -> int:
        """Executions open for reports now."""
        return len(self._open)

    def is_open(self, execution_id: str) -> bool:
        """Is this an execution a reporter runs, still open?"""
        return execution_id in self._open

    def accept(self, req: ReportRequest, now: float, stored: Callable[[str], bool]) -> Accepted:
        """Decide on one report; raises the ``ServiceError`` to answer instead."""
        eid = req.execution_id
        entry = self._open.get(eid) or self._finished.get(eid)
        if entry is None:
            return self._create(req, now, stored)
        if not hmac.compare_digest(entry.key, _digest(req.key)):
            raise ConflictError(f"execution {eid!r} was opened by another reporter")
        entry.seen = now
        if req.batch <= entry.batch or entry.finished:
            # sent again (its reply was lost), or closed meanwhile: nothing more is published
            entry.batch = max(entry.batch, req.batch)
            return Accepted(eid, entry.workflow_id, (), closed=entry.closed_outside)
        events = self._check(req.events, eid, entry.workflow_id, first=False)
        entry.batch = req.batch
        if events and events[-1].type in TERMINAL_TYPES:
            self._finish(eid)
        return Accepted(eid, entry.workflow_id, events)

    def _create(self, req: ReportRequest, now: float, stored: Callable[[str], bool]) -> Accepted:
        eid = req.execution_id
        if not req.events or req.events[0].type != "execution:started":
            if stored(eid):
                raise ConflictError(f"execution {eid!r} is closed: it takes no more reports")
            raise NotFoundError(f"no execution {eid!r} open for reports (start it first)")
        if stored(eid):
            raise ConflictError(f"execution id {eid!r} is taken")
        if req.workflow_id is None:
            raise BadRequestError("the report that starts an execution must give workflowId")
        if len(self._open) >= self.max_open:
            raise ConflictError(f"{self.max_open} reported executions are open already")
        events = self._check(req.events, eid, req.workflow_id, first=True)
        self._open[eid] = _Open(_digest(req.key), req.workflow_id, req.batch, now)
        if events[-1].type in TERMINAL_TYPES:
            self._finish(eid)
        return Accepted(eid, req.workflow_id, events)

    def _check(
        self, items: list[ReportItem], eid: str, workflow_id: str, *, first: bool
    ) -> tuple[ReportItem, ...]:
        for n, item in enumerate(items):
            announced = item.data.get("agents") if item.type == "execution:started" else None
            cap = self.max_agents
            if isinstance(announced, list) and cap is not None and len(announced) > cap:
                raise BadRequestError(
                    f"events[{n}]: {len(announced)} agents announced; at most {cap} (max-agents)"
                )
            if item.type == "execution:started" and not (first and n == 0):
                raise BadRequestError(f"events[{n}]: execution:started comes once, first")
            if item.type in TERMINAL_TYPES and n != len(items) - 1:
                raise BadRequestError(f"events[{n}]: nothing may follow {item.type}")
            event = build_event_dict(item.type, eid, workflow_id, 1, _CHECK_TIMESTAMP, item.data)
            try:
                parse_event(event)
            except ProtocolError as exc:
                raise BadRequestError(f"events[{n}]: {exc}") from exc
        return tuple(items)

    def _finish(self, execution_id: str, *, outside: bool = False) -> None:
        entry = self._open.pop(execution_id, None)
        if entry is None:
            return
        entry.finished = True
        entry.closed_outside = outside
        self._finished[execution_id] = entry
        while len(self._finished) > self.keep_finished:
            self._finished.popitem(last=False)

    def close(self, execution_id: str) -> str | None:
        """Close an open execution from outside (a ``cancel``): its workflow id, or None if it
        is not open here. The reporter learns it from its next reply (``closed``)."""
        entry = self._open.get(execution_id)
        if entry is None:
            return None
        self._finish(execution_id, outside=True)
        return entry.workflow_id

    def sweep(self, now: float) -> list[tuple[str, str]]:
        """Close the executions whose reporter is silent past ``lost_after``: (id, workflow id)
        of each, for the service to fail."""
        lost = [
            (eid, e.workflow_id) for eid, e in self._open.items() if now - e.seen > self.lost_after
        ]
        for eid, _ in lost:
            self._finish(eid, outside=True)
        return lost
