"""The in-process runner: async agents on the engine's loop, sync agents on daemon threads.

Sync agents run on :class:`~zmqmon.services.executor.threads.AgentThreads` (at most
``max_workers`` at once; one given up on — timed out, cancelled — frees its slot). An agent's
``ctx.progress()`` is coalesced in its own :class:`ProgressCoalescer` and flushed before it
completes, so the last value always precedes ``agent:completed``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from zmqmon.services.executor.context import AgentContext
from zmqmon.services.executor.outcomes import AgentCall, AgentOutcome, Completed, failed
from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.threads import AgentThreads

__all__ = ["LocalRunner"]


class LocalRunner:
    """Runs agents in this process; see the module docstring."""

    def __init__(self, max_workers: int, clock: Callable[[], float]) -> None:
        self.threads = AgentThreads(max_workers)
        self._clock = clock

    async def start(self) -> None:
        """Nothing to connect."""

    async def run(self, call: AgentCall) -> AgentOutcome:
        """Run the agent; its exceptions are its outcome, a cancel of this task stops it."""
        coalescer = ProgressCoalescer(
            call.report, interval=call.progress_interval, clock=self._clock
        )
        ctx = AgentContext(
            agent_id=call.agent_id,
            agent_name=call.agent_name,
            execution_id=call.execution_id,
            workflow_id=call.workflow_id,
            params=call.params,
            inputs=call.inputs,
            results=call.results,
            coalescer=coalescer,
        )
        call.cancel.add_callback(ctx._cancel)  # a sync agent sees it at once, on its thread
        try:
            if call.is_async:
                result = await call.fn(ctx)
            else:
                outcome = await self.threads.call(call.fn, ctx, label=call.label)
                if not outcome.ok:
                    return failed(outcome.value)
                result = outcome.value
            if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                result = await result
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                ctx._cancel()
                raise  # the engine is stopping this agent
            return failed(exc)  # raised by the agent itself: a failure like any other
        except BaseException as exc:
            # Exception, SystemExit, KeyboardInterrupt, any BaseException: it fails this agent and
            # goes no further. Let through, it would stop the engine's loop and every execution.
            return failed(exc)
        coalescer.flush()  # the last value before the end is always sent
        return Completed(result)

    async def aclose(self) -> None:
        """Nothing to disconnect."""

    def close(self) -> None:
        """Let idle threads end; stuck ones run on as daemons."""
        self.threads.close()
