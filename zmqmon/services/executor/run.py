"""One execution on the engine's loop: its scheduler, its events, and the lock they all pass.

The scheduler starts the agents :class:`~zmqmon.core.workflow.ReadySet` says are ready, each as a
task that asks the engine's runner (in-process or Dask) to run it and puts an
:class:`~zmqmon.services.executor.outcomes.AgentEnded` on the run's queue; a cancel puts a
:class:`~zmqmon.services.executor.outcomes.CancelRequested`. Timeouts wrap the runner's call, so
they mean the same wherever the agent runs.

Ordering guarantees (contract §2): every event of an execution is built by the emitter's typed
``emit_*`` methods under the run's lock, and the terminal event closes the run, so nothing — not
a zombie sync agent still reporting progress after a timeout, not a late progress message from a
worker — can follow it or an agent's own end.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from zmqmon.core.emitter import EventEmitter
from zmqmon.core.workflow import ReadySet
from zmqmon.services.executor.handle import RunRecord
from zmqmon.services.executor.outcomes import (
    AgentCall,
    AgentEnded,
    AgentOutcome,
    CancelRequested,
    CancelSignal,
    Completed,
    Failed,
    Report,
    RunMessage,
    ms,
)
from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.resolve import Plan
from zmqmon.services.executor.results import fit, to_json_safe

if TYPE_CHECKING:
    from zmqmon.services.executor.engine import WorkflowEngine

__all__ = ["CANCEL_GRACE", "LIFECYCLE_EVENTS", "ExecutionRun"]

#: how long cancelled agents get to unwind before the terminal event goes out anyway
CANCEL_GRACE: Final = 2.0
#: events a bare engine (no store) keeps in memory per agent on top of
#: ``max_events_in_memory``: each agent's start and end. Without a store to read evicted events
#: back from, it folds each into the handle's state as it evicts it, on the loop (parse +
#: reduce, ~20 µs each: the larger part of a 1,000-agent fan-out's overhead). Its bound then
#: follows the workflow's size (in memory several times over already: definition, plan, state,
#: results), never its length (progress). With a store, evicting costs nothing: no allowance.
LIFECYCLE_EVENTS: Final = 2

Build = Callable[[EventEmitter], dict[str, Any]]


def _truncated(data: dict[str, Any]) -> dict[str, Any]:
    return {"truncated": True} if data.get("truncated") else {}


class ExecutionRun:
    """One execution: see the module docstring."""

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
        self.ready = ReadySet(plan.definition, plan.order)
        self.lock = threading.Lock()
        self.closed = False
        self.cancel_reason: str | None = None
        self.signals: dict[str, CancelSignal] = {}
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
        self.queue: asyncio.Queue[RunMessage] = asyncio.Queue()
        self.started_at = engine.clock()
        self.record = RunRecord(
            execution_id=execution_id,
            workflow_id=workflow_id,
            workflow_name=plan.definition.name,
            cancel=lambda reason: engine.cancel(execution_id, reason),
            endpoints=engine.endpoints,
            max_events=engine.max_events_in_memory
            + (LIFECYCLE_EVENTS * len(self.specs) if engine.history is None else 0),
            history=engine.history,
            lock=self.lock,
        )

    # -- emitting ----------------------------------------------------------------------------------

    def _emit_locked(self, build: Build) -> None:
        self.record.add(build(self.engine.emitter))

    def _emit(self, build: Build) -> None:
        with self.lock:
            if not self.closed:
                self._emit_locked(build)

    def _finish(self, status: str, build: Build, error: str | None = None, **fields: Any) -> None:
        """Emit the terminal event (once) and close the run."""
        with self.lock:
            if self.closed:
                return
            self._emit_locked(build)
            self.closed = True
            rec = self.record
            rec.status = status
            rec.results = dict(self.raw_results)
            rec.error = error
            rec.error_type = fields.get("error_type")
            rec.error_agent = fields.get("agent_id")
        for signal in self.signals.values():
            signal.set()  # agents still running (timed out, ignoring cancel) may stop now
        self.engine._forget(self.execution_id)
        self.record.done.set()

    def _send_exec_progress_locked(self, value: int, current_agent: str | None) -> None:
        if value != self.exec_progress_sent:
            self.exec_progress_sent = value
            self._emit_locked(
                lambda em: em.emit_execution_progress(
                    self.execution_id, self.workflow_id, value, current_agent
                )
            )

    def _set_agent_progress_locked(self, agent_id: str, value: int) -> int:
        self.progress_sum += value - self.agent_progress.get(agent_id, 0)
        self.agent_progress[agent_id] = value
        return self.progress_sum // len(self.specs)

    def _reporter(self, agent_id: str, agent_name: str) -> Report:
        # Called at most once per interval per agent, from the agent's thread, the loop, or the
        # Dask channel's reader; dropped once the agent or the execution has ended.
        def report(value: int, message: str | None) -> None:
            with self.lock:
                if self.closed or agent_id in self.finished_agents:
                    return
                self._emit_locked(
                    lambda em: em.emit_agent_progress(
                        self.execution_id, self.workflow_id, agent_id, agent_name, value, message
                    )
                )
                overall = self._set_agent_progress_locked(agent_id, value)
                self.exec_coalescer.report(overall, agent_id)

        return report

    def emit_started(self) -> None:
        """``execution:started``, announcing every agent."""
        agents: list[Mapping[str, Any]] = [
            {"agentId": a.id, "agentName": a.display_name, "dependsOn": list(a.depends_on)}
            for a in self.plan.definition.agents
        ]
        self._emit(
            lambda em: em.emit_execution_started(
                self.execution_id,
                self.workflow_id,
                workflow_name=self.plan.definition.name,
                agent_count=len(agents),
                user_id=self.user_id,
                agents=agents,
            )
        )
        self.record.status = "running"

    # -- cancelling --------------------------------------------------------------------------------

    def request_cancel(self, reason: str) -> bool:
        """Stop the execution (from any thread); False if it already ended."""
        with self.lock:
            if self.closed:
                return False
            if self.cancel_reason is None:
                self.cancel_reason = reason
        for signal in list(self.signals.values()):
            signal.set()  # sync agents see it at once, not after a loop hop
        self.engine.loop.call_soon_threadsafe(self.queue.put_nowait, CancelRequested())
        return True

    # -- running -----------------------------------------------------------------------------------

    async def _agent(self, agent_id: str) -> None:
        spec = self.specs[agent_id]
        name = spec.display_name
        signal = CancelSignal()
        if self.cancel_reason is not None:
            signal.set()
        self.signals[agent_id] = signal
        call = AgentCall(
            agent_id=agent_id,
            agent_name=name,
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            fn=self.plan.functions[agent_id],
            is_async=self.plan.is_async[agent_id],
            params=spec.params,
            inputs=self.inputs,
            results={d: self.raw_results[d] for d in spec.depends_on},
            report=self._reporter(agent_id, name),
            cancel=signal,
            progress_interval=self.engine.progress_interval,
            retries=spec.retries or 0,
            label=f"agent {agent_id!r} of execution {self.execution_id}",
        )
        self._emit(
            lambda em: em.emit_agent_started(self.execution_id, self.workflow_id, agent_id, name)
        )
        clock = self.engine.clock
        t0 = clock()
        timeout = spec.timeout_seconds
        outcome: AgentOutcome | None = None
        scope: asyncio.Timeout | None = None
        try:
            if timeout is None:  # (a scope that never expires still costs ~4 µs per agent)
                outcome = await self.engine.runner.run(call)
            else:
                async with asyncio.timeout(timeout) as scope:
                    outcome = await self.engine.runner.run(call)
        except TimeoutError:
            pass  # the scope expired: below
        except asyncio.CancelledError:
            signal.set()
            raise  # the scheduler is stopping this agent
        if scope is not None and scope.expired() and not isinstance(outcome, Completed):
            signal.set()
            outcome = Failed(
                f"agent {agent_id!r} timed out after {timeout:g} s", "AgentTimeoutError"
            )
        assert outcome is not None
        duration = ms(clock() - t0)
        if isinstance(outcome, Failed):
            signal.set()
            error, error_type = outcome.error, outcome.error_type
            with self.lock:
                self.finished_agents.add(agent_id)
                if not self.closed:
                    self._emit_locked(
                        lambda em: em.emit_agent_failed(
                            self.execution_id,
                            self.workflow_id,
                            agent_id,
                            name,
                            error=error,
                            error_type=error_type,
                            duration_ms=duration,
                        )
                    )
        else:
            result = outcome.result
            data = fit({"result": to_json_safe(result)})
            with self.lock:
                self.finished_agents.add(agent_id)
                if not self.closed:
                    self._emit_locked(
                        lambda em: em.emit_agent_completed(
                            self.execution_id,
                            self.workflow_id,
                            agent_id,
                            name,
                            result=data["result"],
                            duration_ms=duration,
                            **_truncated(data),
                        )
                    )
                    overall = self._set_agent_progress_locked(agent_id, 100)
                    self.exec_coalescer.report(overall, agent_id)
                    self.exec_coalescer.flush()
            self.raw_results[agent_id] = result
            self.safe_results[agent_id] = data["result"]
        self.queue.put_nowait(AgentEnded(agent_id, outcome))

    async def main(self) -> None:
        """Run the execution to its terminal event."""
        tasks: dict[str, asyncio.Task[None]] = {}
        try:
            await self._schedule(tasks)
        except Exception as exc:  # an engine bug must still end the execution, and say why
            await self._stop(tasks)
            self._fail(f"executor error: {exc}", type(exc).__name__, None)

    async def _schedule(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        loop = self.engine.loop

        def start(agent_ids: list[str]) -> None:
            for agent_id in agent_ids:
                tasks[agent_id] = loop.create_task(self._agent(agent_id))

        failure: AgentEnded | None = None
        if self.cancel_reason is None:
            start(self.ready.start())
        while tasks and self.cancel_reason is None:
            message = await self.queue.get()
            if isinstance(message, CancelRequested):
                break
            tasks.pop(message.agent_id, None)
            if isinstance(message.outcome, Failed):
                self.ready.fail(message.agent_id)
                failure = message
                break
            start(self.ready.complete(message.agent_id))
        await self._stop(tasks)
        if failure is not None:
            assert isinstance(failure.outcome, Failed)
            error = f"agent {failure.agent_id!r} failed: {failure.outcome.error}"
            self._fail(error, failure.outcome.error_type, failure.agent_id)
        elif self.cancel_reason is not None:
            reason = self.cancel_reason
            self._finish(
                "cancelled",
                lambda em: em.emit_execution_cancelled(self.execution_id, self.workflow_id, reason),
                error=f"execution {self.execution_id} cancelled: {reason}",
            )
        else:
            data = fit({"results": self.safe_results})
            duration = self._duration()
            self._finish(
                "completed",
                lambda em: em.emit_execution_completed(
                    self.execution_id,
                    self.workflow_id,
                    duration_ms=duration,
                    results=data["results"],
                    **_truncated(data),
                ),
            )

    def _duration(self) -> int:
        return ms(self.engine.clock() - self.started_at)

    def _fail(self, error: str, error_type: str, agent_id: str | None) -> None:
        duration = self._duration()
        self._finish(
            "failed",
            lambda em: em.emit_execution_failed(
                self.execution_id,
                self.workflow_id,
                error=error,
                error_type=error_type,
                agent_id=agent_id,
                duration_ms=duration,
            ),
            error=error,
            error_type=error_type,
            agent_id=agent_id,
        )

    async def _stop(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Cancel the agents still running and give them a moment to unwind."""
        pending = [t for t in tasks.values() if not t.done()]
        for agent_id in tasks:
            signal = self.signals.get(agent_id)
            if signal is not None:
                signal.set()
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_GRACE)
