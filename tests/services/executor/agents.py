"""Agents importable by path, for tests that use JSON definitions."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zmqmon.services.executor.context import AgentContext

NOT_CALLABLE = 42


def echo(ctx: AgentContext) -> dict[str, Any]:
    return {"params": ctx.params, "inputs": ctx.inputs, "deps": sorted(ctx.results)}


def two_args(ctx: AgentContext, other: int) -> None:
    return None


class Abort(BaseException):
    """Not an Exception: what a careless library might raise."""


def exit_now(ctx: AgentContext) -> None:
    sys.exit(3)


def interrupt(ctx: AgentContext) -> None:
    raise KeyboardInterrupt


def abort(ctx: AgentContext) -> None:
    raise Abort("gave up")


async def exit_async(ctx: AgentContext) -> None:
    raise SystemExit("async exit")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message for you")


def unprintable(ctx: AgentContext) -> None:
    raise _Unprintable


def read_stdin(ctx: AgentContext) -> str:
    """Blocks for good when stdin is a pipe nobody writes to."""
    return input()


def sleep_long(ctx: AgentContext) -> None:
    time.sleep(3600)


def wait_forever(ctx: AgentContext) -> None:
    threading.Event().wait()


# -- for agents on a Dask worker: they tell the test what they saw through files --------------


def steps(ctx: AgentContext) -> str:
    """Reports params['steps'] progress values, deterministically."""
    n = int(ctx.params.get("steps", 3))
    for i in range(1, n + 1):
        ctx.progress(i * 100 / n, f"step {i}/{n}")
    return ctx.agent_id


def chatty(ctx: AgentContext) -> int:
    """100,000 progress calls ending at 99: coalesced into a few events."""
    calls = 100_000
    for i in range(calls):
        ctx.progress(i * 100 / calls)
    return calls


def wait_for_cancel(ctx: AgentContext) -> str:
    """Writes params['started'] (its pid), waits for ctx.cancelled (at most 60 s) and then
    writes params['seen'] — unless params['started'] existed already (a rerun): returns at once."""
    started = Path(ctx.params["started"])
    if started.exists():
        return "rerun"
    started.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not ctx.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    if ctx.cancelled:
        Path(ctx.params["seen"]).write_text("cancelled")
    return "ended"


async def wait_async(ctx: AgentContext) -> None:
    """Writes params['started'], sleeps; writes params['seen'] when cancelled."""
    Path(ctx.params["started"]).write_text(str(os.getpid()))
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        Path(ctx.params["seen"]).write_text("cancelled")
        raise
