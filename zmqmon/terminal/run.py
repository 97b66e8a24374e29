"""``zmqmon run FILE``: run a workflow file and follow it with live progress bars.

Embedded (an :class:`~zmqmon.services.executor.embedded.Executor` on free loopback ports) when no
``--state`` is given, else submitted to that state service with ``execute`` and followed through
its ``events`` op. Exit codes: 0 completed, 1 failed (or cancelled by someone else), 2 invalid
file or input (a precise one-line error, no traceback), 130 after Ctrl-C (the execution is
cancelled first).

In embedded mode ``ZMQMON_DB`` names the SQLite file to keep (default: a temporary file).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.workflow import WorkflowDefinition, parse_workflow
from zmqmon.errors import WorkflowError, ZmqmonError
from zmqmon.shells.curve import CurveClient, client_keys

__all__ = ["load_workflow_file", "parse_inputs", "render", "run_file"]

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
_STYLES = {
    "pending": "dim",
    "running": "cyan",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
}
_ICONS = {"pending": "·", "running": "▶", "completed": "✔", "failed": "✘", "cancelled": "■"}
_POLL = 0.1


def load_workflow_file(path: str | os.PathLike[str]) -> WorkflowDefinition:
    """Read a definition from JSON, YAML (``.yaml``/``.yml``, needs PyYAML) or TOML (``.toml``).

    Raises :class:`WorkflowError` naming the fault (unreadable file, syntax error, bad field).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read the file: {exc}") from None
    suffix = p.suffix.lower()
    data: Any
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise WorkflowError("YAML needs PyYAML: pip install 'zmqmon[yaml]'") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WorkflowError(f"invalid YAML: {exc}") from None
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise WorkflowError(f"invalid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowError(f"invalid JSON: {exc}") from None
    return parse_workflow(data) if isinstance(data, Mapping) else parse_workflow(str(data))


def parse_inputs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["n=3", "name=x"]`` → ``{"n": 3, "name": "x"}`` (JSON values when they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise WorkflowError(f"--input {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms / 1000:.1f}s" if ms < 60_000 else f"{ms // 60_000}m{ms % 60_000 // 1000:02d}s"


def render(state: ExecutionState, *, width: int = 30) -> Group:
    """The display of one execution: a header line, then a bar per agent and an overall bar."""
    status = state.status
    header = Text.assemble(
        (f"{_ICONS[status]} ", _STYLES[status]),
        (state.workflow_name or state.workflow_id, "bold"),
        ("  ", ""),
        (status, _STYLES[status]),
        (f"  {state.execution_id}", "dim"),
    )
    table = Table.grid(padding=(0, 1))
    for _ in range(5):
        table.add_column()
    for row in state.agents:
        style = _STYLES[row.status]
        note = Text(escape(row.error or ""), style="red") if row.error else Text("")
        table.add_row(
            Text(f"{_ICONS[row.status]} {row.agent_name}", style=style),
            ProgressBar(
                total=100,
                completed=row.progress,
                width=width,
                complete_style=style if row.status != "running" else "cyan",
                finished_style="green",
            ),
            Text(f"{row.progress:3d}%", style=style),
            Text(_duration(row.duration_ms), style="dim"),
            note,
        )
    table.add_row(
        Text("overall", style="bold"),
        ProgressBar(
            total=100,
            completed=state.progress,
            width=width,
            complete_style=_STYLES[status],
            finished_style="green",
        ),
        Text(f"{state.progress:3d}%", style="bold"),
        Text(""),
        Text(""),
    )
    parts: list[Any] = [header, table]
    if state.error:
        parts.append(Text(f"error: {state.error}", style="bold red"))
    return Group(*parts)


class _Interrupts:
    """Counts Ctrl-C (SIGINT) instead of raising KeyboardInterrupt wherever the program is.

    An exception raised at an arbitrary point (between submitting and following, inside
    rich's Live) could skip the cancellation; a counter read by the follow loop cannot.
    """

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1


def _follow(
    fetch: Callable[[], list[Event]],
    cancel: Callable[[], object],
    console: Console,
    interrupts: _Interrupts,
) -> tuple[ExecutionState | None, bool]:
    """Apply new events until the execution ends; Ctrl-C cancels it (a second one gives up).

    Returns the last state and whether the user interrupted.
    """
    state: ExecutionState | None = None
    deadline: float | None = None
    with Live(
        Text("starting…"),
        console=console,
        refresh_per_second=10,
        transient=False,
    ) as live:
        while True:
            if interrupts.count >= 2:  # a second Ctrl-C: stop waiting for the cancellation
                break
            if interrupts.count == 1 and deadline is None:
                deadline = time.monotonic() + 10.0
                console.print("[yellow]interrupted: cancelling the execution…[/]")
                try:
                    cancel()
                except ZmqmonError as exc:
                    console.print(f"[red]cancel failed: {escape(str(exc))}[/]")
            for event in fetch():
                state = apply_event(state, event)
            if state is not None:
                live.update(render(state))
                if state.is_terminal:
                    break
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(_POLL)
    if not console.is_terminal:
        console.line()  # Live leaves the cursor after its last render when not on a terminal
    return state, interrupts.count > 0


def _summary(state: ExecutionState | None, interrupted: bool, console: Console) -> int:
    if state is None:
        console.print("[red]no events received[/]")
        return EXIT_FAILED
    if state.status == "completed":
        console.print(f"[green]completed[/] in {_duration(_elapsed_ms(state))}")
    elif state.status == "failed":
        console.print(f"[bold red]failed[/] after {_duration(_elapsed_ms(state))}")
    elif state.status == "cancelled":
        console.print("[yellow]cancelled[/]")
    else:
        console.print(f"[yellow]still {state.status}[/] (stopped following)")
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_COMPLETED if state.status == "completed" else EXIT_FAILED


def _elapsed_ms(state: ExecutionState) -> int | None:
    if not state.started_at or not state.finished_at:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    start = datetime.strptime(state.started_at, fmt)
    end = datetime.strptime(state.finished_at, fmt)
    return int((end - start).total_seconds() * 1000)


def _run_embedded(
    definition: WorkflowDefinition,
    inputs: dict[str, Any],
    events: str | None,
    console: Console,
    interrupts: _Interrupts,
) -> int:
    from zmqmon.services.executor import Executor, compile_workflow

    compile_workflow(definition)  # unresolvable `uses`, bad params: exit 2 before any server
    executor = Executor(events=events or "tcp://127.0.0.1:0", db=os.environ.get("ZMQMON_DB"))
    try:
        handle = executor.submit(definition, inputs=inputs)
        ep = executor.endpoints
        console.print(
            f"[bold]{escape(definition.name)}[/]: execution {handle.id}\n"
            f"[dim]watch: zmqmon tail {handle.id} --events {ep['events']} --state {ep['state']}[/]",
            soft_wrap=True,
            highlight=False,
        )
        console.file.flush()
        seen = 0  # the last seq shown

        def fetch() -> list[Event]:
            nonlocal seen
            new = handle.events_after(seen)  # only the new ones: polling stays cheap
            if new:
                seen = new[-1]["seq"]
            return [parse_event(e) for e in new]

        state, interrupted = _follow(
            fetch, lambda: handle.cancel("interrupted"), console, interrupts
        )
        return _summary(state, interrupted, console)
    finally:
        executor.close()


def _run_remote(
    definition: WorkflowDefinition,
    inputs: dict[str, Any],
    state_url: str,
    console: Console,
    interrupts: _Interrupts,
    curve: CurveClient | None = None,
) -> int:
    from zmqmon.shells.client import StateClient

    with StateClient(state_url, curve=curve) as client:
        execution_id = client.execute(workflow=definition.to_json_dict(), inputs=inputs)
        console.print(
            f"[bold]{escape(definition.name)}[/]: execution {execution_id} on {state_url}",
            soft_wrap=True,
            highlight=False,
        )
        console.file.flush()
        last_seq = 0

        def fetch() -> list[Event]:
            nonlocal last_seq
            events, _ = client.events(execution_id, after_seq=last_seq)
            if events:
                last_seq = events[-1].seq
            return events

        state, interrupted = _follow(
            fetch, lambda: client.cancel(execution_id, "interrupted"), console, interrupts
        )
        return _summary(state, interrupted, console)


def run_file(
    path: str,
    *,
    state: str | None = None,
    events: str | None = None,
    inputs: Iterable[str] = (),
    curve: tuple[str | None, str] | None = None,
) -> int:
    """Run the workflow in ``path`` and follow it; the exit code (see the module docstring).

    ``curve``: (keys directory, client name) when the service requires CURVE."""
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    interrupts = _Interrupts()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, interrupts) if in_main else None
    try:
        definition = load_workflow_file(path)
        values = parse_inputs(inputs)
        if state is None:
            return _run_embedded(definition, values, events, console, interrupts)
        return _run_remote(definition, values, state, console, interrupts, client_keys(curve))
    except WorkflowError as exc:
        errors.print(f"zmqmon run: {escape(str(path))}: {escape(str(exc))}", soft_wrap=True)
        return EXIT_INVALID
    except ZmqmonError as exc:  # the service refused or did not answer
        errors.print(
            f"zmqmon run: {escape(type(exc).__name__)}: {escape(str(exc))}", soft_wrap=True
        )
        return EXIT_INVALID if getattr(exc, "code", None) == "bad_request" else EXIT_FAILED
    except KeyboardInterrupt:  # SIGINT outside the main thread (no handler installed there)
        errors.print("zmqmon run: interrupted")
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
