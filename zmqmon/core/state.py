"""The one reducer: (execution state, event) → execution state.

Every view of an execution — the executor's snapshot, the notebook widget, the bridge, the
``zmqmon tail`` display — derives state from events with :func:`apply_event`, and the dashboard's
``reducer.js`` mirrors it rule for rule (both are tested on ``tests/fixtures/``).

Rules:

1. An event whose ``seq`` is not above ``lastSeq`` is a duplicate: the state is returned unchanged.
2. With no state yet, the first event starts one (``status`` ``pending``, nothing else known).
3. Once the execution is terminal (completed, failed, cancelled), later events only move
   ``lastSeq``.
4. ``execution:started`` → ``running``; sets workflow name, user and ``startedAt``; the agents it
   announces (``data.agents``) get ``pending`` rows, in order.
5. ``execution:progress`` → ``progress``. ``execution:completed`` → ``completed``, progress 100.
   ``execution:failed`` → ``failed`` with ``error``. ``execution:cancelled`` → ``cancelled``.
   On each of the three, ``finishedAt`` is set and agents still ``running`` become ``cancelled``.
6. ``agent:started`` → the agent ``running`` from 0 %; ``agent:progress`` → its progress;
   ``agent:completed`` → ``completed``, 100 %, ``durationMs``; ``agent:failed`` → ``failed`` with
   ``error``. An agent not yet known gets a row appended. Any event but ``started`` moves a
   ``pending`` execution to ``running``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from zmqmon.core.events import (
    AgentCompleted,
    AgentFailed,
    AgentProgress,
    AgentStarted,
    Event,
    ExecutionCancelled,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionProgress,
    ExecutionStarted,
)

__all__ = [
    "TERMINAL_STATUSES",
    "AgentState",
    "AgentStatus",
    "ExecutionState",
    "ExecutionStatus",
    "apply_event",
    "replay",
]

ExecutionStatus: TypeAlias = Literal["pending", "running", "completed", "failed", "cancelled"]
AgentStatus: TypeAlias = Literal["pending", "running", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})


class _State(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form (camelCase), as the state service's ``snapshot`` sends it."""
        return self.model_dump(by_alias=True, mode="json")


class AgentState(_State):
    """One agent's row in an execution's state."""

    agent_id: str
    agent_name: str
    status: AgentStatus = "pending"
    progress: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    error: str | None = None


class ExecutionState(_State):
    """An execution's state, as derived from its events 1..``last_seq``."""

    execution_id: str
    workflow_id: str
    workflow_name: str | None = None
    user_id: str | None = None
    status: ExecutionStatus = "pending"
    progress: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    last_seq: int = 0
    agents: list[AgentState] = []

    @property
    def is_terminal(self) -> bool:
        """True once completed, failed or cancelled."""
        return self.status in TERMINAL_STATUSES

    def agent(self, agent_id: str) -> AgentState | None:
        """The row of one agent, or None."""
        for row in self.agents:
            if row.agent_id == agent_id:
                return row
        return None


_M = TypeVar("_M", bound=BaseModel)


_set = object.__setattr__


def _replace(model: _M, changes: dict[str, Any]) -> _M:
    """``model.model_copy(update=changes)`` at a third of the cost: the reducer's hot path.

    The reducer only ever writes values of the right type, so validation is skipped (as
    ``model_copy`` does too). The fields-set is shared: frozen models never mutate it.
    """
    new = object.__new__(type(model))
    values = model.__dict__.copy()
    values.update(changes)
    _set(new, "__dict__", values)
    _set(new, "__pydantic_fields_set__", model.__pydantic_fields_set__)
    _set(new, "__pydantic_extra__", None)
    _set(new, "__pydantic_private__", None)
    return new


def _with_agent(
    agents: list[AgentState],
    agent_id: str,
    agent_name: str,
    changes: dict[str, Any],
    if_pending: dict[str, Any] | None = None,
) -> list[AgentState]:
    """A copy of ``agents`` with one row changed (appended if new); ``if_pending`` is applied
    too when that row is new or still pending. One scan: this runs for every agent event."""
    out = list(agents)
    for i, row in enumerate(out):
        if row.agent_id == agent_id:
            if if_pending and row.status == "pending":
                changes = {**changes, **if_pending}
            out[i] = _replace(row, changes)
            return out
    if if_pending:
        changes = {**changes, **if_pending}
    out.append(_replace(AgentState(agent_id=agent_id, agent_name=agent_name), changes))
    return out


def _stop_running(agents: list[AgentState], timestamp: str) -> list[AgentState]:
    return [
        _replace(row, {"status": "cancelled", "finished_at": timestamp})
        if row.status == "running"
        else row
        for row in agents
    ]


def apply_event(state: ExecutionState | None, event: Event) -> ExecutionState:
    """Apply one event to a state (None: no state yet) and return the new state.

    Pure and idempotent: applying an event twice, or an older one, changes nothing.
    """
    if state is None:
        state = ExecutionState(execution_id=event.execution_id, workflow_id=event.workflow_id)
    elif event.seq <= state.last_seq:
        return state
    if state.status in TERMINAL_STATUSES:
        return _replace(state, {"last_seq": event.seq})

    ts = event.timestamp
    update: dict[str, Any] = {"last_seq": event.seq}
    if state.status == "pending" and event.type != "execution:started":
        update["status"] = "running"

    # The two progress events are nearly all of a busy stream: they are tested first.
    if isinstance(event, AgentProgress):
        update["agents"] = _with_agent(
            state.agents,
            event.data.agent_id,
            event.data.agent_name,
            {"progress": event.data.progress},
            {"status": "running", "started_at": ts},
        )
    elif isinstance(event, ExecutionProgress):
        update["progress"] = event.data.progress
    elif isinstance(event, ExecutionStarted):
        agents = list(state.agents)
        known = {row.agent_id for row in agents}
        for info in event.data.agents or ():
            if info.agent_id not in known:
                agents.append(AgentState(agent_id=info.agent_id, agent_name=info.agent_name))
        update.update(
            status="running",
            workflow_name=event.data.workflow_name,
            user_id=event.data.user_id,
            started_at=ts,
            agents=agents,
        )
    elif isinstance(event, ExecutionCompleted):
        update.update(status="completed", progress=100, finished_at=ts)
        update["agents"] = _stop_running(state.agents, ts)
    elif isinstance(event, ExecutionFailed):
        update.update(status="failed", error=event.data.error, finished_at=ts)
        update["agents"] = _stop_running(state.agents, ts)
    elif isinstance(event, ExecutionCancelled):
        update.update(status="cancelled", finished_at=ts)
        update["agents"] = _stop_running(state.agents, ts)
    elif isinstance(event, AgentStarted):
        update["agents"] = _with_agent(
            state.agents,
            event.data.agent_id,
            event.data.agent_name,
            {
                "status": "running",
                "progress": 0,
                "started_at": ts,
                "finished_at": None,
                "error": None,
            },
        )
    elif isinstance(event, AgentCompleted):
        update["agents"] = _with_agent(
            state.agents,
            event.data.agent_id,
            event.data.agent_name,
            {
                "status": "completed",
                "progress": 100,
                "finished_at": ts,
                "duration_ms": event.data.duration_ms,
            },
        )
    elif isinstance(event, AgentFailed):
        update["agents"] = _with_agent(
            state.agents,
            event.data.agent_id,
            event.data.agent_name,
            {
                "status": "failed",
                "error": event.data.error,
                "finished_at": ts,
                "duration_ms": event.data.duration_ms,
            },
        )
    return _replace(state, update)


def replay(events: Iterable[Event], state: ExecutionState | None = None) -> ExecutionState | None:
    """Fold :func:`apply_event` over events; None if there were none and no state was given."""
    for event in events:
        state = apply_event(state, event)
    return state
