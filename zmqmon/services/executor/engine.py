"""WorkflowEngine: runs workflows on an asyncio loop in a background thread, emitting events.

Each execution is an :class:`~zmqmon.services.executor.run.ExecutionRun` whose scheduler
coroutine runs on the engine's loop. Where an agent runs is the engine's *runner*, one of two:

* in-process (:class:`~zmqmon.services.executor.local.LocalRunner`, the default): async agents as
  tasks on the loop, sync agents on daemon threads (at most ``max_workers`` at once; one given up
  on — timed out, cancelled — frees its slot and cannot keep the process from exiting);
* a Dask distributed cluster (:class:`~zmqmon.services.executor.dask_runner.DaskRunner`, with
  ``dask=``): every agent a task on a worker; progress and cancellation travel a ZeroMQ channel
  between the workers and this process.

Scheduling, events, timeouts and cancellation are the engine's, the same for both.
``execution:started`` is emitted by ``submit`` itself, before it returns.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from zmqmon.core.emitter import EventEmitter
from zmqmon.core.workflow import AgentAllowList
from zmqmon.errors import WorkflowError
from zmqmon.services.executor.handle import EventHistory, ExecutionHandle
from zmqmon.services.executor.local import LocalRunner
from zmqmon.services.executor.outcomes import AgentRunner
from zmqmon.services.executor.resolve import WorkflowLike, compile_workflow
from zmqmon.services.executor.run import ExecutionRun
from zmqmon.services.executor.threads import AgentThreads

__all__ = ["WorkflowEngine"]

log = logging.getLogger(__name__)

#: how long the engine waits for its runner to connect (a Dask scheduler) at start
CONNECT_TIMEOUT = 30.0


class WorkflowEngine:
    """Runs workflows and emits their events through ``emitter``.

    At most ``max_workers`` sync agents run at once in-process (agents given up on not counted);
    ``progress_interval`` is the coalescing interval of ``agent:progress`` and
    ``execution:progress`` (seconds; 0 = every call). ``agents``: the modules a definition's
    ``uses`` may import (None: any — the engine in the user's own process; a service passes its
    ``--agents`` list). Each execution keeps its last ``max_events_in_memory`` events in memory;
    ``history`` (the service's store) reads older ones back for its handle. Without a history
    (a bare engine) it keeps two more per agent, its start and end (see ``LIFECYCLE_EVENTS`` in
    :mod:`.run`). Safe to use from any thread. ``endpoints`` (set by whoever publishes the
    events) is handed to each handle.

    ``dask``: run every agent on a Dask distributed cluster instead — a scheduler address, a
    ``distributed.Client`` or a cluster object (``LocalCluster``); ``dask_channel`` is where this
    process binds the ZeroMQ channel the workers connect to for progress and cancellation
    (default: a free loopback port), ``dask_advertise`` the address workers use to reach it
    when the bound one is not reachable from them. Raises
    :class:`~zmqmon.errors.ConfigError` if the cluster cannot be reached.
    """

    def __init__(
        self,
        emitter: EventEmitter,
        *,
        max_workers: int = 8,
        progress_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        agents: AgentAllowList | None = None,
        max_events_in_memory: int = 1000,
        history: EventHistory | None = None,
        dask: Any = None,
        dask_channel: str = "tcp://127.0.0.1:0",
        dask_advertise: str | None = None,
    ) -> None:
        if progress_interval < 0:
            raise ValueError("progress_interval must be >= 0")
        if max_events_in_memory < 1:
            raise ValueError("max_events_in_memory must be >= 1")
        self.emitter = emitter
        self.agents = agents
        self.max_events_in_memory = max_events_in_memory
        self.history = history
        self.progress_interval = progress_interval
        self.clock = clock
        self.endpoints: dict[str, str] | None = None
        self.runner: AgentRunner
        #: the in-process runner's threads (None when agents run on Dask)
        self.threads: AgentThreads | None = None
        if dask is None:
            local = LocalRunner(max_workers, clock)
            self.threads, self.runner = local.threads, local
        else:
            from zmqmon.services.executor.dask_runner import DaskRunner  # needs distributed

            self.runner = DaskRunner(dask, channel=dask_channel, advertise=dask_advertise)
        self.loop = asyncio.new_event_loop()
        self._runs: dict[str, ExecutionRun] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="zmqmon-engine", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.runner.start(), self.loop).result(CONNECT_TIMEOUT)
        except BaseException:
            self._stop_loop(5.0)
            raise

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            try:
                self.loop.run_forever()
            except BaseException:
                # Agents' BaseExceptions are caught where they run; this is the last line, so that
                # nothing that escapes one callback stops every execution (the loop goes on).
                log.exception("workflow engine: the event loop stopped on an error; restarting it")
                continue
            return  # stopped by close()

    def submit(
        self,
        workflow: WorkflowLike,
        *,
        workflow_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        execution_id: str | None = None,
    ) -> ExecutionHandle:
        """Validate and start a workflow; returns at once with its handle.

        Raises :class:`~zmqmon.errors.WorkflowError` naming the fault — before any event is
        emitted — if the workflow is invalid (see :mod:`zmqmon.services.executor.resolve`).
        ``execution:started`` has been emitted when this returns.
        """
        plan = compile_workflow(workflow, allow=self.agents)
        if inputs is not None and not isinstance(inputs, Mapping):
            raise WorkflowError(f"inputs must be an object, got {type(inputs).__name__}")
        run = ExecutionRun(
            self,
            plan,
            execution_id or str(uuid.uuid4()),
            workflow_id or f"wf-{uuid.uuid4().hex[:12]}",
            dict(inputs or {}),
            user_id,
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("the workflow engine is closed")
            if run.execution_id in self._runs:
                raise WorkflowError(f"execution id {run.execution_id!r} is already running")
            self._runs[run.execution_id] = run
        run.emit_started()
        asyncio.run_coroutine_threadsafe(run.main(), self.loop)
        return ExecutionHandle(run.record)

    def cancel(self, execution_id: str, reason: str = "cancelled") -> bool:
        """Ask an execution to stop. False if it is unknown or already finished."""
        with self._lock:
            run = self._runs.get(execution_id)
        return run is not None and run.request_cancel(reason)

    def running(self) -> list[str]:
        """Ids of the executions not finished yet."""
        with self._lock:
            return list(self._runs)

    def _forget(self, execution_id: str) -> None:
        with self._lock:
            self._runs.pop(execution_id, None)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs (reason ``executor closed``), wait for the terminal events,
        stop the loop. Sync agents that ignore cancellation are abandoned: their daemon threads
        run on until their calls return, and nothing they report is emitted."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.request_cancel("executor closed")
        deadline = time.monotonic() + timeout
        for run in runs:
            run.record.done.wait(max(0.0, deadline - time.monotonic()))
        self._stop_loop(max(1.0, deadline - time.monotonic()))

    def _stop_loop(self, timeout: float) -> None:
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self.runner.aclose(), self.loop).result(timeout)
            except Exception:
                log.exception("closing the agent runner failed")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
        self.runner.close()

    def __enter__(self) -> WorkflowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
