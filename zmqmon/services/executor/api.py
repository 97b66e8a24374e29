"""The Python API for workflows: :class:`Workflow` and :class:`Agent`.

::

    from zmqmon import Workflow, Agent

    def fetch(ctx):                 # sync agents run in a worker thread
        return {"items": 42}

    async def summarize(ctx):       # async agents run on the executor's event loop
        ctx.progress(50, "halfway")
        return f"{ctx.results['fetch']['items']} items"

    wf = Workflow("Pipeline", [
        Agent("fetch", fetch),
        Agent("summarize", summarize, depends_on=["fetch"], timeout_seconds=30),
        Agent("work", "zmqmon.demo:work", params={"seconds": 1}),   # an import path works too
    ])

An agent given as a callable need not be importable: it runs in this process. Its definition
(what a store keeps, what ``to_definition`` gives) names it by ``module:qualname``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from zmqmon.core.events import validation_message
from zmqmon.core.workflow import WorkflowDefinition
from zmqmon.errors import WorkflowError

__all__ = ["Agent", "Workflow", "callable_path"]


def callable_path(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a callable, made to fit the definition's ``uses`` pattern."""
    module = getattr(fn, "__module__", None) or "local"
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__

    def clean(dotted: str) -> str:
        parts = [re.sub(r"\W", "_", p) or "_" for p in dotted.split(".")]
        return ".".join(("_" + p) if p[0].isdigit() else p for p in parts)

    return f"{clean(module)}:{clean(qualname)}"


@dataclass(frozen=True)
class Agent:
    """One agent: an ``id``, what it runs (a callable or an import path ``module:attr``),
    its ``params``, the agents it ``depends_on`` (ids or :class:`Agent` objects), an optional
    ``timeout_seconds``, a display ``name`` and ``retries`` (reruns after a lost Dask worker)."""

    id: str
    uses: Callable[..., Any] | str
    params: Mapping[str, Any] = field(default_factory=dict)
    depends_on: Sequence[str | Agent] = ()
    timeout_seconds: float | None = None
    name: str = ""
    retries: int = 0

    @property
    def dependency_ids(self) -> list[str]:
        """``depends_on`` as agent ids."""
        return [d.id if isinstance(d, Agent) else d for d in self.depends_on]

    def to_json_dict(self, _paths: dict[int, str] | None = None) -> dict[str, Any]:
        """The agent as a definition entry (a callable is named by its ``module:qualname``);
        validated as part of :meth:`Workflow.to_definition`."""
        if isinstance(self.uses, str):
            uses = self.uses
        elif _paths is None:
            uses = callable_path(self.uses)
        else:
            uses = _paths.get(id(self.uses)) or _paths.setdefault(
                id(self.uses), callable_path(self.uses)
            )
        return {
            "id": self.id,
            "name": self.name,
            "uses": uses,
            "params": self.params,
            "dependsOn": self.dependency_ids,
            "timeoutSeconds": self.timeout_seconds,
            "retries": self.retries or None,  # absent when 0: digests unchanged
        }


@dataclass(frozen=True)
class Workflow:
    """A workflow built in Python: a ``name``, a list of :class:`Agent` and a ``description``."""

    name: str
    agents: Sequence[Agent]
    description: str = ""

    def to_definition(self) -> WorkflowDefinition:
        """The workflow as a :class:`~zmqmon.core.workflow.WorkflowDefinition` (JSON form).

        Raises :class:`~zmqmon.errors.WorkflowError` naming the bad field.
        """
        paths: dict[int, str] = {}  # callable → path, computed once per callable
        agents = []
        for agent in self.agents:
            entry = agent.to_json_dict(paths)
            agents.append(entry)
        try:
            return WorkflowDefinition.model_validate(
                {"name": self.name, "description": self.description, "agents": agents}
            )
        except ValidationError as exc:
            raise WorkflowError(f"invalid workflow: {validation_message(exc)}") from None

    def callables(self) -> dict[str, Callable[..., Any]]:
        """Agent id → callable, for the agents given as callables."""
        return {a.id: a.uses for a in self.agents if not isinstance(a.uses, str)}
