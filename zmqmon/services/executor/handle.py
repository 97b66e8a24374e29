"""ExecutionHandle: what ``submit`` returns — follow, wait for, cancel one execution."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, replay
from zmqmon.errors import AgentFailedError, AgentTimeoutError, ExecutionCancelledError

__all__ = ["ExecutionHandle", "RunRecord"]


@dataclass
class RunRecord:
    """The engine's live record of one execution, shared with its handle (engine-internal)."""

    execution_id: str
    workflow_id: str
    workflow_name: str
    cancel: Callable[[str], bool]
    status: str = "pending"
    events: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    error_agent: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    endpoints: dict[str, str] | None = None


class ExecutionHandle:
    """One submitted execution.

    * ``id``, ``workflow_id``, ``status`` (live: ``pending|running|completed|failed|cancelled``);
    * ``wait(timeout=None)`` → the final :class:`~zmqmon.core.state.ExecutionState`, or raises
      the builtin ``TimeoutError`` if it is still running after ``timeout`` seconds;
      ``join(timeout=None)`` → just the final status (no replay of the events);
    * ``result`` → agent id → what each agent returned (the Python objects themselves, not their
      JSON form); waits for the end; raises :class:`~zmqmon.errors.AgentFailedError`,
      :class:`~zmqmon.errors.AgentTimeoutError` or :class:`~zmqmon.errors.ExecutionCancelledError`
      if it did not complete;
    * ``cancel(reason)`` → False if it had already finished;
    * ``events`` (every event emitted so far, wire dicts), ``state`` (the reducer's view of them),
      ``endpoints`` (the event stream and state service to watch it from, when there are some).

    In a notebook the handle displays as the live monitor (``zmqmon.widgets.display_handle``)
    when the widgets are installed, else as text.
    """

    def __init__(self, record: RunRecord) -> None:
        self._record = record

    @property
    def id(self) -> str:
        """The execution id."""
        return self._record.execution_id

    @property
    def workflow_id(self) -> str:
        """The workflow id."""
        return self._record.workflow_id

    @property
    def workflow_name(self) -> str:
        """The workflow's name."""
        return self._record.workflow_name

    @property
    def status(self) -> str:
        """``pending``, ``running``, ``completed``, ``failed`` or ``cancelled``."""
        return self._record.status

    @property
    def done(self) -> bool:
        """True once the execution has ended (its terminal event was emitted)."""
        return self._record.done.is_set()

    @property
    def endpoints(self) -> dict[str, str] | None:
        """``{"events": …, "state": …}`` to watch this execution from, or None (bare engine)."""
        return self._record.endpoints

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events emitted so far (wire dicts, seq order)."""
        return list(self._record.events)

    @property
    def state(self) -> ExecutionState:
        """The execution's state as the one reducer derives it from :attr:`events`."""
        state = replay(parse_event(e) for e in self.events)
        assert state is not None  # execution:started is emitted before submit returns
        return state

    def join(self, timeout: float | None = None) -> str:
        """Block until the execution ends; return its final status (cheaper than :meth:`wait`,
        which also folds every event into the state). Raises ``TimeoutError`` like ``wait``."""
        if not self._record.done.wait(timeout):
            raise TimeoutError(f"execution {self.id} still {self.status} after {timeout} s")
        return self._record.status

    def wait(self, timeout: float | None = None) -> ExecutionState:
        """Block until the execution ends; return its final state.

        Raises ``TimeoutError`` if it is still running after ``timeout`` seconds.
        """
        if not self._record.done.wait(timeout):
            raise TimeoutError(f"execution {self.id} still {self.status} after {timeout} s")
        return self.state

    @property
    def result(self) -> dict[str, Any]:
        """Agent id → result, once completed (waits for the end; raises if it did not complete)."""
        self._record.done.wait()
        rec = self._record
        if rec.status == "completed":
            return dict(rec.results)
        if rec.status == "cancelled":
            raise ExecutionCancelledError(rec.error or f"execution {self.id} was cancelled")
        message = rec.error or f"execution {self.id} failed"
        if rec.error_type == "AgentTimeoutError":
            raise AgentTimeoutError(message)
        raise AgentFailedError(
            message, agent_id=rec.error_agent, error_type=rec.error_type or "Exception"
        )

    def cancel(self, reason: str = "cancelled") -> bool:
        """Ask the execution to stop; False if it had already finished."""
        return self._record.cancel(reason)

    def __repr__(self) -> str:
        return (
            f"<ExecutionHandle {self.id} {self._record.workflow_name!r} {self.status}"
            f" events={len(self._record.events)}>"
        )

    def _ipython_display_(self) -> None:
        # Hook for the notebook face: zmqmon.widgets.display_handle(handle) shows the live monitor.
        display_handle: Callable[[ExecutionHandle], None] | None
        try:
            display_handle = importlib.import_module("zmqmon.widgets").display_handle
        except (ImportError, AttributeError):  # widgets not installed (the notebook extra)
            display_handle = None
        if display_handle is None or self.endpoints is None:
            print(repr(self))
            return
        display_handle(self)
