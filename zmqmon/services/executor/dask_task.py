"""What runs on a Dask worker: one agent, with its progress and cancellation on the channel.

:func:`run_agent_task` is the task the service submits. It builds the agent's
:class:`~zmqmon.services.executor.context.AgentContext` with a
:class:`~zmqmon.services.executor.progress.ProgressCoalescer` of the service's interval — so
``ctx.progress()`` is coalesced on the worker exactly as in-process, and only what would be sent
crosses the network — runs the agent (an async one on an event loop of its own, in the task's
thread), and returns a :class:`TaskResult`: whatever the agent raised is caught here and named,
never raised into the worker. The last progress value not yet sent travels in the result, so it
reaches the service before ``agent:completed`` whatever the channel did.

:class:`WorkerLink` is the worker process's end of the channel (:mod:`.channel`): one DEALER,
read by a daemon thread, says hello and receives cancels; each task thread sends its progress on
a DEALER of its own (ZeroMQ sockets are not thread-safe, and a hop through another thread cost
half the rate). Nothing here imports ``distributed`` except to learn the
worker's address, so it is tested without a cluster too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import zmq

from zmqmon.services.executor.channel import CANCEL, HELLO, PROGRESS, encode_progress
from zmqmon.services.executor.context import AgentContext
from zmqmon.services.executor.outcomes import describe
from zmqmon.services.executor.progress import ProgressCoalescer

__all__ = ["TaskResult", "TaskSpec", "WorkerLink", "run_agent_task"]

#: cancels a link remembers, for tasks that start after their cancel arrived
_REMEMBERED: Final = 4096


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One attempt of one agent, as submitted to the cluster (pickled by Dask)."""

    token: str
    channel: str
    agent_id: str
    agent_name: str
    execution_id: str
    workflow_id: str
    fn: Callable[..., Any]
    is_async: bool
    params: Mapping[str, Any]
    inputs: Mapping[str, Any]
    results: Mapping[str, Any]
    progress_interval: float


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What the task returns: the agent's result, or what it raised (by name and message), and
    the last progress update not sent yet."""

    ok: bool
    value: Any = None
    error: str = ""
    error_type: str = ""
    last_progress: tuple[int, str | None] | None = None


class WorkerLink:
    """This process's end of the channel to one service endpoint (one per endpoint)."""

    _links: ClassVar[dict[tuple[int, str], WorkerLink]] = {}
    _links_lock: ClassVar = threading.Lock()

    @classmethod
    def get(cls, endpoint: str, worker: str = "") -> WorkerLink:
        """The link to ``endpoint``, started on first use (``worker``: this worker's address)."""
        key = (os.getpid(), endpoint)  # a forked child starts its own
        with cls._links_lock:
            link = cls._links.get(key)
            if link is None:
                link = cls._links[key] = cls(endpoint, worker)
            return link

    def __init__(self, endpoint: str, worker: str = "") -> None:
        self.endpoint = endpoint
        self._context: zmq.Context[Any] = zmq.Context()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._hooks: dict[bytes, list[Callable[[], None]]] = {}
        self._cancelled: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        # The link's own DEALER says hello and receives the cancels; progress goes out on one
        # DEALER per task thread (no hop through another thread: measured 2–3× the rate).
        dealer = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.IDENTITY, uuid.uuid4().bytes)  # the same across reconnects
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(endpoint)
        dealer.send_multipart([HELLO, worker.encode()], flags=zmq.NOBLOCK)
        self._thread = threading.Thread(
            target=self._serve, args=(dealer,), name="zmqmon-dask-link", daemon=True
        )
        self._thread.start()

    # -- task threads --------------------------------------------------------------------------

    def progress(self, token: str, value: int, message: str | None) -> None:
        """Send one progress update; dropped rather than ever blocking the agent."""
        out = getattr(self._local, "out", None)
        if out is None:
            out = self._local.out = self._context.socket(zmq.DEALER)
            out.setsockopt(zmq.SNDHWM, 10_000)
            out.setsockopt(zmq.LINGER, 1000)  # what is queued when the task ends still goes
            out.connect(self.endpoint)
        with contextlib.suppress(zmq.ZMQError):  # queue full or service gone: dropped
            out.send_multipart(
                [PROGRESS, token.encode(), encode_progress(value, message)], flags=zmq.NOBLOCK
            )

    def on_cancel(self, token: str, hook: Callable[[], None]) -> None:
        """Call ``hook`` (on the link's thread) when ``token`` is cancelled; now if it was."""
        key = token.encode()
        with self._lock:
            if key not in self._cancelled:
                self._hooks.setdefault(key, []).append(hook)
                return
        hook()

    def done(self, token: str) -> None:
        """The attempt ended: forget its hooks."""
        with self._lock:
            self._hooks.pop(token.encode(), None)

    # -- the link's thread ---------------------------------------------------------------------

    def _serve(self, dealer: Any) -> None:
        while True:
            frames = dealer.recv_multipart()
            if len(frames) == 2 and frames[0] == CANCEL:
                self._cancel(frames[1])

    def _cancel(self, token: bytes) -> None:
        with self._lock:
            self._cancelled[token] = None
            while len(self._cancelled) > _REMEMBERED:
                self._cancelled.popitem(last=False)
            hooks = self._hooks.pop(token, [])
        for hook in hooks:
            with contextlib.suppress(Exception):
                hook()


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not on a worker (a test calling the task directly)
        return ""


def _run_coroutine(coro: Any, link: WorkerLink, token: str) -> Any:
    """Run an async agent on a loop of its own; a cancel cancels it at its next ``await``."""
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(coro)

        def cancel() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: it ended
                loop.call_soon_threadsafe(task.cancel)

        link.on_cancel(token, cancel)
        return loop.run_until_complete(task)
    finally:
        loop.close()


def run_agent_task(spec: TaskSpec) -> TaskResult:
    """Run one attempt of one agent on this worker; see the module docstring."""
    link = WorkerLink.get(spec.channel, _worker_address())
    token = spec.token

    def send(value: int, message: str | None) -> None:
        link.progress(token, value, message)

    coalescer = ProgressCoalescer(send, interval=spec.progress_interval, clock=time.monotonic)
    ctx = AgentContext(
        agent_id=spec.agent_id,
        agent_name=spec.agent_name,
        execution_id=spec.execution_id,
        workflow_id=spec.workflow_id,
        params=spec.params,
        inputs=spec.inputs,
        results=spec.results,
        coalescer=coalescer,
    )
    link.on_cancel(token, ctx._cancel)
    try:
        if spec.is_async:
            result = _run_coroutine(spec.fn(ctx), link, token)
        else:
            result = spec.fn(ctx)
            if inspect.isawaitable(result):  # a sync callable that returned a coroutine
                result = _run_coroutine(result, link, token)
    except BaseException as exc:  # the agent's outcome; never the worker's problem
        return TaskResult(False, error=describe(exc), error_type=type(exc).__name__)
    finally:
        link.done(token)
    last = (coalescer.latest, coalescer.message) if coalescer.pending else None
    return TaskResult(True, value=result, last_progress=last)
