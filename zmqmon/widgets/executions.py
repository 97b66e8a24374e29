"""``ExecutionsMonitor``: the live list of a service's executions (a small Flower in the notebook).

It starts from the state service's ``executions`` op, then a :class:`~zmqmon.widgets.feed.Feed`
thread subscribes to ``exec/`` and folds every event into its execution's state with the one
reducer; an execution it has not seen yet is fetched by ``snapshot`` first. The table is
re-rendered at most ~10 times a second, as one HTML value.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets
import traitlets
import zmq

from zmqmon.config import from_env
from zmqmon.core.delivery import Delivery, Snapshot
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.wire import EXEC_PREFIX
from zmqmon.errors import NotFoundError, ZmqmonError
from zmqmon.shells.curve import CurveClient
from zmqmon.widgets.feed import Feed, SubscriberLike
from zmqmon.widgets.view import STATUS_COLOURS, badge_html, execution_row

__all__ = ["ExecutionsMonitor"]

_CSS = "font-family:var(--jp-ui-font-family,sans-serif);font-size:0.9em;"
_MONO = "font-family:var(--jp-code-font-family,monospace);"


def _summary(state: ExecutionState) -> dict[str, Any]:
    return {
        "executionId": state.execution_id,
        "workflowId": state.workflow_id,
        "workflowName": state.workflow_name,
        "status": state.status,
        "progress": state.progress,
        "startedAt": state.started_at,
        "finishedAt": state.finished_at,
        "lastSeq": state.last_seq,
    }


def _bar(progress: int, status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#6c757d")
    return (
        '<div style="background:#e9ecef;border-radius:3px;height:0.7em;width:8em;'
        f'display:inline-block;vertical-align:middle"><div class="zmqmon-bar" style="width:'
        f'{progress}%;background:{colour};height:100%;border-radius:3px"></div></div>'
        f' <span style="{_MONO}">{progress}%</span>'
    )


class _Source:
    """The feed thread's I/O: the subscriber plus a state client for unseen executions."""

    def __init__(self, subscriber: Any, client: Any) -> None:
        self.subscriber = subscriber
        self.client = client

    def recv(self, timeout: float | None = None) -> Delivery | None:
        item: Delivery | None = self.subscriber.recv(timeout=timeout)
        return item

    def close(self) -> None:
        try:
            self.subscriber.close()
        finally:
            if self.client is not None:
                self.client.close()


class ExecutionsMonitor(widgets.VBox):  # type: ignore[misc]
    """Every execution of one service, newest first: status, workflow, progress, start, duration.

    ``executions`` maps execution id → its current state; ``value`` (a synced trait) is the
    list of rows shown, as dicts (``executionId``, ``workflowName``, ``status``, ``progress``…).
    """

    value: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)

    def __init__(
        self,
        *,
        events: str | None = None,
        state: str | None = None,
        limit: int = 50,
        interval: float = 0.1,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
        curve: CurveClient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.events_endpoint = from_env("events", events) or ""
        self.state_endpoint = from_env("state", state)
        self.limit = limit
        self._timeout = timeout
        self._context = context
        self._curve = curve
        self._lock = threading.RLock()
        self._closed = False
        self._client: Any = None
        self.executions: dict[str, ExecutionState] = {}
        if self.state_endpoint:
            from zmqmon.shells.client import StateClient

            with StateClient(
                self.state_endpoint, timeout=timeout, context=context, curve=curve
            ) as client:
                for st in client.executions(limit=limit):
                    self.executions[st.execution_id] = st
        self._header = widgets.HTML()
        self._table = widgets.HTML()
        self.children = [self._header, self._table]
        self.add_class("zmqmon-executions")
        self.layout.max_width = "64em"
        self._notice = ""
        self.render()
        self._feed = Feed(
            open=self._open,
            apply=self._apply,
            render=self.render,
            live=lambda: any(s.status == "running" for s in self.executions.values()),
            on_error=self._on_feed_error,
            interval=interval,
            name="zmqmon-executions",
        )
        self._feed.start()

    # -- model (feed thread) ----------------------------------------------------------------------

    def _open(self) -> SubscriberLike:
        from zmqmon.shells.subscriber import Subscriber

        # state mode: a list stays current during a flood (snapshots replace backlogs)
        sub = Subscriber(
            self.events_endpoint,
            self.state_endpoint,
            mode="state",
            context=self._context,
            curve=self._curve,
        )
        client = None
        try:
            sub.subscribe_topic(EXEC_PREFIX)
            if self.state_endpoint:
                from zmqmon.shells.client import StateClient

                client = StateClient(
                    self.state_endpoint,
                    timeout=self._timeout,
                    context=self._context,
                    curve=self._curve,
                )
        except BaseException:
            sub.close()
            raise
        self._client = client
        return _Source(sub, client)

    def _apply(self, item: Delivery) -> bool:
        if isinstance(item, Snapshot):
            old = self.executions.get(item.execution_id)
            if old is not None and old.last_seq >= item.state.last_seq:
                return False
            with self._lock:
                self.executions[item.execution_id] = item.state
            return True
        event = item
        current = self.executions.get(event.execution_id)
        if current is None and event.type != "execution:started" and self._client is not None:
            # Joined mid-execution: start from its snapshot; older events are then dropped.
            try:
                current = self._client.snapshot(event.execution_id)
            except (NotFoundError, ZmqmonError):
                current = None
        new = apply_event(current, event)
        if new is current:
            return False
        with self._lock:
            self.executions[event.execution_id] = new
            if len(self.executions) > self.limit * 2:
                self._trim()
        return True

    def _trim(self) -> None:
        keep = sorted(self.executions.values(), key=lambda s: s.started_at or "9999", reverse=True)
        self.executions = {s.execution_id: s for s in keep[: self.limit]}

    def _on_feed_error(self, exc: BaseException) -> None:
        self._notice = f"list stopped: {type(exc).__name__}: {exc}"
        self.render()

    # -- view -------------------------------------------------------------------------------------

    def rows(self, now: float | None = None) -> list[ExecutionState]:
        """The executions shown, newest first (at most ``limit``)."""
        with self._lock:
            states = list(self.executions.values())
        states.sort(key=lambda s: s.started_at or "9999", reverse=True)
        return states[: self.limit]

    def render(self) -> None:
        """Push the table to the front end (one HTML value)."""
        with self._lock:
            if self._closed:
                return
            now = time.time()
            states = self.rows(now)
            counts: dict[str, int] = {}
            for st in states:
                counts[st.status] = counts.get(st.status, 0) + 1
            summary = " ".join(f"{badge_html(k)} {v}" for k, v in sorted(counts.items()))
            header = (
                f'<div style="{_CSS}display:flex;gap:1em;align-items:center">'
                f"<b>Executions</b> <span>{summary or 'none yet'}</span>"
                f'<span style="{_MONO}color:#999;margin-left:auto">'
                f"{html.escape(self.events_endpoint)}</span></div>"
            )
            if self._notice:
                header += f'<div style="color:#dc3545">{html.escape(self._notice)}</div>'
            cells = []
            for st in states:
                row = execution_row(st, now)
                cells.append(
                    f'<tr data-execution-id="{html.escape(row.execution_id)}">'
                    f"<td>{badge_html(row.status)}</td>"
                    f"<td>{html.escape(row.workflow)}</td>"
                    f"<td>{_bar(row.progress, row.status)}</td>"
                    f'<td style="{_MONO}">{row.started}</td>'
                    f'<td style="{_MONO}">{html.escape(row.duration)}</td>'
                    f'<td style="{_MONO}color:#888">{html.escape(row.execution_id[:12])}</td></tr>'
                )
            table = (
                f'<table class="zmqmon-table" style="{_CSS}border-collapse:collapse;width:100%">'
                '<thead><tr style="text-align:left;border-bottom:1px solid #ccc">'
                "<th>status</th><th>workflow</th><th>progress</th><th>started (UTC)</th>"
                "<th>duration</th><th>id</th></tr></thead><tbody>"
                + "".join(cells)
                + "</tbody></table>"
            )
            if self._header.value != header:
                self._header.value = header
            if self._table.value != table:
                self._table.value = table
            value = [_summary(s) for s in states]
            if value != self.value:
                self.value = value

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def feed_alive(self) -> bool:
        """True while the background thread reads events."""
        return self._feed.alive

    def close(self) -> None:
        """Stop the feed thread (its sockets close with it), then close the widgets."""
        self._feed.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._header.close()
        self._table.close()
        super().close()

    def __repr__(self) -> str:
        return f"<ExecutionsMonitor {self.events_endpoint} {len(self.executions)} executions>"
