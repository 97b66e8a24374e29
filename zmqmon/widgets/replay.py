"""The notebook monitor's replay bar: a seq scrubber, a "Live" button and where it stands.

Dragging the slider shows the execution as of that seq: the events are fetched from the state
service once (then only what is new, page by page) into a :class:`~zmqmon.core.history.History`,
and the state is the one reducer's fold of them, checkpointed so a drag stays cheap. "Live"
returns to the monitor's own state. The monitor draws whichever :attr:`ReplayBar.state` says.

Threads: the slider's changes arrive in the kernel's comm thread; the monitor's feed thread
moves the slider along while live (``follow``), flagged per thread so that its own moves are
not taken for the user's. ``max`` and ``value`` go to the front end in two messages, ``max``
first: JupyterLab's slider, handed both at once, applies the new ``max`` with the old value and
sends that old value back, which would read as a drag. While live and running, the bar follows
at most once a second (its two messages would otherwise double the monitor's render rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as widgets

from zmqmon.core.events import Event
from zmqmon.core.history import History
from zmqmon.core.state import ExecutionState
from zmqmon.errors import ZmqmonError

__all__ = ["EventsFetch", "ReplayBar"]

#: ``fetch(after_seq)`` → ``(events after it, in order, one page; the execution's lastSeq)``
EventsFetch = Callable[[int], tuple[list[Event], int]]

_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:0.8em;"
_FOLLOW_INTERVAL = 1.0  # seconds between moves of the slider while live and running


class ReplayBar:
    """The scrubber. ``seq`` is None while live; otherwise ``state`` is the state at ``seq``."""

    def __init__(self, fetch: EventsFetch | None, on_change: Callable[[], None]) -> None:
        self._fetch = fetch
        self._on_change = on_change
        self._local = threading.local()
        self.history = History()
        self.seq: int | None = None
        self.state: ExecutionState | None = None
        self._followed_at = -1e9
        self.error = ""
        self.slider = widgets.IntSlider(
            value=0,
            min=0,
            max=0,
            description="replay",
            continuous_update=True,
            readout=False,
            disabled=fetch is None,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
            style={"description_width": "4em"},
        )
        self.slider.add_class("zmqmon-replay-seq")
        self.live_button = widgets.Button(
            description="Live", disabled=True, tooltip="back to the live state",
            layout=widgets.Layout(width="5em"),
        )  # fmt: skip
        self.live_button.add_class("zmqmon-replay-live")
        self.label = widgets.HTML(layout=widgets.Layout(width="13em", margin="0 0 0 1em"))
        self.box = widgets.HBox(
            [self.slider, self.label, self.live_button],
            layout=widgets.Layout(align_items="center", width="100%"),
        )
        self.box.add_class("zmqmon-replay")
        self.all: list[widgets.Widget] = [self.slider, self.live_button, self.label, self.box]
        self.slider.observe(self._moved, names="value")
        self.live_button.on_click(lambda _button: self.live())

    @property
    def replaying(self) -> bool:
        """True while a seq other than the live one is shown."""
        return self.seq is not None

    def _moved(self, change: dict[str, Any]) -> None:
        if getattr(self._local, "following", False):
            return  # the monitor moved it (live), not the user
        self.seek(int(change["new"]))

    def _load(self, seq: int) -> None:
        if self._fetch is None:
            raise ZmqmonError("replay needs the state service (state=…)")
        while self.history.last_seq < seq:
            page, last = self._fetch(self.history.last_seq)
            if not self.history.extend(page):
                break
            if self.history.last_seq >= last:
                break

    def seek(self, seq: int) -> ExecutionState | None:
        """Show the state as of ``seq`` (events fetched as needed); the state, or None."""
        try:
            self._load(seq)
        except ZmqmonError as exc:
            self.error = f"replay: {exc}"
            self._on_change()
            return None
        self.error = ""
        first = self.history.first_seq or 1
        self.seq = max(first, min(seq, self.history.last_seq))
        self.state = self.history.state_at(self.seq)
        self._on_change()
        return self.state

    def live(self) -> None:
        """Back to the live state."""
        self.seq = None
        self.state = None
        self._followed_at = -1e9  # show it at once
        self._on_change()

    def time_at(self) -> int | None:
        """The instant (epoch ms) of the seq shown, or None while live."""
        return None if self.seq is None else self.history.time_at(self.seq)

    def events(self, limit: int) -> list[Event]:
        """The last ``limit`` events up to the seq shown."""
        return [] if self.seq is None else self.history.events_upto(self.seq, limit)

    def follow(self, last_seq: int, ended: bool = False) -> None:
        """Called on every render: the slider spans 1..``last_seq``, and sits at the end while
        live; the label says where it stands. Live and not ``ended``: once a second at most."""
        now = time.monotonic()
        if self.seq is None and not ended and now - self._followed_at < _FOLLOW_INTERVAL:
            return
        self._followed_at = now
        self._local.following = True
        try:
            top = max(last_seq, self.history.last_seq)
            if self.slider.max != top:
                self.slider.max = top
            if self.slider.min != min(1, top):
                self.slider.min = min(1, top)
            value = top if self.seq is None else self.seq
            if self.slider.value != value:
                self.slider.value = value
        finally:
            self._local.following = False
        if self.error:
            text = self.error
        elif self.seq is None:
            text = f"live · seq {last_seq}"
        else:
            text = f"seq {self.seq} of {top}"
        html = f'<span style="{_MONO}color:var(--jp-ui-font-color2,#666)">{escape(text)}</span>'
        if self.label.value != html:
            self.label.value = html
        if self.live_button.disabled == (self.seq is not None):
            self.live_button.disabled = self.seq is None
            self.live_button.button_style = "" if self.seq is None else "info"
