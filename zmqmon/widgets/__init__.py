"""Notebook faces: ipywidgets monitors fed over ZeroMQ by the subscriber and the one reducer.

``zmqmon.monitor(target)`` is the entry point:

* an ``ExecutionHandle`` (from :class:`zmqmon.Executor` or a ``Server``) → :class:`ExecutionMonitor`
  on the endpoints it carries;
* an execution id (``str``) → :class:`ExecutionMonitor` on ``events``/``state`` (default: the
  ``ZMQMON_EVENTS``/``ZMQMON_STATE`` environment or the loopback defaults);
* nothing, a ``{"events": …, "state": …}`` mapping, or anything with ``endpoints`` (an
  ``Executor``, a ``Server``) → :class:`ExecutionsMonitor`, the live list of executions.

Each monitor reads the event stream in a background thread, so it stays live while a cell blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zmqmon.widgets.executions import ExecutionsMonitor
from zmqmon.widgets.monitor import ExecutionMonitor

__all__ = ["ExecutionMonitor", "ExecutionsMonitor", "display_handle", "monitor"]


def _endpoints_of(target: Any) -> Mapping[str, str] | None:
    if isinstance(target, Mapping):
        return target
    endpoints = getattr(target, "endpoints", None)
    if isinstance(endpoints, Mapping):
        return endpoints
    return None


def monitor(
    target: Any = None,
    *,
    events: str | None = None,
    state: str | None = None,
    **options: Any,
) -> ExecutionMonitor | ExecutionsMonitor:
    """A live monitor of one execution, or of every execution of a service (see module doc).

    Explicit ``events``/``state`` win over the endpoints a target carries. ``options`` go to the
    monitor (``interval``, ``log_size``, ``limit``, ``timeout`` …).
    """
    carried = _endpoints_of(target) if not isinstance(target, str) else None
    if carried is not None:
        events = events or carried.get("events")
        state = state or carried.get("state")
    if isinstance(target, str):
        return ExecutionMonitor(target, events=events, state=state, **options)
    execution_id = getattr(target, "id", None)
    if isinstance(execution_id, str) and not isinstance(target, Mapping):
        if carried is None and events is None and state is None:
            raise ValueError(
                f"{target!r} carries no endpoints (a bare engine publishes nowhere): "
                "pass events= and state="
            )
        return ExecutionMonitor(execution_id, events=events, state=state, **options)
    if target is None or carried is not None:
        return ExecutionsMonitor(events=events, state=state, **options)
    raise TypeError(
        "monitor() takes an ExecutionHandle, an execution id, an endpoints mapping, "
        f"an Executor/Server or nothing; got {type(target).__name__}"
    )


def display_handle(handle: Any) -> None:
    """Display an ``ExecutionHandle`` as its live monitor (the handle's ``_ipython_display_``)."""
    from IPython.display import display

    display(monitor(handle))  # type: ignore[no-untyped-call]
