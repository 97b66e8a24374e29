"""Agents importable by path, for tests that use JSON definitions."""

from __future__ import annotations

from typing import Any

from zmqmon.services.executor.context import AgentContext

NOT_CALLABLE = 42


def echo(ctx: AgentContext) -> dict[str, Any]:
    return {"params": ctx.params, "inputs": ctx.inputs, "deps": sorted(ctx.results)}


def two_args(ctx: AgentContext, other: int) -> None:
    return None
