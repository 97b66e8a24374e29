"""Progress coalescing, as tqdm does it: many ``progress()`` calls, few events.

Pure: no threads, no sockets; the clock and the sender are handed in. An agent may call
:meth:`ProgressCoalescer.report` a million times; at most one send happens per ``interval``
seconds (0 = every call), the latest value wins, and :meth:`ProgressCoalescer.flush` sends the
last value if it was not sent yet (the executor flushes before ``agent:completed``).

The hot path takes no lock: a coalescer belongs to one agent, and an agent reports from one thread
(its worker thread, or the event loop). ``flush`` runs after the agent returned. The sender is
where thread-safety lives (the executor's sender takes its run lock, at most once per interval).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["ProgressCoalescer", "clamp_percent"]

Sender = Callable[[int, "str | None"], None]


def clamp_percent(percent: float) -> int:
    """``percent`` as an int in 0–100 (NaN → 0). Raises ``TypeError`` for non-numbers."""
    if percent != percent:  # NaN
        return 0
    if percent <= 0:
        return 0
    if percent >= 100:
        return 100
    return int(percent)


class ProgressCoalescer:
    """Coalesces one agent's progress reports into at most one send per ``interval`` seconds.

    ``clock`` returns monotonic seconds; ``send(percent, message)`` delivers one update.
    """

    __slots__ = ("_clock", "_interval", "_last_sent", "_latest", "_message", "_pending", "_send")

    def __init__(self, send: Sender, *, interval: float, clock: Callable[[], float]) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self._send = send
        self._interval = interval
        self._clock = clock
        # -inf: the first report always goes out at once.
        self._last_sent = float("-inf")
        self._latest = 0
        self._message: str | None = None
        self._pending = False

    def report(self, percent: float, message: str | None = None) -> None:
        """Record a value; send it if the interval since the last send has passed."""
        # Inline clamp: this is the per-call hot path (< 1 µs budget).
        if percent != percent or percent <= 0:
            value = 0
        elif percent >= 100:
            value = 100
        else:
            value = int(percent)
        now = self._clock()
        if now - self._last_sent >= self._interval:
            self._last_sent = now
            self._pending = False
            self._latest = value
            self._message = message
            self._send(value, message)
        else:
            self._latest = value
            self._message = message
            self._pending = True

    def flush(self) -> None:
        """Send the latest value if a report since the last send was held back."""
        if self._pending:
            self._pending = False
            self._last_sent = self._clock()
            self._send(self._latest, self._message)

    @property
    def latest(self) -> int:
        """The latest reported value (sent or not)."""
        return self._latest

    @property
    def message(self) -> str | None:
        """The message of the latest report."""
        return self._message

    @property
    def pending(self) -> bool:
        """True if a report is held back (``flush`` would send it)."""
        return self._pending
