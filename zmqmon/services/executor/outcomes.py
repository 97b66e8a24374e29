"""What the engine's parts hand each other: an agent's call, its outcome, the run's messages.

A runner (in-process or Dask) is given an :class:`AgentCall` and answers with an
:class:`AgentOutcome` — :class:`Completed` or :class:`Failed` — whatever the agent did: raising is
an outcome, not an escape. The execution's scheduler reads :data:`RunMessage` values from its
queue: an agent ended, or a cancel was asked. No tuples, no sentinels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AgentCall",
    "AgentEnded",
    "AgentOutcome",
    "AgentRunner",
    "CancelRequested",
    "CancelSignal",
    "Completed",
    "Failed",
    "Report",
    "RunMessage",
    "describe",
    "failed",
    "ms",
]

#: ``report(percent, message)``: one (already coalesced) progress update of an agent.
Report = Callable[[int, "str | None"], None]


@dataclass(frozen=True, slots=True)
class Completed:
    """The agent returned ``result`` (any Python object; made JSON-safe for its event)."""

    result: Any


@dataclass(frozen=True, slots=True)
class Failed:
    """The agent failed: the message and ``errorType`` of its ``agent:failed`` event."""

    error: str
    error_type: str


AgentOutcome = Completed | Failed


@dataclass(frozen=True, slots=True)
class AgentEnded:
    """On the run's queue: an agent ended with ``outcome``."""

    agent_id: str
    outcome: AgentOutcome


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """On the run's queue: stop the execution (its reason is kept by the run)."""


RunMessage = AgentEnded | CancelRequested


def describe(exc: BaseException) -> str:
    """The message of what an agent raised; an exception whose ``str`` raises is still named."""
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return f"{type(exc).__name__} (its message could not be read)"


def failed(exc: BaseException) -> Failed:
    """The outcome of an agent that raised ``exc`` (``errorType``: its class name)."""
    return Failed(describe(exc), type(exc).__name__)


def ms(seconds: float) -> int:
    """Whole milliseconds, never negative (durations in events)."""
    return max(0, round(seconds * 1000))


class CancelSignal:
    """One agent's "stop now": set once, from any thread; callbacks run where it is set.

    A runner hooks what stopping means where the agent runs (a context's flag, a message to a
    Dask worker). A callback added after the signal was set runs at once.
    """

    __slots__ = ("_callbacks", "_lock", "_set")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self._set

    def set(self) -> None:
        """Ask the agent to stop (idempotent)."""
        with self._lock:
            if self._set:
                return
            self._set = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def add_callback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the signal is set (now, if it already is)."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return
        callback()


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 2 µs more, once per agent run
class AgentCall:
    """Everything a runner needs to run one agent once.

    ``fn`` is the resolved callable (``is_async``: a coroutine function); ``results`` the raw
    results of the agents it depends on; ``report`` sends a progress update (coalesced already
    by whoever calls it, at ``progress_interval``); ``cancel`` is set when the agent must stop
    (its execution was cancelled or failed elsewhere, or it timed out); ``retries`` is how often
    it may be rerun after its worker was lost; ``label`` names it in logs.
    """

    agent_id: str
    agent_name: str
    execution_id: str
    workflow_id: str
    fn: Callable[..., Any]
    is_async: bool
    params: Mapping[str, Any]
    inputs: Mapping[str, Any]
    results: Mapping[str, Any]
    report: Report
    cancel: CancelSignal
    progress_interval: float
    retries: int = 0
    label: str = ""


class AgentRunner(Protocol):
    """Where agents run: in-process (:mod:`.local`) or on a Dask cluster (:mod:`.dask_runner`).

    ``run`` returns the agent's outcome; when the task awaiting it is cancelled (a timeout, the
    execution stopping) it stops the agent as well as it can and lets ``CancelledError`` through.
    """

    async def start(self) -> None:
        """Connect, on the engine's loop, before the first ``run``."""
        ...

    async def run(self, call: AgentCall) -> AgentOutcome:
        """Run one agent once; see the class docstring."""
        ...

    async def aclose(self) -> None:
        """Release what ``start`` took, on the engine's loop."""
        ...

    def close(self) -> None:
        """Release what is left after the engine's loop stopped (threads)."""
        ...
