"""Agents importable by path, for tests that use JSON definitions."""

from __future__ import annotations

import sys
import threading
import time
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
