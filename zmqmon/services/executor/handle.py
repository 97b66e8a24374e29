"""ExecutionHandle: what ``submit`` returns — follow, wait for, cancel one execution."""

from __future__ import annotations

import collections
import contextlib
import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, apply_event, replay
from zmqmon.errors import (
    AgentFailedError,
    AgentTimeoutError,
    ExecutionCancelledError,
    ProtocolError,
)

__all__ = ["EventHistory", "ExecutionHandle", "RunRecord"]


class EventHistory(Protocol):
    """Where events no longer held in memory are read back from (the service's store)."""

    def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Events with seq > ``after_seq``, in order, at most ``limit``."""
        ...


@dataclass
class RunRecord:
    """The engine's live record of one execution, shared with its handle (engine-internal).

    ``events`` holds the last ``max_events`` events only (each ~0.75 KB: an execution's memory
    must not grow with its length); ``evicted`` counts the older ones, which ``history`` (the
    store) reads back. Without a history (a bare engine), ``base`` is the state they added up to.
    ``lock`` is the run's lock, which every event passes.
    """

    execution_id: str
    workflow_id: str
    workflow_name: str
    cancel: Callable[[str], bool]
    status: str = "pending"
    max_events: int = 1000
    events: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    evicted: int = 0
    base: ExecutionState | None = None
    history: EventHistory | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    error_agent: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    endpoints: dict[str, str] | None = None

    def add(self, event: dict[str, Any]) -> None:
        """Keep one more event (the caller holds :attr:`lock`); past the cap, drop the oldest."""
        if len(self.events) >= self.max_events:
            old = self.events.popleft()
            self.evicted += 1
            if self.history is None:  # nowhere to read it back: keep what it did to the state
                # (as in the store: an event the reducer cannot read changes no state)
                with contextlib.suppress(ProtocolError):
                    self.base = apply_event(self.base, parse_event(old))
        self.events.append(event)


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
    * ``events`` (every event emitted so far, wire dicts), ``events_after(seq)`` (those after a
      seq), ``state`` (the reducer's view of them), ``endpoints`` (the event stream and state
      service to watch it from, when there are some). The engine keeps only an execution's last
      ``max_events_in_memory`` events in memory; older ones are read back from the service's
      store. A bare :class:`WorkflowEngine` has no store: it keeps two more per agent (each
      agent's start and end), and ``events`` starts at the oldest event still kept (``state`` is
      exact all the same).

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
        return self.events_after(0)

    def events_after(self, seq: int) -> list[dict[str, Any]]:
        """The events emitted so far with a seq above ``seq``, in order (cheap to poll with)."""
        rec = self._record
        with rec.lock:
            kept = list(rec.events)
            evicted = rec.evicted
        newer = [e for e in kept if e["seq"] > seq]
        if not evicted or rec.history is None or (kept and kept[0]["seq"] <= seq + 1):
            return newer
        first = kept[0]["seq"] if kept else seq + 1
        # Everything published is in the store (read-your-publishes), so this range is complete.
        older = rec.history.events(self.id, seq, max(0, first - 1 - seq))
        return older + newer

    @property
    def state(self) -> ExecutionState:
        """The execution's state as the one reducer derives it from its events."""
        rec = self._record
        if rec.history is None:
            with rec.lock:
                base, kept = rec.base, list(rec.events)
            state = replay((parse_event(e) for e in kept), base)
        else:
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
            f" events={self._record.evicted + len(self._record.events)}>"
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
