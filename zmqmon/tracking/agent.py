"""A tracked run's agent (:class:`TrackedAgent`): a context manager, a decorator, an iterator.

See :mod:`zmqmon.tracking.run` for the events it emits. The agent a thread or task is in (its
innermost ``with``) is :func:`current_agent` — what :mod:`zmqmon.tracking.tqdm` reports bars to.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.results import fit, to_json_safe

if TYPE_CHECKING:
    from zmqmon.tracking.run import Run

__all__ = ["TrackedAgent", "current_agent", "describe", "ms"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_AGENT: contextvars.ContextVar[TrackedAgent | None] = contextvars.ContextVar(
    "zmqmon_agent", default=None
)


def current_agent() -> TrackedAgent | None:
    """The agent whose block this thread or task is in, if it is still running."""
    agent = _AGENT.get()
    return agent if agent is not None and agent.running else None


def ms(seconds: float) -> int:
    """Whole milliseconds, never negative."""
    return max(0, round(seconds * 1000))


def describe(exc: BaseException) -> str:
    """An exception's message (its class name if it has none or cannot say it)."""
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return type(exc).__name__


class TrackedAgent:
    """One agent of a run: a context manager, a decorator, and a progress reporter."""

    def __init__(self, run: Run, agent_id: str, name: str | None = None) -> None:
        self.run = run
        self.requested_id = agent_id
        self.agent_id = agent_id
        self.name = name or agent_id
        #: reported in ``agent:completed`` (a decorated function's return value goes here)
        self.result: Any = None
        self.running = False
        self.ended = False
        self._t0 = 0.0
        self._token: contextvars.Token[TrackedAgent | None] | None = None
        self._coalescer = ProgressCoalescer(
            self._send_progress, interval=run.progress_interval, clock=time.monotonic
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> TrackedAgent:
        """Emit ``agent:started`` (once)."""
        if not self.running and not self.ended:
            self.agent_id = self.run._claim(self.requested_id)
            self.running = True
            self._t0 = time.monotonic()
            self.run._agent_started(self)
            self.run._emit("agent:started", {"agentId": self.agent_id, "agentName": self.name})
            self.run._set_progress(self.agent_id, 0)
        return self

    def complete(self, result: Any = None) -> None:
        """Emit ``agent:completed`` (once); ``result`` (or :attr:`result`) is reported."""
        if not self.running:
            return
        self._coalescer.flush()  # the last progress value goes out first
        self.running, self.ended = False, True
        value = self.result if result is None else result
        data = fit(
            {
                "agentId": self.agent_id,
                "agentName": self.name,
                "result": to_json_safe(value),
                "durationMs": ms(time.monotonic() - self._t0),
            }
        )
        self.run._emit("agent:completed", data)
        self.run._agent_done(self, data["result"])

    def fail(self, exc: BaseException) -> None:
        """Emit ``agent:failed`` with ``errorType`` the exception's class name (once)."""
        if not self.running:
            return
        self._coalescer.flush()
        self.running, self.ended = False, True
        self.run._emit(
            "agent:failed",
            {
                "agentId": self.agent_id,
                "agentName": self.name,
                "error": describe(exc),
                "errorType": type(exc).__name__,
                "durationMs": ms(time.monotonic() - self._t0),
            },
        )
        self.run._agent_failed(self, exc)

    def __enter__(self) -> TrackedAgent:
        self.start()
        self._token = _AGENT.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._token is not None:
            _AGENT.reset(self._token)
            self._token = None
        if exc is None:
            self.complete()
        else:
            self.fail(exc)  # and the exception goes on

    def __call__(self, fn: F) -> F:
        """As a decorator: every call of ``fn`` is one run of this agent (ids ``id``, ``id-2``,
        … when called again); its return value is the agent's result."""
        run, agent_id, name = self.run, self.requested_id, self.name
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with run.agent(agent_id, name=name) as agent:
                    agent.result = await fn(*args, **kwargs)
                    return agent.result

            return run_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with run.agent(agent_id, name=name) as agent:
                agent.result = fn(*args, **kwargs)
                return agent.result

        return run_sync  # type: ignore[return-value]

    # -- progress ---------------------------------------------------------------------------------

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress, 0–100 (coalesced: call it as often as you like)."""
        if not self.running:
            if self.ended:
                return
            self.start()
        self._coalescer.report(percent, message)

    def _send_progress(self, value: int, message: str | None) -> None:
        if self.running:
            data = {
                "agentId": self.agent_id,
                "agentName": self.name,
                "progress": value,
                "message": message,
            }
            self.run._emit("agent:progress", data)
            self.run._set_progress(self.agent_id, value)

    def iter(self, iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
        """``iterable``, reporting progress as it goes (like tqdm), 100 when it is exhausted.

        ``total`` defaults to ``len(iterable)`` when it has one; without a total the progress
        stays 0 and the message counts the items. An agent not started yet starts here, and
        completes when the iteration is exhausted.
        """
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        return self._iterate(iterable, total)

    def _iterate(self, iterable: Iterable[T], total: int | None) -> Iterator[T]:
        implicit = not self.running and not self.ended
        self.progress(0, None if total is None else f"0/{total}")
        # The loop costs a counter and a comparison per item; the clock is read every `step`
        # items, `step` adapted to the loop's speed (as tqdm's miniters is) so that progress
        # is looked at about twice per interval.
        clock = time.perf_counter
        half = max(self.run.progress_interval / 2, 1e-3)
        report = self._coalescer.report
        n = last_n = 0
        step = check_at = 1
        last_t = clock()
        for item in iterable:
            yield item
            n += 1
            if n >= check_at:
                now = clock()
                if total:
                    report(n * 100 / total, f"{n}/{total}")
                else:
                    report(0, f"{n} items")
                rate = (n - last_n) / max(now - last_t, 1e-9)
                step = max(1, min(int(rate * half), step * 4))
                check_at = n + step
                last_n, last_t = n, now
        if self.running:
            report(100, f"{n}/{total}" if total else f"{n} items")
            self._coalescer.flush()
            if implicit:
                self.complete()

    def __repr__(self) -> str:
        state = "running" if self.running else "ended" if self.ended else "not started"
        return f"<TrackedAgent {self.agent_id!r} {state}>"
