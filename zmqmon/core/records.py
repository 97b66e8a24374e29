"""Events and states as flat records: one dict per row, ready for ``pandas.DataFrame`` (pure).

Three tables, the same columns whatever produced the data:

* :func:`event_records` — one row per event: ``executionId``, ``workflowId``, ``seq``, ``type``,
  ``timestamp`` (the wire string), ``time`` (an aware UTC ``datetime``), and the data fields most
  analyses want (``agentId``, ``agentName``, ``progress``, ``message``, ``durationMs``,
  ``error``, ``errorType``); the whole ``data`` stays in ``data``;
* :func:`agent_records` — one row per agent of each execution state;
* :func:`execution_records` — one row per execution state (``durationMs`` computed from its
  times when it has finished, ``agentCount``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from zmqmon.core.events import Event, event_to_dict, parse_timestamp
from zmqmon.core.state import ExecutionState

__all__ = ["EVENT_COLUMNS", "agent_records", "event_records", "execution_records"]

_DATA_COLUMNS = ("agentId", "agentName", "progress", "message", "durationMs", "error", "errorType")
#: the columns of :func:`event_records`, in order
EVENT_COLUMNS = (
    "executionId",
    "workflowId",
    "seq",
    "type",
    "timestamp",
    "time",
    *_DATA_COLUMNS,
    "data",
)


def _time(timestamp: str | None) -> datetime | None:
    if not timestamp:
        return None
    epoch = parse_timestamp(timestamp)
    return None if epoch != epoch else datetime.fromtimestamp(epoch, UTC)


def event_records(events: Iterable[Mapping[str, Any] | Event]) -> list[dict[str, Any]]:
    """One row per event (wire dicts or parsed :class:`~zmqmon.core.events.Event` models)."""
    rows = []
    for event in events:
        e = event if isinstance(event, Mapping) else event_to_dict(event)
        data = e.get("data") or {}
        row = {
            "executionId": e.get("executionId"),
            "workflowId": e.get("workflowId"),
            "seq": e.get("seq"),
            "type": e.get("type"),
            "timestamp": e.get("timestamp"),
            "time": _time(e.get("timestamp")),
        }
        for column in _DATA_COLUMNS:
            row[column] = data.get(column)
        row["data"] = data
        rows.append(row)
    return rows


def _duration_ms(started: str | None, finished: str | None) -> int | None:
    if not started or not finished:
        return None
    a, b = parse_timestamp(started), parse_timestamp(finished)
    return None if a != a or b != b else max(0, round((b - a) * 1000))


def execution_records(states: Iterable[ExecutionState]) -> list[dict[str, Any]]:
    """One row per execution."""
    return [
        {
            "executionId": s.execution_id,
            "workflowId": s.workflow_id,
            "workflowName": s.workflow_name,
            "userId": s.user_id,
            "status": s.status,
            "progress": s.progress,
            "startedAt": _time(s.started_at),
            "finishedAt": _time(s.finished_at),
            "durationMs": _duration_ms(s.started_at, s.finished_at),
            "error": s.error,
            "lastSeq": s.last_seq,
            "agentCount": len(s.agents),
        }
        for s in states
    ]


def agent_records(states: Iterable[ExecutionState]) -> list[dict[str, Any]]:
    """One row per agent of each execution."""
    return [
        {
            "executionId": s.execution_id,
            "workflowName": s.workflow_name,
            "agentId": a.agent_id,
            "agentName": a.agent_name,
            "status": a.status,
            "progress": a.progress,
            "startedAt": _time(a.started_at),
            "finishedAt": _time(a.finished_at),
            "durationMs": a.duration_ms,
            "error": a.error,
        }
        for s in states
        for a in s.agents
    ]
