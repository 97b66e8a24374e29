"""Workflow definitions (contract §4): parsing and validation, before anything runs.

A definition names agents, what each ``uses`` (an import path ``module:callable``), its
``params`` and what it ``dependsOn``. Everything checkable without importing code is checked here:
shape and types, duplicate ids, unknown dependencies, cycles. Resolving ``uses`` imports code, so
the executor does it (still before anything runs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from zmqmon.core.events import validation_message
from zmqmon.errors import WorkflowError

__all__ = ["AgentSpec", "WorkflowDefinition", "parse_workflow", "topological_order"]

_ID = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]
_USES = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"),
]


class _Model(BaseModel):
    # extra="forbid": a misspelt key ("dependOn") is an error, not a silently ignored field.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The definition as camelCase JSON-ready dict."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class AgentSpec(_Model):
    """One agent of a workflow definition."""

    id: _ID
    name: str = ""
    uses: _USES
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[_ID] = Field(default_factory=list)
    timeout_seconds: Annotated[float, Field(gt=0)] | None = None

    @property
    def display_name(self) -> str:
        """``name``, or the id when no name is given."""
        return self.name or self.id


class WorkflowDefinition(_Model):
    """A workflow: a name and a DAG of agents."""

    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    agents: Annotated[list[AgentSpec], Field(min_length=1)]


def topological_order(definition: WorkflowDefinition) -> list[str]:
    """Agent ids in an order where every agent comes after its dependencies (stable by position).

    Raises :class:`WorkflowError` on duplicate ids, unknown dependencies and cycles.
    """
    ids = [a.id for a in definition.agents]
    seen: set[str] = set()
    for agent_id in ids:
        if agent_id in seen:
            raise WorkflowError(f"duplicate agent id {agent_id!r}")
        seen.add(agent_id)
    deps: dict[str, list[str]] = {}
    for agent in definition.agents:
        for dep in agent.depends_on:
            if dep not in seen:
                raise WorkflowError(f"agent {agent.id!r} depends on unknown agent {dep!r}")
            if dep == agent.id:
                raise WorkflowError(f"agent {agent.id!r} depends on itself")
        deps[agent.id] = list(agent.depends_on)

    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        mark = state.get(node)
        if mark == 2:
            return
        if mark == 1:
            cycle = [*path[path.index(node) :], node]
            raise WorkflowError("dependency cycle: " + " -> ".join(cycle))
        state[node] = 1
        path.append(node)
        for dep in deps[node]:
            visit(dep, path)
        path.pop()
        state[node] = 2
        order.append(node)

    for agent_id in ids:
        visit(agent_id, [])
    return order


def parse_workflow(
    source: Mapping[str, Any] | str | bytes | WorkflowDefinition,
) -> WorkflowDefinition:
    """Parse and validate a definition from a dict or JSON text.

    Raises :class:`WorkflowError` naming the fault, e.g. ``agents.1.dependsOn: …`` or
    ``dependency cycle: a -> b -> a``.
    """
    if isinstance(source, WorkflowDefinition):
        definition = source
    else:
        if isinstance(source, (str, bytes)):
            try:
                source = json.loads(source)
            except ValueError as exc:
                raise WorkflowError(f"workflow is not valid JSON: {exc}") from None
        if not isinstance(source, Mapping):
            raise WorkflowError(f"workflow must be a JSON object, got {type(source).__name__}")
        try:
            definition = WorkflowDefinition.model_validate(source)
        except ValidationError as exc:
            raise WorkflowError(f"invalid workflow: {validation_message(exc)}") from None
    topological_order(definition)
    return definition
