"""WorkflowEngine: runs workflows on an asyncio loop in a background thread, emitting events.

Each execution is a scheduler coroutine on the engine's loop. Agents whose dependencies are done
run concurrently: async agents as tasks on the loop, sync agents on daemon threads
(:class:`~zmqmon.services.executor.threads.AgentThreads`: at most ``max_workers`` at once, and one
the engine gave up on — timed out, cancelled — frees its slot and cannot keep the process from
exiting). Each agent,
when it ends, puts its outcome on the execution's queue; the scheduler starts the agents that became
ready (O(1) per agent: no ``asyncio.wait`` over every running task).

Ordering guarantees (contract §2): every event of an execution goes through its run lock, and the
terminal event closes the run, so nothing — not a zombie sync agent still reporting progress after a
timeout — can follow it. ``execution:started`` is emitted by ``submit`` itself, before it returns.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from zmqmon.core.emitter import EventEmitter
from zmqmon.core.workflow import AgentAllowList
from zmqmon.errors import WorkflowError
from zmqmon.services.executor.context import AgentContext
from zmqmon.services.executor.handle import EventHistory, ExecutionHandle, RunRecord
from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.resolve import Plan, WorkflowLike, compile_workflow
from zmqmon.services.executor.results import fit, to_json_safe
from zmqmon.services.executor.threads import AgentThreads

__all__ = ["WorkflowEngine"]

log = logging.getLogger(__name__)

#: how long cancelled async agents get to unwind before the terminal event goes out anyway
CANCEL_GRACE: Final = 2.0
_CANCEL: Final = object()


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _describe(exc: BaseException) -> str:
    """The message of what an agent raised; an exception whose ``str`` raises is still named."""
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return f"{type(exc).__name__} (its message could not be read)"


class _Run:
    """One execution: its scheduler, its agents' contexts, and the lock all its events pass."""

    def __init__(
        self,
        engine: WorkflowEngine,
        plan: Plan,
        execution_id: str,
        workflow_id: str,
        inputs: dict[str, Any],
        user_id: str | None,
    ) -> None:
        self.engine = engine
        self.plan = plan
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.inputs = inputs
        self.user_id = user_id
        self.specs = {a.id: a for a in plan.definition.agents}
        self.lock = threading.Lock()
        self.closed = False
        self.cancel_reason: str | None = None
        self.contexts: dict[str, AgentContext] = {}
        self.finished_agents: set[str] = set()
        self.raw_results: dict[str, Any] = {}
        self.safe_results: dict[str, Any] = {}
        # execution progress = mean of agent progresses (completed = 100), kept as a running sum
        self.agent_progress: dict[str, int] = {}
        self.progress_sum = 0
        self.exec_progress_sent = 0
        self.exec_coalescer = ProgressCoalescer(
            self._send_exec_progress_locked, interval=engine.progress_interval, clock=engine.clock
        )
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.started_at = engine.clock()
        self.record = RunRecord(
            execution_id=execution_id,
            workflow_id=workflow_id,
            workflow_name=plan.definition.name,
            cancel=lambda reason: engine.cancel(execution_id, reason),
            endpoints=engine.endpoints,
            max_events=engine.max_events_in_memory,
            history=engine.history,
            lock=self.lock,
        )

    # -- emitting ----------------------------------------------------------------------------------

    def _emit_locked(self, event_type: str, data: dict[str, Any]) -> None:
        event = self.engine.emitter.emit(event_type, self.execution_id, self.workflow_id, data)
        self.record.add(event)

    def emit(self, event_type: str, data: dict[str, Any]) -> bool:
        with self.lock:
            if self.closed:
                return False
            self._emit_locked(event_type, data)
            return True

    def finish(self, status: str, event_type: str, data: dict[str, Any]) -> None:
        """Emit the terminal event (once) and close the run."""
        with self.lock:
            if self.closed:
                return
            self._emit_locked(event_type, data)
            self.closed = True
            rec = self.record
            rec.status = status
            rec.results = dict(self.raw_results)
            if status == "failed":
                rec.error, rec.error_type = data.get("error"), data.get("errorType")
                rec.error_agent = data.get("agentId")
            elif status == "cancelled":
                rec.error = f"execution {self.execution_id} cancelled: {data.get('reason', '')}"
        for ctx in self.contexts.values():
            ctx._cancel()  # sync agents still running (timed out, ignoring cancel) may stop now
        self.engine._forget(self.execution_id)
        self.record.done.set()

    def _send_exec_progress_locked(self, value: int, current_agent: str | None) -> None:
        if value != self.exec_progress_sent:
            self.exec_progress_sent = value
            data = {"progress": value, "currentAgent": current_agent}
            self._emit_locked("execution:progress", data)

    def _set_agent_progress_locked(self, agent_id: str, value: int) -> int:
        self.progress_sum += value - self.agent_progress.get(agent_id, 0)
        self.agent_progress[agent_id] = value
        return self.progress_sum // len(self.specs)

    def _agent_sender(self, agent_id: str, agent_name: str) -> Callable[[int, str | None], None]:
        # Called at most once per interval per agent, from the agent's thread or the loop.
        def send(value: int, message: str | None) -> None:
            with self.lock:
                if self.closed or agent_id in self.finished_agents:
                    return
                self._emit_locked(
                    "agent:progress",
                    {
                        "agentId": agent_id,
                        "agentName": agent_name,
                        "progress": value,
                        "message": message,
                    },
                )
                overall = self._set_agent_progress_locked(agent_id, value)
                self.exec_coalescer.report(overall, agent_id)

        return send

    def emit_started(self) -> None:
        agents = [
            {"agentId": a.id, "agentName": a.display_name, "dependsOn": list(a.depends_on)}
            for a in self.plan.definition.agents
        ]
        self.emit(
            "execution:started",
            {
                "workflowName": self.plan.definition.name,
                "agentCount": len(agents),
                "userId": self.user_id,
                "agents": agents,
            },
        )
        self.record.status = "running"

    # -- cancelling --------------------------------------------------------------------------------

    def request_cancel(self, reason: str) -> bool:
        with self.lock:
            if self.closed:
                return False
            if self.cancel_reason is None:
                self.cancel_reason = reason
        for ctx in list(self.contexts.values()):
            ctx._cancel()  # sync agents see it at once, not after a loop hop
        self.engine.loop.call_soon_threadsafe(self.queue.put_nowait, _CANCEL)
        return True

    # -- running -----------------------------------------------------------------------------------

    async def _agent(self, agent_id: str) -> None:
        spec = self.specs[agent_id]
        name = spec.display_name
        coalescer = ProgressCoalescer(
            self._agent_sender(agent_id, name),
            interval=self.engine.progress_interval,
            clock=self.engine.clock,
        )
        ctx = AgentContext(
            agent_id=agent_id,
            agent_name=name,
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            params=spec.params,
            inputs=self.inputs,
            results={d: self.raw_results[d] for d in spec.depends_on},
            coalescer=coalescer,
        )
        if self.cancel_reason is not None:
            ctx._cancel()
        self.contexts[agent_id] = ctx
        fn = self.plan.functions[agent_id]
        self.emit("agent:started", {"agentId": agent_id, "agentName": name})
        clock = self.engine.clock
        t0 = clock()
        timeout = spec.timeout_seconds
        failure: BaseException | None = None
        try:
            async with asyncio.timeout(timeout) as scope:
                if self.plan.is_async[agent_id]:
                    result = await fn(ctx)
                else:
                    outcome = await self.engine.threads.call(
                        fn, ctx, label=f"agent {agent_id!r} of execution {self.execution_id}"
                    )
                    if not outcome.ok:
                        raise outcome.value  # here, so that it is this agent's failure
                    result = outcome.value
                if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                    result = await result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                ctx._cancel()
                raise  # the scheduler is stopping this agent
            failure = exc  # raised by the agent itself: a failure like any other
        except BaseException as exc:
            # Exception, SystemExit, KeyboardInterrupt, any BaseException: it fails this agent and
            # goes no further. Let through, it would stop the engine's loop and every execution.
            failure = exc
        if failure is not None:
            ctx._cancel()
            if scope.expired():
                error, error_type = (
                    f"agent {agent_id!r} timed out after {timeout:g} s",
                    ("AgentTimeoutError"),
                )
            else:
                error, error_type = _describe(failure), type(failure).__name__
            with self.lock:
                self.finished_agents.add(agent_id)
                if not self.closed:
                    self._emit_locked(
                        "agent:failed",
                        {
                            "agentId": agent_id,
                            "agentName": name,
                            "error": error,
                            "errorType": error_type,
                            "durationMs": _ms(clock() - t0),
                        },
                    )
            self.queue.put_nowait((agent_id, False, (error, error_type)))
            return
        duration = clock() - t0
        coalescer.flush()  # the last value before the end is always sent
        safe = to_json_safe(result)
        data = fit(
            {"agentId": agent_id, "agentName": name, "result": safe, "durationMs": _ms(duration)}
        )
        with self.lock:
            self.finished_agents.add(agent_id)
            if not self.closed:
                self._emit_locked("agent:completed", data)
                overall = self._set_agent_progress_locked(agent_id, 100)
                self.exec_coalescer.report(overall, agent_id)
                self.exec_coalescer.flush()
        self.raw_results[agent_id] = result
        self.safe_results[agent_id] = data["result"]
        self.queue.put_nowait((agent_id, True, None))

    async def main(self) -> None:
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            await self._schedule(tasks)
        except Exception as exc:  # an engine bug must still end the execution, and say why
            await self._stop(tasks)
            self.finish(
                "failed",
                "execution:failed",
                {
                    "error": f"executor error: {exc}",
                    "errorType": type(exc).__name__,
                    "agentId": None,
                    "durationMs": _ms(self.engine.clock() - self.started_at),
                },
            )

    async def _schedule(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        waiting = {a.id: set(a.depends_on) for a in self.plan.definition.agents}
        dependants: dict[str, list[str]] = {a: [] for a in waiting}
        for agent_id in self.plan.order:
            for dep in waiting[agent_id]:
                dependants[dep].append(agent_id)
        loop = self.engine.loop

        def start(agent_id: str) -> None:
            del waiting[agent_id]
            tasks[agent_id] = loop.create_task(self._agent(agent_id))

        failure: tuple[str, str, str] | None = None
        if self.cancel_reason is None:
            for agent_id in self.plan.order:
                if not waiting[agent_id]:
                    start(agent_id)
        while tasks and self.cancel_reason is None:
            item = await self.queue.get()
            if item is _CANCEL:
                break
            agent_id, ok, info = item
            tasks.pop(agent_id, None)
            if not ok:
                failure = (agent_id, *info)
                break
            for dependant in dependants[agent_id]:
                deps = waiting[dependant]
                deps.discard(agent_id)
                if not deps:
                    start(dependant)
        await self._stop(tasks)
        duration = _ms(self.engine.clock() - self.started_at)
        if failure is not None:
            agent_id, error, error_type = failure
            self.finish(
                "failed",
                "execution:failed",
                {
                    "error": f"agent {agent_id!r} failed: {error}",
                    "errorType": error_type,
                    "agentId": agent_id,
                    "durationMs": duration,
                },
            )
        elif self.cancel_reason is not None:
            self.finish("cancelled", "execution:cancelled", {"reason": self.cancel_reason})
        else:
            self.finish(
                "completed",
                "execution:completed",
                fit({"durationMs": duration, "results": self.safe_results}),
            )

    async def _stop(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Cancel the agents still running and give them a moment to unwind."""
        pending = [t for t in tasks.values() if not t.done()]
        for ctx in self.contexts.values():
            if ctx.agent_id in tasks:
                ctx._cancel()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_GRACE)


class WorkflowEngine:
    """Runs workflows and emits their events through ``emitter``.

    At most ``max_workers`` sync agents run at once (agents given up on not counted);
    ``progress_interval`` is the coalescing interval of
    ``agent:progress`` and ``execution:progress`` (seconds; 0 = every call). ``agents``: the
    modules a definition's ``uses`` may import (None: any — the engine in the user's own process;
    a service passes its ``--agents`` list). Each execution keeps its last
    ``max_events_in_memory`` events in memory; ``history`` (the service's store) reads older ones
    back for its handle. Safe to use from any thread. ``endpoints`` (set by whoever publishes the
    events) is handed to each handle.
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
        self.threads = AgentThreads(max_workers)
        self.loop = asyncio.new_event_loop()
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="zmqmon-engine", daemon=True)
        self._thread.start()

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
        run = _Run(
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
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
        self.threads.close()

    def __enter__(self) -> WorkflowEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
