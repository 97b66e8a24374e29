"""The Dask runner: every agent a task on a Dask distributed cluster.

The service schedules and publishes; the cluster computes. For each ready agent the engine asks
:meth:`DaskRunner.run`, which submits :func:`~zmqmon.services.executor.dask_task.run_agent_task`
under a fresh random key (its *token*) and waits for the first of:

* the task's end → its :class:`~zmqmon.services.executor.dask_task.TaskResult` is gathered (in
  batches: the results of agents that end together come in one request) and becomes the agent's
  outcome, the last progress value first;
* the scheduler's ``remove-worker`` event naming the key among the lost worker's tasks (or the
  task erring with ``KilledWorker``) → the attempt is lost. With ``retries`` left the agent is
  submitted again (an ``agent:progress`` says so), else it fails with ``errorType: "WorkerLost"``.
  Dask's own rerun of the task is cancelled: whether an agent runs twice is the workflow's choice,
  not the scheduler's;
* the engine cancelling the wait (a timeout, the execution stopping) → a cancel goes to the
  worker over the channel (:mod:`.channel`) and the key is released.

Progress and cancellation travel the ZeroMQ channel (why: :mod:`.channel`). Results come back
through Dask and go to dependants from the service, by value: a completed agent's output lost
with its worker is never silently recomputed.

The runner connects its own asynchronous ``distributed.Client`` on the engine's loop, to the
scheduler it was given: an address, a client (its scheduler and security) or a cluster object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Final

from zmqmon.errors import ConfigError
from zmqmon.services.executor.channel import AgentChannel
from zmqmon.services.executor.dask_task import TaskResult, TaskSpec, run_agent_task
from zmqmon.services.executor.outcomes import (
    AgentCall,
    AgentOutcome,
    Completed,
    Failed,
    describe,
)

__all__ = ["WORKER_LOST", "DaskRunner"]

log = logging.getLogger(__name__)

#: ``errorType`` of an agent whose worker was lost while it ran (and no rerun was left)
WORKER_LOST: Final = "WorkerLost"
#: seconds to reach the scheduler at start
CONNECT_TIMEOUT: Final = 20.0


def _scheduler_of(target: Any) -> tuple[str, Any]:
    """``(address, security)`` of whatever was given to reach the cluster."""
    if isinstance(target, str):
        if not target.strip():
            raise ConfigError("the Dask scheduler address is empty")
        return target.strip(), None
    address = getattr(target, "scheduler_address", None)  # LocalCluster, any deploy.Cluster
    if isinstance(address, str):
        return address, getattr(target, "security", None)
    scheduler = getattr(target, "scheduler", None)  # a distributed.Client
    address = getattr(scheduler, "address", None)
    if isinstance(address, str):
        return address, getattr(target, "security", None)
    raise ConfigError(
        f"cannot find a Dask scheduler in {type(target).__name__}: give an address, a "
        "distributed.Client or a cluster"
    )


class _Lost(Exception):
    """An attempt's worker was lost."""

    def __init__(self, worker: str) -> None:
        super().__init__(worker)
        self.worker = worker


class DaskRunner:
    """Runs agents on a Dask cluster; see the module docstring."""

    def __init__(
        self, target: Any, *, channel: str = "tcp://127.0.0.1:0", advertise: str | None = None
    ) -> None:
        self.address, self._security = _scheduler_of(target)
        self.channel = AgentChannel(channel, advertise)
        self.client: Any = None
        self._lost: dict[str, asyncio.Future[str]] = {}
        self._to_gather: list[tuple[Any, asyncio.Future[TaskResult]]] = []
        self._gathering = False
        self._tasks: set[asyncio.Future[Any]] = set()
        #: attempts lost with their workers so far (rerun or failed)
        self.lost_attempts = 0

    async def start(self) -> None:
        """Connect to the scheduler and bind the channel (on the engine's loop)."""
        try:
            import distributed
        except ImportError as exc:
            raise ConfigError(
                "agents on Dask need the 'distributed' package: pip install 'zmqmon[dask]'"
            ) from exc
        try:
            client_class: Any = distributed.Client  # untyped: Any beyond this line
            self.client = await client_class(
                self.address,
                asynchronous=True,
                security=self._security,
                timeout=CONNECT_TIMEOUT,
                set_as_default=False,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {self.address}: {exc}") from exc
        self.client.subscribe_topic("all", self._on_cluster_event)
        await self.channel.start()

    # -- the cluster's news ------------------------------------------------------------------

    def _on_cluster_event(self, event: Any) -> None:
        try:
            _, msg = event
            if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                return
            worker = str(msg.get("worker", "?"))
            self.channel.forget_worker(worker)
            keys = set(msg.get("processing-tasks") or ()) | set(
                msg.get("lost-computed-tasks") or ()
            )
        except (TypeError, ValueError):
            return
        for key in keys:
            lost = self._lost.get(str(key))
            if lost is not None and not lost.done():
                lost.set_result(worker)

    # -- running -----------------------------------------------------------------------------

    async def run(self, call: AgentCall) -> AgentOutcome:
        """Run the agent on the cluster, rerunning it after a lost worker while it may."""
        for attempt in range(call.retries + 1):
            try:
                return await self._attempt(call)
            except _Lost as lost:
                self.lost_attempts += 1
                if attempt == call.retries:
                    return Failed(
                        f"agent {call.agent_id!r}: its Dask worker {lost.worker} was lost while "
                        "it ran",
                        WORKER_LOST,
                    )
                log.warning("%s: worker %s lost; running it again", call.label, lost.worker)
                call.report(0, f"worker lost: rerun {attempt + 1} of {call.retries}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, call: AgentCall) -> AgentOutcome:
        loop = asyncio.get_running_loop()
        token = f"zmqmon-{call.agent_id}-{uuid.uuid4().hex}"
        lost: asyncio.Future[str] = loop.create_future()
        ended: asyncio.Future[None] = loop.create_future()
        self._lost[token] = lost
        self.channel.expect(token, call.report)
        call.cancel.add_callback(lambda: self.channel.cancel(token))
        spec = TaskSpec(
            token=token,
            channel=self.channel.endpoint,
            agent_id=call.agent_id,
            agent_name=call.agent_name,
            execution_id=call.execution_id,
            workflow_id=call.workflow_id,
            fn=call.fn,
            is_async=call.is_async,
            params=call.params,
            inputs=call.inputs,
            results=call.results,
            progress_interval=call.progress_interval,
        )
        future = self.client.submit(run_agent_task, spec, key=token, pure=False, retries=0)

        def mark_ended() -> None:
            if not ended.done():
                ended.set_result(None)

        def on_end(_: Any) -> None:  # on Dask's callback thread
            with contextlib.suppress(RuntimeError):  # the engine's loop is closed
                loop.call_soon_threadsafe(mark_ended)

        future.add_done_callback(on_end)
        try:
            await self._first(ended, lost)
            status = future.status
            if status == "finished":
                result = await self._first(self._gather(future), lost)
                assert isinstance(result, TaskResult)
                return self._outcome(call, result)
            if status == "error":
                exc = await future.exception()
                if type(exc).__name__ == "KilledWorker":
                    raise _Lost(str(getattr(exc, "last_worker", None) or "?"))
                return Failed(describe(exc), type(exc).__name__)
            return Failed(f"the Dask cluster dropped the task ({status})", WORKER_LOST)
        except asyncio.CancelledError:
            self.channel.cancel(token)  # a timeout or a stop: the agent should stop too
            raise
        finally:
            self._lost.pop(token, None)
            self.channel.forget(token)
            if future.status != "finished":  # Dask neither reruns it nor keeps it queued
                self._background(future.cancel())
            future.release()

    def _background(self, awaitable: Any) -> None:
        """Run a request to the scheduler without waiting for it (the answer is not needed)."""
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _first(self, waited: Any, lost: asyncio.Future[str]) -> Any:
        """``waited``'s value, unless the attempt's worker is lost first."""
        task = asyncio.ensure_future(waited)
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        raise _Lost(lost.result())

    def _outcome(self, call: AgentCall, result: TaskResult) -> AgentOutcome:
        if not result.ok:
            return Failed(result.error, result.error_type)
        if result.last_progress is not None:
            call.report(*result.last_progress)  # before agent:completed, as in-process
        return Completed(result.value)

    async def _gather(self, future: Any) -> TaskResult:
        """``future``'s result, fetched with those of every other attempt ending meanwhile."""
        waiter: asyncio.Future[TaskResult] = asyncio.get_running_loop().create_future()
        self._to_gather.append((future, waiter))
        if not self._gathering:
            self._gathering = True
            self._background(self._gather_batches())
        return await waiter

    async def _gather_batches(self) -> None:
        try:
            while self._to_gather:
                batch, self._to_gather = self._to_gather, []
                batch = [(f, w) for f, w in batch if not w.done()]  # given up on meanwhile
                try:
                    values = await self.client.gather([f for f, _ in batch])
                except Exception:
                    # one of them failed (its data lost, not unpicklable…): each on its own
                    for f, w in batch:
                        try:
                            value = await self.client.gather(f)
                        except Exception as exc:
                            value = TaskResult(
                                False, error=describe(exc), error_type=type(exc).__name__
                            )
                        if not w.done():
                            w.set_result(value)
                    continue
                for (_, w), value in zip(batch, values, strict=True):
                    if not w.done():
                        w.set_result(value)
        finally:
            self._gathering = False

    async def aclose(self) -> None:
        """Disconnect from the scheduler and unbind the channel."""
        await self.channel.aclose()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic("all")  # no news sent to a closing client
                await self.client.close(timeout=5)
            self.client = None

    def close(self) -> None:
        """Nothing left once the loop stopped."""
