"""``zmqmon tail``: print execution events live, from any ZeroMQ event stream.

* ``zmqmon tail ID``: a snapshot line, then every later event of that execution (repaired: none
  lost, none twice); exits when it ends — 0 if it completed, 1 if it failed or was cancelled.
* ``zmqmon tail`` / ``--topic PREFIX``: every execution (``exec/``) or a raw prefix, until
  Ctrl-C (exit 0).
* ``--json``: stdout carries one event per line, exactly the wire JSON, for pipes; the snapshot
  line and every notice go to stderr. Without it, a human line per event: time (UTC), short
  execution id, the type colour-coded, agent, progress, message or error.

A lost publisher (no heartbeat) and its return are reported on stderr. Exit 2 when the state
service cannot be reached for the snapshot.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from rich.console import Console
from rich.text import Text

from zmqmon.core.delivery import Delivery, Snapshot
from zmqmon.core.events import Event, event_to_dict
from zmqmon.core.state import ExecutionState
from zmqmon.core.wire import EXEC_PREFIX, dumps
from zmqmon.errors import ZmqmonError
from zmqmon.shells.curve import client_keys
from zmqmon.shells.subscriber import Subscriber

__all__ = ["format_event", "format_snapshot", "tail"]

_TYPE_STYLES = {
    "execution:started": "bold blue",
    "execution:progress": "blue",
    "execution:completed": "bold green",
    "execution:failed": "bold red",
    "execution:cancelled": "bold yellow",
    "agent:started": "cyan",
    "agent:progress": "dim cyan",
    "agent:completed": "green",
    "agent:failed": "red",
}
_STATUS_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


def _short(execution_id: str) -> str:
    return execution_id[:8]


_NAME_WIDTH = 16


def format_event(event: Event) -> Text:
    """One human line: ``10:00:10.000  3f2a1b9c  agent:progress  DataCollector  40%  step 4``."""
    line = Text()
    line.append(event.timestamp[11:23], style="dim")
    line.append(f"  {_short(event.execution_id)}  ")
    line.append(f"{event.type:<20}", style=_TYPE_STYLES.get(event.type, ""))
    data = event.data
    name = getattr(data, "agent_name", None) or ""
    if len(name) > _NAME_WIDTH:
        name = name[: _NAME_WIDTH - 1] + "…"
    # A fixed-width agent column keeps progress and messages aligned down the screen.
    line.append(f"  {name:<{_NAME_WIDTH}}", style="bold")
    if event.type == "execution:started":
        line.append(f"  {data.workflow_name} ({data.agent_count} agents)")  # type: ignore[union-attr]
    progress = getattr(data, "progress", None)
    if progress is not None:
        line.append(f"  {progress:>3}%")
    message = getattr(data, "message", None)
    if message:
        line.append(f"  {message}")
    error = getattr(data, "error", None)
    if error:
        line.append(f"  {getattr(data, 'error_type', 'Error')}: {error}", style="red")
    reason = getattr(data, "reason", None)
    if reason:
        line.append(f"  {reason}", style="yellow")
    duration = getattr(data, "duration_ms", None)
    if duration is not None and event.type.endswith(":completed"):
        line.append(f"  {duration} ms", style="dim")
    return line


def format_snapshot(state: ExecutionState) -> Text:
    """The snapshot line: status, progress, agents done, last seq."""
    done = sum(1 for a in state.agents if a.status == "completed")
    line = Text()
    line.append(f"snapshot  {_short(state.execution_id)}  ")
    line.append(state.status, style=_STATUS_STYLES.get(state.status, ""))
    line.append(
        f"  {state.workflow_name or state.workflow_id}  {state.progress}%  "
        f"agents {done}/{len(state.agents)}  lastSeq {state.last_seq}"
    )
    if state.error:
        line.append(f"  {state.error}", style="red")
    return line


def _exit_code(state: ExecutionState) -> int:
    return 0 if state.status == "completed" else 1


def tail(
    execution_id: str | None,
    *,
    events: str,
    state: str,
    topic: str | None,
    as_json: bool,
    curve: tuple[str | None, str] | None = None,
) -> int:
    """``zmqmon tail``: print events live; see the module doc for output and exit codes."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    seen_alive = False

    def on_publisher_change(alive: bool) -> None:
        nonlocal seen_alive
        if not alive:
            err.print(f"[yellow]publisher lost: no heartbeat from {events}[/yellow]")
        elif seen_alive:
            err.print("[green]publisher back: heartbeats resumed[/green]")
        seen_alive = seen_alive or alive

    def emit(item: Delivery) -> None:
        if isinstance(item, Snapshot):  # (log mode delivers none; shown should one come)
            (err if as_json else out).print(format_snapshot(item.state))
            return
        event = item
        if as_json:
            sys.stdout.write(dumps(event_to_dict(event)).decode() + "\n")
            sys.stdout.flush()
        else:
            out.print(format_event(event))
            out.file.flush()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    # Installed explicitly: a process started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    previous_int = signal.signal(signal.SIGINT, on_term)
    # log mode: every event, in order, however far behind the terminal falls
    try:
        keys = client_keys(curve)
    except ZmqmonError as exc:
        err.print(f"zmqmon tail: {exc}", markup=False)
        return 2
    sub = Subscriber(
        events, state or None, mode="log", on_publisher_change=on_publisher_change, curve=keys
    )
    try:
        if execution_id is None:
            sub.subscribe_topic(topic or EXEC_PREFIX)
            for event in sub:
                emit(event)
            return 0
        try:
            snap = sub.subscribe_execution(execution_id)
        except ZmqmonError as exc:
            err.print(f"zmqmon tail: {exc}", markup=False)
            return 2
        if snap is None:
            err.print(f"waiting for execution {execution_id} to start …", markup=False)
        else:
            (err if as_json else out).print(format_snapshot(snap))
            if snap.is_terminal:
                return _exit_code(snap)
        for item in sub:
            emit(item)
            current = sub.states.get(execution_id)
            ended = item.state.is_terminal if isinstance(item, Snapshot) else item.is_terminal
            if ended and current is not None:
                return _exit_code(current)
        return 0
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `zmqmon tail --json | head`: the reader left
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        sub.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
