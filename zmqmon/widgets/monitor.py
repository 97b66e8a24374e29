"""``ExecutionMonitor``: one execution, live, as an ipywidgets box.

It starts from the state service's snapshot (a late join shows the right state at once), then a
:class:`~zmqmon.widgets.feed.Feed` thread applies the Subscriber's repaired events with the one
reducer and pushes the view at most ~10 times a second. The thread ends, after a final render,
when the execution ends or the widget is closed.

Beside the agent rows it draws the run's graph and timeline (:mod:`zmqmon.widgets.graph`, from
the same state), and a replay bar (:mod:`zmqmon.widgets.replay`) shows every part of it as of
any seq.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import traitlets
import zmq

from zmqmon.config import from_env
from zmqmon.core.delivery import Delivery, Snapshot
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.errors import ConflictError, ZmqmonError
from zmqmon.shells.curve import CurveClient
from zmqmon.widgets.feed import Feed, SubscriberLike
from zmqmon.widgets.graph import GraphViews
from zmqmon.widgets.replay import ReplayBar
from zmqmon.widgets.view import AgentRow, ExecutionView, badge_html, execution_view, format_event

__all__ = ["ExecutionMonitor"]

_CSS = "font-family:var(--jp-ui-font-family,sans-serif);"
_PROGRESS = frozenset({"agent:progress", "execution:progress"})
_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:0.8em;"


def _set(widget: widgets.Widget, **traits: Any) -> None:
    """Assign only what changed, in one comm message per widget."""
    changed = {k: v for k, v in traits.items() if getattr(widget, k) != v}
    if not changed:
        return
    with widget.hold_sync():
        for key, value in changed.items():
            setattr(widget, key, value)


class _AgentRow:
    """The widgets of one agent's row: name, status badge, progress bar, duration, error."""

    def __init__(self) -> None:
        self.name = widgets.HTML(layout=widgets.Layout(width="10em", overflow="hidden"))
        self.badge = widgets.HTML(layout=widgets.Layout(width="7em"))
        self.bar = widgets.IntProgress(
            min=0, max=100, value=0, layout=widgets.Layout(flex="1 1 auto", width="auto")
        )
        self.duration = widgets.HTML(layout=widgets.Layout(width="6em"))
        self.error = widgets.HTML(layout=widgets.Layout(display="none", margin="0 0 0 10em"))
        line = widgets.HBox(
            [self.name, self.badge, self.bar, self.duration],
            layout=widgets.Layout(align_items="center", width="100%"),
        )
        self.box = widgets.VBox([line, self.error], layout=widgets.Layout(width="100%"))
        self.all: list[widgets.Widget] = [
            self.name,
            self.badge,
            self.bar,
            self.duration,
            self.error,
            line,
            self.box,
        ]

    def update(self, row: AgentRow) -> None:
        _set(
            self.name,
            value=f'<span style="{_CSS}" title="{html.escape(row.agent_id)}">'
            f"{html.escape(row.name)}</span>",
        )
        _set(self.badge, value=badge_html(row.status))
        _set(self.bar, value=row.progress, bar_style=row.bar_style)
        _set(self.duration, value=f'<span style="{_MONO}">{html.escape(row.duration)}</span>')
        if row.error:
            _set(
                self.error,
                value=f'<span style="color:#dc3545;{_MONO}">{html.escape(row.error)}</span>',
            )
        _set(self.error.layout, display="" if row.error else "none")


class ExecutionMonitor(widgets.VBox):  # type: ignore[misc]
    """A live view of one execution: name, status, elapsed time, progress, replay bar, graph,
    timeline, agents, events, Cancel.

    ``state`` is the current :class:`~zmqmon.core.state.ExecutionState`; ``value`` (a synced
    trait) is its wire form (camelCase dict) as of the last render, so it is what the front end
    and a saved notebook's widget state hold. While the replay bar shows an earlier seq, the
    views draw that state; ``state`` and ``value`` stay live.
    """

    value = traitlets.Dict().tag(sync=True)

    def __init__(
        self,
        execution_id: str,
        *,
        events: str | None = None,
        state: str | None = None,
        log_size: int = 200,
        interval: float = 0.1,
        timeout: float = 5.0,
        heartbeat_timeout: float = 3.0,
        context: zmq.Context[Any] | None = None,
        curve: CurveClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.execution_id = execution_id
        self._heartbeat_timeout = heartbeat_timeout
        self.events_endpoint = from_env("events", events) or ""
        self.state_endpoint = from_env("state", state)
        self._timeout = timeout
        self._context = context
        self._curve = curve
        self._lock = threading.RLock()
        self._log: deque[Event] = deque(maxlen=max(1, log_size))
        self._notice = ""
        self._closed = False
        self._states: Mapping[str, ExecutionState] = {}
        self._state_behind = False  # progress applied by the subscriber, not yet read here
        self.state: ExecutionState = self._initial_state()
        self._seen_seq = self.state.last_seq
        #: None until the first heartbeat; then whether the event stream's publisher is alive
        self.publisher_alive: bool | None = None

        self._header = widgets.HTML()
        # The overall row is laid out like an agent row: label, percentage, bar, agents done.
        self._bar = widgets.IntProgress(
            min=0, max=100, layout=widgets.Layout(flex="1 1 auto", width="auto")
        )
        self._bar.add_class("zmqmon-overall")
        self._percent = widgets.HTML(layout=widgets.Layout(width="7em"))
        self._done = widgets.HTML(layout=widgets.Layout(width="6em"))
        overall_label = widgets.HTML(
            f'<b style="{_CSS}">Overall</b>', layout=widgets.Layout(width="10em")
        )
        overall = widgets.HBox(
            [overall_label, self._percent, self._bar, self._done],
            layout=widgets.Layout(align_items="center", width="100%"),
        )
        self._rows: list[_AgentRow] = []
        self._agents = widgets.VBox(layout=widgets.Layout(width="100%"))
        self._log_view = widgets.HTML()
        self._log_box = widgets.Accordion(children=[self._log_view], selected_index=None)
        self._log_box.set_title(0, "Events")
        # The graph and timeline: one HTML widget of inline SVG, re-rendered less often than
        # the rows when the run is large (its HTML grows with the agents).
        self._graphs = GraphViews()
        # (no margin: a widget's default 2 px, beside width 100 %, pushes the boxes' right edge
        # past the monitor's, which clips it)
        self._views = widgets.HTML(layout=widgets.Layout(width="100%", margin="0"))
        self._views.add_class("zmqmon-views-box")
        self._views_at = -1e9
        self._interval = interval
        self._replay = ReplayBar(self._fetch_events if self.state_endpoint else None, self.render)
        self._cancel = widgets.Button(
            description="Cancel", button_style="danger", tooltip="Cancel this execution"
        )
        self._cancel.on_click(self._on_cancel)
        self._footer = widgets.HTML()
        actions = widgets.HBox(
            [self._cancel, self._footer], layout=widgets.Layout(align_items="center")
        )
        self._owned: list[widgets.Widget] = [
            self._header,
            self._bar,
            self._percent,
            self._done,
            overall_label,
            overall,
            self._agents,
            self._views,
            *self._replay.all,
            self._log_view,
            self._log_box,
            self._cancel,
            self._footer,
            actions,
        ]
        self.children = [
            self._header,
            overall,
            self._replay.box,
            self._views,
            self._agents,
            self._log_box,
            actions,
        ]
        self.add_class("zmqmon-monitor")
        self.layout.width = "100%"
        self.layout.max_width = "56em"
        self.render()
        self._feed = Feed(
            open=self._open,
            apply=self._apply,
            render=self.render,
            finished=self._finished,
            live=lambda: self.state.status == "running",
            on_error=self._on_feed_error,
            interval=interval,
            name=f"zmqmon-monitor-{execution_id[:8]}",
        )
        if not self.state.is_terminal:
            self._feed.start()

    # -- model ------------------------------------------------------------------------------------

    def _initial_state(self) -> ExecutionState:
        if not self.state_endpoint:
            return ExecutionState(execution_id=self.execution_id, workflow_id="")
        from zmqmon.shells.client import StateClient

        with StateClient(
            self.state_endpoint, timeout=self._timeout, context=self._context, curve=self._curve
        ) as c:
            return c.snapshot(self.execution_id)

    def _open(self) -> SubscriberLike:
        from zmqmon.shells.subscriber import Subscriber

        sub = Subscriber(
            self.events_endpoint,
            self.state_endpoint,
            mode="state",  # current during a flood: a snapshot replaces a backlog
            context=self._context,
            curve=self._curve,
            heartbeat_timeout=self._heartbeat_timeout,
            on_publisher_change=self._on_publisher_change,
        )
        try:
            after = self.state.last_seq if self.state.last_seq or self.state_endpoint else None
            snapshot = sub.subscribe_execution(self.execution_id, after_seq=after)
        except BaseException:
            sub.close()
            raise
        if snapshot is not None and snapshot.last_seq > self.state.last_seq:
            self.state = snapshot
            self._seen_seq = snapshot.last_seq
        self._states = sub.states
        return sub

    def _apply(self, item: Delivery) -> bool:
        if isinstance(item, Snapshot):
            if item.execution_id != self.execution_id or item.state.last_seq <= self._seen_seq:
                return False
            self._seen_seq = item.state.last_seq
            self.state = item.state
            return True
        event = item
        if event.execution_id != self.execution_id or event.seq <= self._seen_seq:
            return False
        self._seen_seq = event.seq
        self._log.append(event)
        if event.type in _PROGRESS:
            # A flood is progress: read the state once per render, not once per event (the
            # subscriber folds progress lazily, see zmqmon.core.states).
            self._state_behind = True
            return True
        self._catch_up_state(event)
        return True

    def _catch_up_state(self, event: Event | None = None) -> None:
        # The subscriber already folds every event it has received with the one reducer (it
        # may be a few events ahead of the one delivered): reuse its state. Fall back to folding
        # here if it has none.
        self._state_behind = False
        new = self._states.get(self.execution_id)
        if (new is None or new.last_seq < self._seen_seq) and event is not None:
            # Without a snapshot (no state service) the first event starts the state.
            new = apply_event(self.state if self.state.workflow_id else None, event)
        if new is not None and new.last_seq > self.state.last_seq:
            self.state = new

    def _finished(self) -> bool:
        # Ended, and every event up to the end delivered (the log shows the terminal event).
        return self.state.is_terminal and self._seen_seq >= self.state.last_seq

    def _fetch_events(self, after_seq: int) -> tuple[list[Event], int]:
        # (the replay bar's, in the comm thread: a client of its own, as sockets are per thread)
        from zmqmon.shells.client import StateClient

        assert self.state_endpoint
        with StateClient(self.state_endpoint, timeout=self._timeout, context=self._context) as c:
            return c.events(self.execution_id, after_seq, 1000)

    def _views_due(self, state: ExecutionState) -> bool:
        if state.is_terminal or self._replay.replaying:
            return True  # the end state, and a drag, are drawn at once
        wait = self._interval * max(1.0, len(state.agents) / 100)
        return time.monotonic() - self._views_at >= wait

    def _on_publisher_change(self, alive: bool) -> None:
        # Heartbeats stopped (or came back): say so; the next render shows it.
        self.publisher_alive = alive
        if not alive:
            self._notice = "no heartbeat from the publisher: waiting for the event stream…"
        elif self._notice.startswith("no heartbeat"):
            self._notice = ""
        self._feed.throttle.note()

    def _on_feed_error(self, exc: BaseException) -> None:
        self._notice = f"monitor stopped: {type(exc).__name__}: {exc}"
        self.render()

    # -- view -------------------------------------------------------------------------------------

    def view(self, now: float | None = None) -> ExecutionView:
        """The view model of the current state."""
        return execution_view(self.state, time.time() if now is None else now)

    def render(self) -> None:
        """Push the current state to the widgets (only what changed; one message per widget)."""
        with self._lock:
            if self._closed:
                return
            if self._state_behind and self._feed.owns_thread():
                self._catch_up_state()  # (the subscriber's states belong to the feed thread)
            live = self.state
            replayed = self._replay.state if self._replay.replaying else None
            state = replayed or live
            at = self._replay.time_at()
            now = time.time() if replayed is None or at is None else at / 1000
            view = execution_view(state, now)
            header = (
                f'<div style="{_CSS}display:flex;gap:0.8em;align-items:center">'
                f'<b style="font-size:1.15em">{html.escape(view.title)}</b> {view.badge}'
                f'<span style="{_MONO}color:#666">{html.escape(view.elapsed)}</span>'
                f'<span style="{_MONO}color:#999;margin-left:auto">'
                f"{html.escape(state.execution_id)}</span></div>"
            )
            if view.error:
                header += f'<div style="color:#dc3545;{_MONO}">{html.escape(view.error)}</div>'
            _set(self._header, value=header)
            _set(self._bar, value=view.progress, bar_style=view.bar_style)
            _set(self._percent, value=f'<span style="{_MONO}">{view.progress}%</span>')
            done = sum(a.status == "completed" for a in view.agents)
            _set(
                self._done,
                value=f'<span style="{_MONO}color:#666">{done}/{len(view.agents)} done</span>',
            )
            while len(self._rows) < len(view.agents):
                self._rows.append(_AgentRow())
            if len(self._agents.children) != len(view.agents):
                self._agents.children = [r.box for r in self._rows[: len(view.agents)]]
            for row_widgets, row in zip(self._rows, view.agents, strict=False):
                row_widgets.update(row)
            if self._views_due(state):
                self._views_at = time.monotonic()
                _set(self._views, value=self._graphs.html(state, int(now * 1000)))
            self._replay.follow(live.last_seq, live.is_terminal)
            # Newest first: the latest events are visible without scrolling.
            shown = self._replay.events(self._log.maxlen or 1) if replayed else list(self._log)
            lines = [html.escape(format_event(e)) for e in reversed(shown)]
            _set(
                self._log_view,
                value=(
                    f'<pre style="{_MONO}max-height:14em;overflow:auto;margin:0;line-height:1.45">'
                    + ("\n".join(lines) or "(no events since the snapshot)")
                    + "</pre>"
                ),
            )
            _set(self._cancel, disabled=live.is_terminal)
            _set(
                self._footer,
                value=f'<span style="{_MONO}color:#666;margin-left:1em">'
                f"{html.escape(self._notice)}</span>",
            )
            value = live.to_json_dict()
            if value != self.value:
                self.value = value

    def _on_cancel(self, _button: Any = None) -> None:
        self.cancel()

    def cancel(self, reason: str | None = None) -> bool:
        """Ask the state service to cancel the execution; False if it had already finished."""
        if not self.state_endpoint:
            raise ZmqmonError("no state service endpoint: cannot cancel")
        from zmqmon.shells.client import StateClient

        self._cancel.disabled = True
        try:
            with StateClient(
                self.state_endpoint, timeout=self._timeout, context=self._context, curve=self._curve
            ) as client:
                client.cancel(self.execution_id, reason)
        except ConflictError:
            self._notice = "already finished"
            return False
        except ZmqmonError as exc:
            self._notice = f"cancel failed: {exc}"
            self._cancel.disabled = self.state.is_terminal
            return False
        finally:
            self.render()
        self._notice = "cancel requested"
        self.render()
        return True

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def feed_alive(self) -> bool:
        """True while the background thread reads events."""
        return self._feed.alive

    def wait(self, timeout: float | None = None) -> ExecutionState:
        """Block until the feed has ended (execution finished, closed or failed); the state."""
        self._feed.join(timeout)
        return self.state

    def close(self) -> None:
        """Stop the feed thread (its sockets close with it), then close the widgets."""
        self._feed.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for child in [*self._owned, *(w for r in self._rows for w in r.all)]:
            child.close()
        super().close()

    def __repr__(self) -> str:
        return f"<ExecutionMonitor {self.execution_id} {self.state.status} {self.state.progress}%>"
