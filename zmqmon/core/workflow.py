"""Workflow definitions (contract §4): parsing and validation, before anything runs.

A definition names agents, what each ``uses`` (an import path ``module:callable``), its
``params`` and what it ``dependsOn``. Everything checkable without importing code is checked here:
shape and types, duplicate ids, unknown dependencies, cycles. Resolving ``uses`` imports code, so
the executor does it (still before anything runs).

Which code a service may import is decided here too, without importing anything:
:class:`AgentAllowList` (contract §4: a service runs agents only from the modules it was started
with).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from zmqmon.core.events import validation_message
from zmqmon.errors import ConfigError, WorkflowError

__all__ = [
    "ALWAYS_ALLOWED",
    "AgentAllowList",
    "AgentSpec",
    "ReadySet",
    "WorkflowDefinition",
    "parse_workflow",
    "parse_workflow_ordered",
    "ready_agents",
    "topological_order",
    "workflow_digest",
]

_ID = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]
_USES = Annotated[
    str,
    Field(pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"),
]


#: Modules every service may run agents from: the shipped demo agents (contract §4).
ALWAYS_ALLOWED: Final = ("zmqmon.demo",)
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class AgentAllowList:
    """The modules a service imports agents from; any other ``uses`` is refused unimported.

    A module is allowed when its name is listed or is a submodule of a listed one (``mypkg.agents``
    allows ``mypkg.agents`` and ``mypkg.agents.sub``, not ``mypkg.agents_evil`` nor ``mypkg``), as a
    package allow-list would: a listed package vouches for what it contains. :data:`ALWAYS_ALLOWED`
    is always in. ``"*"`` (:attr:`ANY`) allows every importable callable — for a service whose
    state port only trusted code can reach, and for the embedded executor in the user's own
    process.

    When not :attr:`any_module`, the attribute path after ``:`` may not start with or pass through
    a dunder name (``__globals__``, ``__builtins__`` …), and resolving it may not step into a
    module outside the list (``zmqmon.demo:time.sleep`` is refused though ``zmqmon.demo`` imports
    ``time``): see :meth:`check_uses` and :meth:`allows_module`.
    """

    modules: frozenset[str] = frozenset(ALWAYS_ALLOWED)
    any_module: bool = False

    ANY: ClassVar[AgentAllowList]

    @classmethod
    def parse(cls, spec: str | Iterable[str] | None) -> AgentAllowList:
        """From ``"mypkg.agents,other"`` (or a list of names); ``"*"`` allows any module.

        Blank entries are ignored; a name that is not a dotted module name raises
        :class:`~zmqmon.errors.ConfigError`.
        """
        names = spec.split(",") if isinstance(spec, str) else list(spec or ())
        modules = set(ALWAYS_ALLOWED)
        any_module = False
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            if name == "*":
                any_module = True
            elif _MODULE.match(name):
                modules.add(name)
            else:
                raise ConfigError(f"agent module {name[:100]!r} is not a dotted module name")
        return cls(frozenset(modules), any_module)

    def allows_module(self, module: str) -> bool:
        """True when agents may be imported from ``module`` (exact name or a submodule)."""
        if self.any_module or module in self.modules:
            return True
        # Submodules: check each dotted parent, an exact match each time (no prefix games).
        head, dot, _ = module.rpartition(".")
        while dot:
            if head in self.modules:
                return True
            head, dot, _ = head.rpartition(".")
        return False

    def check_uses(self, uses: str) -> None:
        """Raise :class:`WorkflowError` if ``uses`` (``module:attr``) may not be imported here."""
        if self.any_module:
            return
        module, _, attr_path = uses.partition(":")
        if not self.allows_module(module):
            allowed = ", ".join(sorted(self.modules))
            raise WorkflowError(
                f"module {module!r} is not an agent module of this service (allowed: {allowed}; "
                "start it with --agents to add one)"
            )
        if any(part.startswith("__") for part in attr_path.split(".")):
            raise WorkflowError(f"{uses!r}: dunder attributes are not agents")

    def __str__(self) -> str:
        return "*" if self.any_module else ",".join(sorted(self.modules))


AgentAllowList.ANY = AgentAllowList(frozenset(ALWAYS_ALLOWED), any_module=True)


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
    name: Annotated[str, Field(max_length=200)] = ""
    uses: _USES
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[_ID] = Field(default_factory=list)
    timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    #: reruns after the worker running the agent was lost (an agent on a Dask cluster); an
    #: agent's own exception is never rerun. Negative is refused. None (the default) is 0, and
    #: leaves the definition's content digest what it was before the field existed.
    retries: Annotated[int, Field(ge=0, le=100)] | None = None

    @property
    def display_name(self) -> str:
        """``name``, or the id when no name is given."""
        return self.name or self.id


class WorkflowDefinition(_Model):
    """A workflow: a name and a DAG of agents."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=10_000)] = ""
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
    # Depth-first, with an explicit stack: a chain of agents as long as max-agents allows must
    # not meet Python's recursion limit.
    for root in ids:
        if state.get(root) == 2:
            continue
        state[root] = 1
        path = [root]
        stack = [(root, iter(deps[root]))]
        while stack:
            node, pending = stack[-1]
            for dep in pending:
                mark = state.get(dep)
                if mark == 2:
                    continue
                if mark == 1:
                    cycle = [*path[path.index(dep) :], dep]
                    raise WorkflowError("dependency cycle: " + " -> ".join(cycle))
                state[dep] = 1
                path.append(dep)
                stack.append((dep, iter(deps[dep])))
                break
            else:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
    return order


def ready_agents(
    definition: WorkflowDefinition,
    *,
    done: Collection[str],
    failed: Collection[str] = (),
    running: Collection[str] = (),
) -> list[str]:
    """The agents that may start now, in the definition's order.

    An agent may start when it is neither done, failed nor running and every agent it depends on
    is done. Once any agent failed, none may start: a failure fails the execution (contract §4).
    This is the rule; :class:`ReadySet` applies it incrementally (O(1) per agent instead of a
    scan of the definition per event).
    """
    if failed:
        return []
    seen = set(done) | set(running)
    return [
        a.id
        for a in definition.agents
        if a.id not in seen and all(dep in done for dep in a.depends_on)
    ]


class ReadySet:
    """The DAG's bookkeeping for one execution: which agents may start as others end.

    Pure and incremental — each ``complete`` costs the number of the agent's dependants — and
    at every step the same agents as :func:`ready_agents` of what it was told. They come in
    topological order (stable by position), and every agent this returns is counted running
    until it is completed or failed.
    """

    __slots__ = ("_dependants", "_failed", "_running", "_waiting", "done")

    def __init__(self, definition: WorkflowDefinition, order: Sequence[str] | None = None) -> None:
        """``order``: the definition's :func:`topological_order`, if the caller has it."""
        if order is None:
            order = topological_order(definition)
        deps = {a.id: a.depends_on for a in definition.agents}
        self._waiting: dict[str, set[str]] = {a: set(deps[a]) for a in order}
        self._dependants: dict[str, list[str]] = {a: [] for a in order}
        for agent_id in order:
            for dep in deps[agent_id]:
                self._dependants[dep].append(agent_id)
        self.done: set[str] = set()
        self._failed: set[str] = set()
        self._running: set[str] = set()

    @property
    def running(self) -> frozenset[str]:
        """Agents returned as ready and not yet completed or failed."""
        return frozenset(self._running)

    @property
    def failed(self) -> frozenset[str]:
        """Agents reported failed."""
        return frozenset(self._failed)

    def start(self) -> list[str]:
        """The agents with no dependencies (now counted running). Call once, first."""
        ready = [a for a, deps in self._waiting.items() if not deps]
        return self._take(ready)

    def complete(self, agent_id: str) -> list[str]:
        """``agent_id`` is done: the agents that became ready by it (now counted running)."""
        if agent_id not in self._running:
            raise ValueError(f"agent {agent_id!r} is not running")
        self._running.discard(agent_id)
        self.done.add(agent_id)
        if self._failed:
            return []
        ready = []
        for dependant in self._dependants[agent_id]:
            deps = self._waiting.get(dependant)
            if deps is not None:
                deps.discard(agent_id)
                if not deps:
                    ready.append(dependant)
        return self._take(ready)

    def fail(self, agent_id: str) -> None:
        """``agent_id`` failed: nothing more becomes ready."""
        self._running.discard(agent_id)
        self._failed.add(agent_id)

    @property
    def finished(self) -> bool:
        """True when nothing runs and nothing more can start."""
        return not self._running and (bool(self._failed) or not self._waiting)

    def _take(self, ready: list[str]) -> list[str]:
        for agent_id in ready:
            del self._waiting[agent_id]
            self._running.add(agent_id)
        return ready


def _check_agent_count(count: int, max_agents: int | None) -> None:
    if max_agents is not None and count > max_agents:
        raise WorkflowError(
            f"workflow has {count} agents; at most {max_agents} per workflow here (max-agents)"
        )


def parse_workflow(
    source: Mapping[str, Any] | str | bytes | WorkflowDefinition,
    *,
    max_agents: int | None = None,
) -> WorkflowDefinition:
    """Parse and validate a definition from a dict or JSON text.

    ``max_agents`` refuses a definition with more agents (counted before anything else is
    validated, so an oversized one costs next to nothing). Names are at most 200 characters,
    the description 10,000. Raises :class:`WorkflowError` naming the fault, e.g.
    ``agents.1.dependsOn: …`` or ``dependency cycle: a -> b -> a``.
    """
    return parse_workflow_ordered(source, max_agents=max_agents)[0]


def parse_workflow_ordered(
    source: Mapping[str, Any] | str | bytes | WorkflowDefinition,
    *,
    max_agents: int | None = None,
) -> tuple[WorkflowDefinition, list[str]]:
    """:func:`parse_workflow`, with the :func:`topological_order` that checked it (a caller
    that runs the workflow needs it too: it is not computed twice)."""
    if isinstance(source, WorkflowDefinition):
        definition = source
        _check_agent_count(len(definition.agents), max_agents)
    else:
        if isinstance(source, (str, bytes)):
            try:
                source = json.loads(source)
            except (ValueError, RecursionError) as exc:
                raise WorkflowError(f"workflow is not valid JSON: {exc}") from exc
        if not isinstance(source, Mapping):
            raise WorkflowError(f"workflow must be a JSON object, got {type(source).__name__}")
        agents = source.get("agents")
        if isinstance(agents, list):
            _check_agent_count(len(agents), max_agents)
        try:
            definition = WorkflowDefinition.model_validate(source)
        except ValidationError as exc:
            raise WorkflowError(f"invalid workflow: {validation_message(exc)}") from exc
    return definition, topological_order(definition)


def workflow_digest(definition: WorkflowDefinition) -> str:
    """A content id: the same definition (after parsing: key order, defaults, spacing do not
    matter) always gives the same 32 hex digits, so storing it twice keeps one row."""
    canonical = json.dumps(
        definition.to_json_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
