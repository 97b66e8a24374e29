"""A tracked run (:class:`Run`) and its agents (:class:`~zmqmon.tracking.agent.TrackedAgent`):
any Python code as an execution, with the contract's events.

The events are built here and handed to a :class:`~zmqmon.tracking.reporter.Reporter`, which
sends them to a state service in the background; the service numbers, stores and publishes them
like its own. Nothing here waits on the network or raises into the watched code: what goes wrong
in reporting is logged and counted (:attr:`Run.dropped`), never thrown.

* ``execution:started`` when the run is created; ``execution:completed`` when its ``with`` block
  (or :meth:`Run.finish`) ends normally, ``execution:failed`` when an exception leaves it — the
  exception is re-raised.
* ``agent:started`` when an agent's block is entered (or its decorated function called, or its
  ``iter``/``progress`` first used); ``agent:completed`` when it ends, ``agent:failed`` with the
  exception's class name as ``errorType`` when an exception leaves it (re-raised). An agent still
  running when the run completes is completed with it.
* ``agent:progress`` from :meth:`TrackedAgent.progress` and :meth:`TrackedAgent.iter`, coalesced
  (at most one event per ``progress_interval`` per agent, the latest value) like ``ctx.progress``;
  ``execution:progress`` is the mean of the agents' progress (declare them with ``agents=`` for
  a mean that does not move back when a new agent appears).

Agents may run in several threads at once. The current run and agent (of this thread or task)
are what :mod:`zmqmon.tracking.tqdm` reports tqdm's bars to.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zmqmon.core.events import format_timestamp
from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.results import fit
from zmqmon.tracking.agent import TrackedAgent, current_agent, describe, ms
from zmqmon.tracking.reporter import Reporter

__all__ = ["Run", "TrackedAgent", "current_agent", "current_run"]

log = logging.getLogger("zmqmon.track")

_OPEN_WAIT = 5.0  # seconds a read or a display waits for the service to have a new run
_RUN: contextvars.ContextVar[Run | None] = contextvars.ContextVar("zmqmon_run", default=None)
_active: list[Run] = []  # runs not finished, oldest first (threads without a context use these)
_active_lock = threading.Lock()


def current_run() -> Run | None:
    """The run of this thread or task (its innermost ``with``), else the newest unfinished one."""
    run = _RUN.get()
    if run is not None and not run.finished:
        return run
    with _active_lock:
        return _active[-1] if _active else None


def _now() -> str:
    return format_timestamp(time.time())


class Run:
    """One tracked execution: create it with :func:`zmqmon.track` (see :mod:`zmqmon.tracking`).

    ``endpoint`` is the state service the events go to; ``events_endpoint`` its event stream,
    when known (to watch the run live: ``zmqmon.monitor(run)``, or the notebook display).
    """

    def __init__(
        self,
        name: str,
        endpoint: str,
        *,
        events_endpoint: str | None = None,
        user_id: str | None = None,
        agents: Sequence[str] | Mapping[str, str] = (),
        workflow_id: str | None = None,
        progress_interval: float = 0.05,
        capacity: int = 10_000,
    ) -> None:
        self.name = name
        names = dict(agents) if isinstance(agents, Mapping) else {a: a for a in agents}
        self.execution_id = str(uuid.uuid4())
        self.workflow_id = workflow_id or "track-" + hashlib.sha256(name.encode()).hexdigest()[:12]
        self.progress_interval = progress_interval
        self.state_endpoint = endpoint
        self._events_endpoint = events_endpoint
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._declared = list(names)
        self._progress: dict[str, int] = dict.fromkeys(self._declared, 0)
        self._open: dict[str, TrackedAgent] = {}
        self._results: dict[str, Any] = {}
        self._failure: tuple[BaseException, str] | None = None
        self._t0 = time.monotonic()
        self.finished = False
        self._token: contextvars.Token[Run | None] | None = None
        #: called with the run when it finishes (the tqdm support lets go of tqdm)
        self._finish_hooks: list[Callable[[Run], None]] = []
        self._reporter = Reporter(endpoint, self.execution_id, self.workflow_id, capacity=capacity)
        self._exec_coalescer = ProgressCoalescer(
            self._send_exec_progress, interval=progress_interval, clock=time.monotonic
        )
        self._emit(
            "execution:started",
            {
                "workflowName": name,
                "agentCount": len(self._declared),
                "userId": user_id,
                "agents": [
                    {"agentId": a, "agentName": names[a], "dependsOn": []} for a in self._declared
                ],
            },
        )
        with _active_lock:
            _active.append(self)

    # -- the public face --------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The execution id (as an ``ExecutionHandle``'s)."""
        return self.execution_id

    @property
    def endpoints(self) -> dict[str, str] | None:
        """``{"events", "state"}`` to watch this run from, once the event stream is known."""
        events = self._events_endpoint or self._reporter.events_endpoint
        return None if events is None else {"events": events, "state": self.state_endpoint}

    @property
    def dropped(self) -> int:
        """Events that did not and will not reach the service (buffer full, or refused)."""
        return self._reporter.dropped

    @property
    def cancelled(self) -> bool:
        """True once the execution was cancelled (e.g. from the dashboard) or given up on by the
        service: further events are not sent. The code is not interrupted; look at this (or call
        :meth:`check_cancelled`) to stop early."""
        return self._reporter.closed

    def check_cancelled(self) -> None:
        """Raise :class:`~zmqmon.errors.ExecutionCancelledError` if :attr:`cancelled`."""
        if self.cancelled:
            from zmqmon.errors import ExecutionCancelledError

            raise ExecutionCancelledError(f"execution {self.execution_id} was cancelled")

    def agent(self, agent_id: str, *, name: str | None = None) -> TrackedAgent:
        """An agent of this run (``agentId`` ``agent_id``; ``name`` shown, default the id): use
        it as ``with run.agent(...) as a:``, as a decorator, or through ``a.iter``."""
        return TrackedAgent(self, agent_id, name)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the service has every event (once the run finished); False on timeout."""
        return self._reporter.flush(timeout)

    def finish(self, exc: BaseException | None = None) -> None:
        """End the run: ``execution:completed``, or ``execution:failed`` for ``exc`` (once)."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
            running = list(self._open.values())
        self._forget()
        duration = ms(time.monotonic() - self._t0)
        if exc is None:
            for agent in running:  # the code ended well: so did what it left open
                agent.complete()
            self._exec_coalescer.flush()
            data = fit({"durationMs": duration, "results": dict(self._results)})
            self._emit_terminal("execution:completed", data)
        else:
            failure = self._failure
            agent_id = failure[1] if failure is not None and failure[0] is exc else None
            message = describe(exc)
            self._emit_terminal(
                "execution:failed",
                {
                    "error": f"agent {agent_id!r} failed: {message}" if agent_id else message,
                    "errorType": type(exc).__name__,
                    "agentId": agent_id,
                    "durationMs": duration,
                },
            )

    def _end_at_exit(self) -> None:
        """The process exits with this run open (no ``with``, no ``finish``): cancelled."""
        with self._lock:
            if self.finished:
                return
            self.finished = True
        self._forget()
        self._emit_terminal(
            "execution:cancelled", {"reason": "the process exited before the run finished"}
        )

    def _forget(self) -> None:
        with _active_lock:
            if self in _active:
                _active.remove(self)
        for hook in self._finish_hooks:
            try:
                hook(self)
            except Exception:  # pragma: no cover - a hook's fault is not the program's
                log.exception("zmqmon.track: a finish hook failed")

    def __enter__(self) -> Run:
        self._token = _RUN.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _RUN.reset(self._token)
            self._token = None
        self.finish(exc)  # and an exception goes on

    # -- reading back -----------------------------------------------------------------------------

    def _client(self) -> Any:
        from zmqmon.shells.client import StateClient

        # Right after the run starts the service may not have it yet: give it a moment.
        self._reporter.opened.wait(_OPEN_WAIT)
        return StateClient(self.state_endpoint)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every event of the run the service has stored so far (wire dicts, seq order)."""
        from zmqmon.core import calls

        out: list[dict[str, Any]] = []
        with self._client() as client:
            while True:
                page, last = client.call(calls.events_raw(self.execution_id, len(out), 1000))
                out.extend(page)
                if not page or len(out) >= last:
                    return out

    @property
    def state(self) -> Any:
        """The run's state (``ExecutionState``) as the service holds it."""
        with self._client() as client:
            return client.snapshot(self.execution_id)

    def __repr__(self) -> str:
        status = "finished" if self.finished else "running"
        return f"<zmqmon.track {self.name!r} {self.execution_id} {status}>"

    def _ipython_display_(self) -> None:
        # In a notebook: the live monitor, as an ExecutionHandle shows itself — once the service
        # has the execution (the monitor starts from its snapshot).
        try:
            display_handle = importlib.import_module("zmqmon.widgets").display_handle
        except (ImportError, AttributeError):
            display_handle = None
        opened = self._reporter.opened.wait(_OPEN_WAIT)
        if display_handle is None or self.endpoints is None or not opened:
            print(repr(self))
            return
        display_handle(self)

    # -- the agents' side -------------------------------------------------------------------------

    def _emit(self, event_type: str, data: dict[str, Any]) -> None:
        self._reporter.add({"type": event_type, "data": data, "timestamp": _now()})

    def _emit_terminal(self, event_type: str, data: dict[str, Any]) -> None:
        dropped = self._reporter.dropped
        if dropped:  # said where it is kept: in the execution's last event
            data["droppedEvents"] = dropped
            log.warning(
                "zmqmon.track: %d event(s) of %s were dropped (the service was away too long)",
                dropped,
                self.execution_id,
            )
        self._emit(event_type, data)
        _remember(self)

    def _claim(self, agent_id: str) -> str:
        """The id an agent starting as ``agent_id`` gets: itself, or ``id-2``, ``id-3`` …"""
        with self._lock:
            n = self._ids.get(agent_id, 0) + 1
            self._ids[agent_id] = n
            claimed = agent_id if n == 1 else f"{agent_id}-{n}"
            return claimed

    def _set_progress(self, agent_id: str, value: int) -> None:
        with self._lock:
            self._progress[agent_id] = value
            overall = sum(self._progress.values()) // max(1, len(self._progress))
            self._exec_coalescer.report(overall, agent_id)

    def _send_exec_progress(self, value: int, current: str | None) -> None:
        self._emit("execution:progress", {"progress": value, "currentAgent": current})

    def _agent_started(self, agent: TrackedAgent) -> None:
        with self._lock:
            self._open[agent.agent_id] = agent

    def _agent_done(self, agent: TrackedAgent, result: Any) -> None:
        with self._lock:
            self._open.pop(agent.agent_id, None)
            self._results[agent.agent_id] = result
        self._set_progress(agent.agent_id, 100)

    def _agent_failed(self, agent: TrackedAgent, exc: BaseException) -> None:
        with self._lock:
            self._open.pop(agent.agent_id, None)
            self._failure = (exc, agent.agent_id)


# Finished runs whose events may still be on their way: flushed at exit (see tracking.linger).
_finished: list[Run] = []


def _remember(run: Run) -> None:
    with _active_lock:
        _finished[:] = [r for r in _finished if not r._reporter.done]
        _finished.append(run)


def pending_runs() -> list[Run]:
    """Runs whose reporter has not finished sending (unfinished runs included)."""
    with _active_lock:
        return [r for r in [*_finished, *_active] if not r._reporter.done]
