"""The widgets' I/O shell: a background thread that owns the SUB socket and feeds a view.

Why a thread and not an asyncio task on the kernel's loop: a task only runs while the kernel is
idle or awaiting, so a cell blocked in ``execution.wait()`` or ``time.sleep`` would freeze the
monitor. A thread keeps reading — and ipykernel ≥ 7.1 sends comm messages from threads.

The thread applies *every* event (through the one reducer, in the model callbacks) but renders
at most once per ``interval`` (:class:`~zmqmon.widgets.view.RenderThrottle`), plus a slow tick
while something runs (elapsed times move), plus a final render before it stops.

ZeroMQ sockets are not thread-safe, so the subscriber (and any state client the thread needs) is
created, used and closed inside the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from zmqmon.core.delivery import Delivery
from zmqmon.widgets.view import RenderThrottle

__all__ = ["Feed", "SubscriberLike"]

log = logging.getLogger(__name__)


class SubscriberLike(Protocol):
    """What the feed needs of :class:`zmqmon.shells.subscriber.Subscriber`."""

    def recv(self, timeout: float | None = None) -> Delivery | None: ...

    def close(self) -> None: ...


class Feed:
    """Runs ``open → (recv, apply, maybe render)* → final render → close`` in a daemon thread.

    - ``open()`` (in the thread) creates and subscribes the subscriber; it may raise, and the
      error is handed to ``on_error`` (the widget shows it) and the thread ends.
    - ``apply(item)`` folds one event (or a ``state``-mode snapshot, which replaces the state)
      into the model; returns True if the view changed.
    - ``render()`` pushes the model to the widget (one batched update).
    - ``finished()`` is True once nothing more will come (the execution ended).
    - ``live()`` is True while elapsed times move (re-render every ``tick`` seconds).
    """

    def __init__(
        self,
        *,
        open: Callable[[], SubscriberLike],
        apply: Callable[[Delivery], bool],
        render: Callable[[], None],
        finished: Callable[[], bool] = lambda: False,
        live: Callable[[], bool] = lambda: False,
        on_error: Callable[[BaseException], None] | None = None,
        interval: float = 0.1,
        tick: float = 1.0,
        name: str = "zmqmon-feed",
    ) -> None:
        self._open = open
        self._apply = apply
        self._render = render
        self._finished = finished
        self._live = live
        self._on_error = on_error
        self.throttle = RenderThrottle(interval, time.monotonic)
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        #: events applied so far (a figure for benchmarks and tests)
        self.events_applied = 0
        #: CPU seconds this thread used (set when it ends)
        self.cpu_seconds = 0.0
        self.error: BaseException | None = None

    def start(self) -> Feed:
        """Start the thread (once)."""
        self._thread.start()
        return self

    def owns_thread(self) -> bool:
        """Is the caller the feed's own thread (where the subscriber may be used)?"""
        return threading.current_thread() is self._thread

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (its sockets are closed when it returns)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end by itself; True if it did (or never started)."""
        if self._thread.ident is None:  # never started: nothing to wait for
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _safe_render(self) -> None:
        try:
            self._render()
        except Exception:  # a broken front end must not kill the feed
            log.exception("zmqmon monitor: render failed")

    def _run(self) -> None:
        cpu_start = time.thread_time()
        subscriber: SubscriberLike | None = None
        try:
            subscriber = self._open()
            self._safe_render()  # what open() learnt (snapshot) shows at once
            self.throttle.rendered()
            self._loop(subscriber)
        except Exception as exc:
            self.error = exc
            if self._on_error is not None:
                try:
                    self._on_error(exc)
                except Exception:
                    log.exception("zmqmon monitor: error handler failed")
        finally:
            if subscriber is not None:
                try:
                    subscriber.close()
                except Exception:
                    log.exception("zmqmon monitor: closing the subscriber failed")
            self.cpu_seconds = time.thread_time() - cpu_start

    def _loop(self, subscriber: SubscriberLike) -> None:
        throttle = self.throttle
        last_render = time.monotonic()
        while not self._stop.is_set():
            if self._finished():
                break
            event = subscriber.recv(timeout=throttle.wait_time(idle=min(self._tick, 0.25)))
            if event is not None:
                self.events_applied += 1
                if self._apply(event):
                    throttle.note()
            now = time.monotonic()
            if throttle.due(now) or (self._live() and now - last_render >= self._tick):
                self._safe_render()
                throttle.rendered(now)
                last_render = now
        # The final render: whatever was applied since the last one reaches the front end.
        if throttle.flush() or self._finished():
            self._safe_render()
            throttle.rendered(time.monotonic())

    def __repr__(self) -> str:
        state = "alive" if self.alive else "stopped"
        return f"<Feed {self._thread.name} {state} events={self.events_applied}>"
