"""The threads sync agents run on: daemon threads, and a stuck agent given up on frees its slot.

Python cannot stop a thread, so an agent stuck in a long call — a blocked ``input()``, a socket
without a timeout, ``time.sleep(3600)`` — keeps its thread until the call returns. With
``concurrent.futures.ThreadPoolExecutor`` that did two kinds of harm: its threads are joined at
interpreter exit, so SIGTERM took as long as the stuck call (forever, for ``input()``); and a stuck
thread holds its worker slot, so ``max_workers`` stuck agents starved every later sync agent.

:class:`AgentThreads` instead:

* runs every call on a **daemon** thread: the process exits past a stuck one;
* lets at most ``max_workers`` calls run at once that the engine still waits for; the rest queue;
* when the engine gives up on a call — its agent timed out, its execution was cancelled, failed
  elsewhere or the engine closed — the call is **abandoned**: it stops counting toward
  ``max_workers`` (a new thread takes the next queued call), and whatever it returns or raises
  when it finally ends is dropped. The engine drops the events it still reports (nothing follows
  an agent's end or a terminal event).

Outcomes go back to the loop together: a thread that finishes a call while the loop has not yet
taken the previous outcomes adds its own to them, so one wake-up of the loop (a system call, and
a costly one in a VM) settles every call that finished meanwhile.

So the number of threads is ``max_workers`` plus the abandoned calls still running; each abandoned
call is logged (a warning naming it), and :attr:`AgentThreads.abandoned` counts those still
running. Idle threads are kept (at most ``max_workers``) for the next calls, as a pool's are.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["AgentThreads", "Outcome"]

log = logging.getLogger(__name__)


class _Phase(IntEnum):
    QUEUED = 0  # waiting for a slot
    ASSIGNED = 1  # has a slot: handed to a thread, or running
    DONE = 2
    ABANDONED = 3  # given up on: no slot; its outcome is dropped


@dataclass(frozen=True)
class Outcome:
    """What a call ended with: its return value (``ok``) or what it raised (any BaseException)."""

    ok: bool
    value: Any


class _Job:
    __slots__ = ("arg", "fn", "future", "label", "loop", "phase")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        arg: Any,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Outcome],
        label: str,
    ) -> None:
        self.fn = fn
        self.arg = arg
        self.loop = loop
        self.future = future
        self.label = label
        self.phase = _Phase.QUEUED

    def given_up(self) -> bool:
        # A method, not an inline test: another thread may change phase between two looks.
        return self.phase is _Phase.ABANDONED


def _settle(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():  # cancelled meanwhile: the engine no longer waits
        future.set_result(outcome)


class AgentThreads:
    """Runs sync calls on daemon threads for an asyncio loop; see the module docstring."""

    def __init__(self, max_workers: int, *, name: str = "zmqmon-agent") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self.max_workers = max_workers
        self._name = name
        self._numbers = itertools.count(1)
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Job] = collections.deque()  # waiting for a slot
        self._handoff: collections.deque[_Job] = collections.deque()  # slot given, no thread yet
        self._counted = 0  # calls holding a slot
        self._idle = 0  # threads waiting for a handoff
        self._abandoned = 0  # abandoned calls still running
        self._closed = False
        # Outcomes waiting to be settled on their loop, per loop: one wake-up of a loop settles
        # every outcome that came meanwhile (a wake-up is a system call, and costly in a VM).
        self._settling: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Outcome]]] = {}
        self._settle_lock = threading.Lock()

    @property
    def abandoned(self) -> int:
        """Abandoned calls whose threads are still running (stuck, or finishing late)."""
        with self._cond:
            return self._abandoned

    @property
    def running(self) -> int:
        """Calls holding a slot (at most ``max_workers``)."""
        with self._cond:
            return self._counted

    async def call(self, fn: Callable[[Any], Any], arg: Any, *, label: str = "") -> Outcome:
        """Run ``fn(arg)`` on a thread and wait for its :class:`Outcome`.

        If the awaiting task is cancelled (a timeout, a cancel), the call is abandoned: see the
        module docstring. ``label`` names it in the warning logged then.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        job = _Job(fn, arg, loop, future, label)
        with self._cond:
            if self._closed:
                raise RuntimeError("the agent threads are closed")
            self._queue.append(job)
            self._dispatch_locked()
        try:
            return await future
        finally:
            if not future.done() or future.cancelled():
                self._abandon(job)

    def close(self) -> None:
        """Abandon queued calls and let idle threads end; running ones are left to finish."""
        with self._cond:
            self._closed = True
            for job in self._queue:
                job.phase = _Phase.ABANDONED
            self._queue.clear()
            self._cond.notify_all()

    # -- internals (all under self._cond) -------------------------------------------------------

    def _take_locked(self) -> _Job | None:
        """The next queued call, given a slot — if there is one and a slot is free."""
        while self._queue and self._counted < self.max_workers:
            job = self._queue.popleft()
            if job.phase is _Phase.ABANDONED:
                continue
            job.phase = _Phase.ASSIGNED
            self._counted += 1
            return job
        return None

    def _dispatch_locked(self) -> None:
        while (job := self._take_locked()) is not None:
            if self._idle > len(self._handoff):  # an idle thread is free to take it
                self._handoff.append(job)
                self._cond.notify()
            else:
                thread = threading.Thread(
                    target=self._work,
                    args=(job,),
                    name=f"{self._name}-{next(self._numbers)}",
                    daemon=True,  # never joined at exit: a stuck agent cannot hold the process
                )
                thread.start()

    def _abandon(self, job: _Job) -> None:
        with self._cond:
            if job.phase is _Phase.QUEUED:
                job.phase = _Phase.ABANDONED  # skipped when its turn comes
            elif job.phase is _Phase.ASSIGNED:
                job.phase = _Phase.ABANDONED
                self._counted -= 1
                self._abandoned += 1
                running = self._abandoned
                self._dispatch_locked()  # its slot goes to the next call
                log.warning(
                    "gave up waiting for %s; its thread runs on until the call returns "
                    "(%d such thread(s) now)",
                    job.label or "a sync agent",
                    running,
                )

    def _work(self, job: _Job | None) -> None:
        while job is not None:
            self._run(job)
            job = self._next()

    def _run(self, job: _Job) -> None:
        with self._cond:
            if job.given_up():  # given up on before it started: never run it
                self._abandoned -= 1
                job.phase = _Phase.DONE
                return
        try:
            outcome = Outcome(True, job.fn(job.arg))
        except BaseException as exc:  # whatever it raises is the agent's outcome, not ours
            outcome = Outcome(False, exc)
        with self._cond:
            abandoned = job.given_up()
            if abandoned:
                self._abandoned -= 1
            else:
                self._counted -= 1  # the slot it frees is taken by this thread, in _next
            job.phase = _Phase.DONE
        if abandoned:
            return  # nobody waits for it any more: dropped
        self._hand_back(job, outcome)

    def _hand_back(self, job: _Job, outcome: Outcome) -> None:
        """Settle the call's future on its loop, with any others that finished meanwhile."""
        loop = job.loop
        with self._settle_lock:
            pending = self._settling.get(loop)
            if pending is not None:
                pending.append((job, outcome))  # a wake-up is on its way already
                return
            self._settling[loop] = [(job, outcome)]
        try:
            loop.call_soon_threadsafe(self._settle_all, loop)
        except RuntimeError:  # the loop is closed: the engine has stopped, nobody waits
            with self._settle_lock:
                self._settling.pop(loop, None)

    def _settle_all(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._settle_lock:
            pending = self._settling.pop(loop, [])
        for job, outcome in pending:
            _settle(job.future, outcome)

    def _next(self) -> _Job | None:
        with self._cond:
            job = self._take_locked()
            if job is not None:
                return job
            if self._closed or self._idle >= self.max_workers:
                return None  # enough idle threads already
            self._idle += 1
            try:
                while not self._handoff:
                    if self._closed:
                        return None
                    self._cond.wait()
                return self._handoff.popleft()
            finally:
                self._idle -= 1
