"""The widgets' pure half: execution state → view model, event-log lines, and the render throttle.

Nothing here touches ipywidgets, ZeroMQ, threads or the wall clock: "now" and the monotonic
clock are handed in, so every rule is unit-tested without a kernel. The widgets
(:mod:`zmqmon.widgets.monitor`, :mod:`zmqmon.widgets.executions`) only copy these values into
their traits.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from zmqmon.core.events import (
    AgentCompleted,
    AgentFailed,
    AgentProgress,
    AgentStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionProgress,
    ExecutionStarted,
)
from zmqmon.core.state import AgentState, ExecutionState

__all__ = [
    "BAR_STYLES",
    "STATUS_COLOURS",
    "AgentRow",
    "ExecutionRow",
    "ExecutionView",
    "RenderThrottle",
    "badge_html",
    "execution_row",
    "execution_view",
    "format_duration",
    "format_event",
    "parse_timestamp",
]

#: status → badge background colour (text is white)
STATUS_COLOURS: Final[dict[str, str]] = {
    "pending": "#6c757d",
    "running": "#0d6efd",
    "completed": "#198754",
    "failed": "#dc3545",
    "cancelled": "#b58105",
}

#: status → ipywidgets progress ``bar_style``
BAR_STYLES: Final[dict[str, str]] = {
    "pending": "",
    "running": "info",
    "completed": "success",
    "failed": "danger",
    "cancelled": "warning",
}


def parse_timestamp(timestamp: str | None) -> float | None:
    """A contract timestamp (``…T10:00:10.000Z``) as epoch seconds; None stays None."""
    if not timestamp:
        return None
    try:
        parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return parsed.timestamp()


def format_duration(seconds: float | None) -> str:
    """``0.25 s`` → ``250 ms``; ``4.2 s``; ``2 m 05 s``; ``1 h 02 m``; None → ``—``."""
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    return f"{whole // 3600} h {(whole % 3600) // 60:02d} m"


def badge_html(status: str) -> str:
    """A small coloured pill with the status, as HTML."""
    colour = STATUS_COLOURS.get(status, "#6c757d")
    return (
        f'<span class="zmqmon-badge zmqmon-{html.escape(status)}" style="background:{colour};'
        "color:#fff;border-radius:0.8em;padding:0 8px;font-size:0.85em;line-height:1.6;"
        f'display:inline-block;font-weight:600;white-space:nowrap">{html.escape(status)}</span>'
    )


def _elapsed(started: str | None, finished: str | None, now: float) -> float | None:
    start = parse_timestamp(started)
    if start is None:
        return None
    end = parse_timestamp(finished)
    return max(0.0, (end if end is not None else now) - start)


@dataclass(frozen=True)
class AgentRow:
    """What one agent's row shows."""

    agent_id: str
    name: str
    status: str
    progress: int
    bar_style: str
    duration: str
    error: str


@dataclass(frozen=True)
class ExecutionView:
    """What an execution monitor shows, derived from its state and "now"."""

    execution_id: str
    title: str
    status: str
    badge: str
    progress: int
    bar_style: str
    elapsed: str
    error: str
    terminal: bool
    can_cancel: bool
    agents: tuple[AgentRow, ...]


def _agent_row(agent: AgentState, now: float) -> AgentRow:
    if agent.duration_ms is not None:
        duration = format_duration(agent.duration_ms / 1000)
    else:
        duration = format_duration(_elapsed(agent.started_at, agent.finished_at, now))
    return AgentRow(
        agent_id=agent.agent_id,
        name=agent.agent_name or agent.agent_id,
        status=agent.status,
        progress=max(0, min(100, agent.progress)),
        bar_style=BAR_STYLES.get(agent.status, ""),
        duration=duration,
        error=agent.error or "",
    )


def execution_view(state: ExecutionState, now: float) -> ExecutionView:
    """The view model of one execution. ``now`` (epoch seconds) runs the elapsed time of a live
    execution; a finished one shows startedAt → finishedAt."""
    return ExecutionView(
        execution_id=state.execution_id,
        title=state.workflow_name or state.workflow_id or state.execution_id,
        status=state.status,
        badge=badge_html(state.status),
        progress=max(0, min(100, state.progress)),
        bar_style=BAR_STYLES.get(state.status, ""),
        elapsed=format_duration(_elapsed(state.started_at, state.finished_at, now)),
        error=state.error or "",
        terminal=state.is_terminal,
        can_cancel=not state.is_terminal,
        agents=tuple(_agent_row(agent, now) for agent in state.agents),
    )


@dataclass(frozen=True)
class ExecutionRow:
    """One line of the executions list."""

    execution_id: str
    workflow: str
    status: str
    progress: int
    started: str
    duration: str
    sort_key: str


def execution_row(state: ExecutionState, now: float) -> ExecutionRow:
    """The executions list's line for one execution (``started`` shown as UTC ``HH:MM:SS``)."""
    started = state.started_at[11:19] if state.started_at else "—"
    return ExecutionRow(
        execution_id=state.execution_id,
        workflow=state.workflow_name or state.workflow_id,
        status=state.status,
        progress=max(0, min(100, state.progress)),
        started=started,
        duration=format_duration(_elapsed(state.started_at, state.finished_at, now)),
        # Newest first; executions not started yet sort on top (they are the newest).
        sort_key=state.started_at or "9999",
    )


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_event(event: Event) -> str:
    """One event as a log line: ``10:00:02.000 #5 agent:started B``."""
    head = f"{event.timestamp[11:23]} #{event.seq} {event.type}"
    if isinstance(event, ExecutionStarted):
        tail = f"{event.data.workflow_name} ({event.data.agent_count} agents)"
    elif isinstance(event, ExecutionProgress):
        tail = f"{event.data.progress}%"
    elif isinstance(event, ExecutionCompleted):
        tail = f"in {format_duration(event.data.duration_ms / 1000)}"
    elif isinstance(event, ExecutionFailed):
        tail = f"{event.data.error_type}: {_short(event.data.error)}"
    elif isinstance(event, ExecutionCancelled):
        tail = _short(event.data.reason)
    elif isinstance(event, AgentStarted):
        tail = event.data.agent_name
    elif isinstance(event, AgentProgress):
        tail = f"{event.data.agent_name} {event.data.progress}%"
        if event.data.message:
            tail += f" {_short(event.data.message, 60)}"
    elif isinstance(event, AgentCompleted):
        tail = f"{event.data.agent_name} → {_short(event.data.result, 60)}"
    elif isinstance(event, AgentFailed):
        tail = f"{event.data.agent_name} {event.data.error_type}: {_short(event.data.error)}"
    else:  # pragma: no cover - Event is a closed union
        tail = ""
    return f"{head} {tail}".rstrip()


class RenderThrottle:
    """Decides when to push state to the front end: at most once per ``interval`` seconds.

    Every change is *noted* (cheap); a render is *due* on the leading edge (the first change after
    a quiet spell renders at once) and then at most once per ``interval`` while changes keep
    coming. :meth:`flush` answers whether a final render is owed (the last changes since the
    previous render), so the end state always reaches the front end.

    ``clock`` is monotonic seconds (injected: tests use a fake one).
    """

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] | None = None) -> None:
        if interval <= 0 or math.isnan(interval):
            raise ValueError("interval must be > 0")
        self.interval = interval
        self._clock = clock
        self._last_render: float | None = None
        self._dirty = False
        self.renders = 0

    def _now(self, now: float | None) -> float:
        if now is not None:
            return now
        if self._clock is None:
            raise ValueError("RenderThrottle needs a clock or an explicit now")
        return self._clock()

    def note(self) -> None:
        """Something changed that the front end has not seen."""
        self._dirty = True

    @property
    def dirty(self) -> bool:
        """True while a change waits for a render."""
        return self._dirty

    def due(self, now: float | None = None) -> bool:
        """True if a render should happen now (something changed and the interval has passed)."""
        if not self._dirty:
            return False
        if self._last_render is None:
            return True
        return self._now(now) - self._last_render >= self.interval

    def wait_time(self, now: float | None = None, idle: float = 0.1) -> float:
        """How long the feed may block before the next render could be due (``idle`` if clean)."""
        if not self._dirty or self._last_render is None:
            return idle
        return max(0.0, self._last_render + self.interval - self._now(now))

    def rendered(self, now: float | None = None) -> None:
        """Record that a render happened at ``now``."""
        self._last_render = self._now(now)
        self._dirty = False
        self.renders += 1

    def flush(self) -> bool:
        """True if a final render is owed (changes not yet rendered)."""
        return self._dirty
