"""``zmqmon.records``: events and states for analysis, from one call, with pandas optional.

::

    rows = zmqmon.records(execution)                   # one dict per event
    zmqmon.records(execution, "agents")                # one per agent
    zmqmon.records(subscriber, "executions")           # one per execution it follows
    zmqmon.records(run, frame=True)                    # a pandas.DataFrame (needs pandas)

The columns are those of :mod:`zmqmon.core.records`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from zmqmon.core.events import parse_event
from zmqmon.core.records import (
    EVENT_COLUMNS,
    agent_records,
    event_records,
    execution_records,
)
from zmqmon.core.state import ExecutionState, replay

__all__ = ["records"]

Kind = Literal["events", "agents", "executions"]


def _events_of(source: Any, state: str | None) -> list[Any]:
    if isinstance(source, str):  # an execution id: read from the state service
        from zmqmon.core import calls
        from zmqmon.shells.client import StateClient

        out: list[Any] = []
        with StateClient(*([state] if state else [])) as client:
            while True:
                page, last = client.call(calls.events_raw(source, len(out), 1000))
                out.extend(page)
                if not page or len(out) >= last:
                    return out
    events = getattr(source, "events", None)
    if events is not None and not callable(events):
        return list(events)  # an ExecutionHandle, a tracked Run
    if isinstance(source, Iterable) and not isinstance(source, (Mapping, ExecutionState)):
        return list(source)
    raise TypeError(f"cannot read events from {type(source).__name__}")


def _states_of(source: Any, state: str | None) -> list[ExecutionState]:
    if isinstance(source, ExecutionState):
        return [source]
    states = getattr(source, "states", None)  # a Subscriber: every execution it follows
    if states is not None:
        held = states() if callable(states) else states
        return list(held.values() if isinstance(held, Mapping) else held)
    if isinstance(source, str) or hasattr(source, "events"):
        st = replay(parse_event(e) for e in _events_of(source, state))
        return [] if st is None else [st]
    items = list(source)
    if all(isinstance(s, ExecutionState) for s in items):
        return items
    st = replay(parse_event(e) if isinstance(e, Mapping) else e for e in items)  # events
    return [] if st is None else [st]


def records(
    source: Any,
    kind: Kind = "events",
    *,
    frame: bool = False,
    state: str | None = None,
) -> Any:
    """Rows of ``source`` as dicts (``frame=True``: a ``pandas.DataFrame``).

    ``source``: an ``ExecutionHandle``, a tracked run, a ``Subscriber`` (its states), an
    ``ExecutionState`` or a list of them, a list of events (wire dicts or ``Event`` models), or
    an execution id (read from the state service ``state``, default the usual one).
    ``kind``: ``"events"`` (one row per event), ``"agents"`` (per agent), ``"executions"``.
    """
    if kind == "events":
        rows = event_records(_events_of(source, state))
        columns: tuple[str, ...] | None = EVENT_COLUMNS
    elif kind == "agents":
        rows, columns = agent_records(_states_of(source, state)), None
    elif kind == "executions":
        rows, columns = execution_records(_states_of(source, state)), None
    else:
        raise ValueError(f"kind must be events, agents or executions, got {kind!r}")
    if not frame:
        return rows
    try:
        import pandas
    except ImportError as exc:
        raise ImportError("records(..., frame=True) needs pandas: pip install pandas") from exc
    return pandas.DataFrame.from_records(rows, columns=columns if not rows else None)
