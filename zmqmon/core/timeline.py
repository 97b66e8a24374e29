"""The timeline (Gantt) view's geometry: agents' spans, the time axis and its ticks. Pure.

Mirrored rule for rule by the dashboard's ``static/layout.js`` (with :mod:`zmqmon.core.layout`)
and tested with it on ``tests/fixtures/layout/``. Times are whole epoch milliseconds, parsed from
the contract's timestamps exactly; pixel positions are computed with the division last, so the
two languages round alike.

- An agent's span: from ``startedAt`` to ``finishedAt``; one still running ends at ``now`` (its
  bar grows); one not started has none.
- The axis runs from the execution's start (or its first agent's) to its end (or ``now``, or the
  last bar's end), at least ``min_span_ms`` long.
- Ticks: the smallest step of :data:`NICE_STEPS_MS` (past a day: 1, 2, 5, 10 … days) that puts
  them ``min_tick_px`` apart or more, labelled as offsets from the start (:func:`format_offset`).
- Rows: in the order given (the graph's reading order), then any agent not in it, in state order.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

from zmqmon.core.state import AgentState, ExecutionState

__all__ = [
    "NICE_STEPS_MS",
    "TimeScale",
    "TimelineLayout",
    "TimelineOptions",
    "TimelineRow",
    "agent_span",
    "format_offset",
    "time_scale",
    "timeline_layout",
    "timestamp_ms",
]

#: Tick steps the axis chooses from (ms), up to a day.
NICE_STEPS_MS: Final[tuple[int, ...]] = (
    *(1, 2, 5, 10, 20, 50, 100, 200, 500),
    *(1_000, 2_000, 5_000, 10_000, 15_000, 30_000),
    *(60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000),
    *(3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000),
)
_DAY: Final = 86_400_000
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)
_FIELDS: Final = ((0, 4), (5, 2), (8, 2), (11, 2), (14, 2), (17, 2))  # (at, digits) of Y M D h m s


@dataclass(frozen=True)
class TimelineOptions:
    """The timeline's sizes in whole pixels, and its shortest axis."""

    timeline_width: int = 720
    label_width: int = 150
    right_pad: int = 16
    row_height: int = 22
    axis_height: int = 24
    bottom_pad: int = 8
    min_tick_px: int = 72
    min_span_ms: int = 100


@dataclass(frozen=True)
class TimeScale:
    """An axis over ``start_ms``..``end_ms``, ``width`` pixels from ``x0``; ticks every
    ``step_ms`` as ``(offset ms, x, label)``."""

    start_ms: int
    end_ms: int
    x0: int
    width: int
    step_ms: int
    ticks: tuple[tuple[int, float, str], ...]

    def x(self, t_ms: int) -> float:
        """The x of an instant (epoch ms)."""
        return self.x0 + (t_ms - self.start_ms) * self.width / (self.end_ms - self.start_ms)


@dataclass(frozen=True)
class TimelineRow:
    """One agent's row: its top ``y`` and its bar (``x0``..``x1``; None before it starts)."""

    agent_id: str
    y: int
    start_ms: int | None
    end_ms: int | None
    open: bool
    x0: float | None
    x1: float | None


@dataclass(frozen=True)
class TimelineLayout:
    """The axis, the rows, and the drawing's size."""

    scale: TimeScale
    rows: tuple[TimelineRow, ...]
    width: int
    height: int


@lru_cache(maxsize=8192)  # a render parses every agent's two timestamps: most are the same
def timestamp_ms(timestamp: str | None) -> int | None:
    """A contract timestamp (``2026-11-25T10:00:10.250Z``) as whole epoch ms; None if absent or
    malformed. Exact (integer arithmetic), as ``Date.parse`` is."""
    if not timestamp or not _TIMESTAMP.fullmatch(timestamp):
        return None
    try:
        y, mo, d, h, mi, s = (int(timestamp[a : a + n]) for a, n in _FIELDS)
        millis = int(timestamp[20:23])
        datetime(y, mo, d, h, mi, s)  # refuses a day or an hour out of range
    except ValueError:
        return None
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1000 + millis


def agent_span(row: AgentState, now_ms: int) -> tuple[int | None, int | None, bool]:
    """An agent's ``(start, end, running)`` in epoch ms: a running one ends at ``now`` (never
    before it started); one not started is ``(None, None, False)``."""
    start = timestamp_ms(row.started_at)
    if start is None:
        return None, None, False
    end = timestamp_ms(row.finished_at)
    if end is None:
        return start, max(start, now_ms), True
    return start, max(start, end), False


def format_offset(ms: int, step_ms: int) -> str:
    """A tick's label, an offset from the start: ``0``, ``1.5 s`` (sub-second steps), ``45 s``,
    ``2 m 30 s``, ``1 h 05 m``, ``2 d 3 h``. Integer arithmetic only."""
    if ms == 0:
        return "0"
    days, hours = ms // _DAY, ms // 3_600_000 % 24
    minutes, seconds, rest = ms // 60_000 % 60, ms // 1000 % 60, ms % 1000
    if days:
        return f"{days} d" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes:02d} m" if minutes else "")
    if minutes:
        return f"{minutes} m" + (f" {seconds:02d} s" if seconds else "")
    if rest and step_ms < 1000:
        digits = 1 if step_ms % 100 == 0 else 2 if step_ms % 10 == 0 else 3
        return f"{seconds}.{f'{rest:03d}'[:digits].rstrip('0')} s"
    return f"{seconds} s"


def time_scale(start_ms: int, end_ms: int, x0: int, width: int, min_tick_px: int = 72) -> TimeScale:
    """An axis over ``start_ms``..``end_ms`` (``end_ms`` > ``start_ms``) with the smallest nice
    step whose ticks are ``min_tick_px`` apart or more (compared exactly, in integers)."""
    span = end_ms - start_ms
    step = next((s for s in NICE_STEPS_MS if s * width >= min_tick_px * span), 0)
    k = 0
    while not step:  # more than a day per tick: 1, 2, 5, 10, 20 … days
        days = (1, 2, 5)[k % 3] * 10 ** (k // 3)
        if _DAY * days * width >= min_tick_px * span:
            step = _DAY * days
        k += 1
    ticks = tuple(
        (t, x0 + t * width / span, format_offset(t, step)) for t in range(0, span + 1, step)
    )
    return TimeScale(start_ms, end_ms, x0, width, step, ticks)


def timeline_layout(
    state: ExecutionState,
    order: Sequence[str],
    now_ms: int,
    options: TimelineOptions | None = None,
) -> TimelineLayout:
    """Rows (in ``order``, then the rest in state order), their bars and the axis, at ``now_ms``
    (which moves only running bars and a running execution's end)."""
    o = options or TimelineOptions()
    rows_by_id = {row.agent_id: row for row in state.agents}
    ids = list(dict.fromkeys(v for v in order if v in rows_by_id))
    listed = set(ids)
    ids += [v for v in rows_by_id if v not in listed]
    spans = {v: agent_span(rows_by_id[v], now_ms) for v in ids}
    starts = [s for s, _, _ in spans.values() if s is not None]
    ends = [e for _, e, _ in spans.values() if e is not None]
    begin = timestamp_ms(state.started_at)
    t0 = min([begin, *starts]) if begin is not None else min(starts, default=now_ms)
    finished = timestamp_ms(state.finished_at)
    t1 = max([finished if finished is not None else now_ms, *ends])
    t1 = max(t1, t0 + o.min_span_ms)
    plot = o.timeline_width - o.label_width - o.right_pad
    scale = time_scale(t0, t1, o.label_width, plot, o.min_tick_px)
    rows = []
    for i, v in enumerate(ids):
        start, end, running = spans[v]
        y = o.axis_height + i * o.row_height
        if start is None or end is None:
            rows.append(TimelineRow(v, y, None, None, False, None, None))
        else:
            rows.append(TimelineRow(v, y, start, end, running, scale.x(start), scale.x(end)))
    height = o.axis_height + len(ids) * o.row_height + o.bottom_pad
    return TimelineLayout(scale, tuple(rows), o.timeline_width, height)
