"""Demo agents and workflows (contract §4): ``zmqmon.demo:work`` and ``zmqmon.demo:fail``.

``DEMO_WORKFLOWS`` maps a slug to a workflow definition (the JSON form of contract §4): a quick
linear pipeline, a fan-out/fan-in DAG, and one that fails. ``zmqmon demo`` and the notebooks run
them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from zmqmon.services.executor.context import AgentContext

__all__ = ["DEMO_WORKFLOWS", "FailParams", "WorkParams", "fail", "work"]


class WorkParams(BaseModel):
    """Params of :func:`work`: ``seconds`` of work in ``steps`` steps."""

    model_config = ConfigDict(extra="allow")

    seconds: float = Field(default=1.0, ge=0, le=86_400)
    steps: int = Field(default=10, ge=1, le=1_000_000)


class FailParams(BaseModel):
    """Params of :func:`fail`: the error ``message``, raised after ``seconds``."""

    model_config = ConfigDict(extra="allow")

    message: str = "demo failure"
    seconds: float = Field(default=0.0, ge=0, le=86_400)


async def work(ctx: AgentContext) -> dict[str, Any]:
    """Work for ``seconds`` in ``steps`` steps, reporting progress after each; cancellable."""
    p = WorkParams.model_validate(ctx.params)
    for step in range(1, p.steps + 1):
        await asyncio.sleep(p.seconds / p.steps)
        ctx.check_cancelled()
        ctx.progress(step * 100 / p.steps, f"step {step}/{p.steps}")
    return {"agent": ctx.agent_id, "steps": p.steps, "seconds": p.seconds}


work.params_model = WorkParams  # type: ignore[attr-defined]  # checked before anything runs


async def fail(ctx: AgentContext) -> None:
    """Raise ``RuntimeError(message)`` (after ``seconds``, reporting progress on the way)."""
    p = FailParams.model_validate(ctx.params)
    if p.seconds:
        ctx.progress(0, "about to fail")
        await asyncio.sleep(p.seconds)
    raise RuntimeError(p.message)


fail.params_model = FailParams  # type: ignore[attr-defined]


def _agent(agent_id: str, name: str, seconds: float, *deps: str, steps: int = 10) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": name,
        "uses": "zmqmon.demo:work",
        "params": {"seconds": seconds, "steps": steps},
        "dependsOn": list(deps),
    }


DEMO_WORKFLOWS: Final[dict[str, dict[str, Any]]] = {
    "quick": {
        "name": "Quick Pipeline",
        "description": "Three agents in a line, about three seconds.",
        "agents": [
            _agent("collect", "DataCollector", 1.0),
            _agent("analyze", "Analyzer", 1.0, "collect"),
            _agent("report", "Reporter", 1.0, "analyze"),
        ],
    },
    "fan-out": {
        "name": "Content Pipeline",
        "description": "Fan-out/fan-in: one source, three parallel workers, one merge.",
        "agents": [
            _agent("fetch", "Fetcher", 1.0),
            _agent("summarize", "Summarizer", 3.0, "fetch", steps=30),
            _agent("translate", "Translator", 2.0, "fetch", steps=20),
            _agent("tag", "Tagger", 1.5, "fetch", steps=15),
            _agent("publish", "Publisher", 1.0, "summarize", "translate", "tag"),
        ],
    },
    "failing": {
        "name": "Flaky Pipeline",
        "description": "An agent fails midway: its dependants never start.",
        "agents": [
            _agent("load", "Loader", 1.0),
            {
                "id": "validate",
                "name": "Validator",
                "uses": "zmqmon.demo:fail",
                "params": {"message": "schema mismatch in row 42", "seconds": 1.0},
                "dependsOn": ["load"],
            },
            _agent("enrich", "Enricher", 2.0, "load", steps=20),
            _agent("store", "Storer", 1.0, "validate", "enrich"),
        ],
    },
}
