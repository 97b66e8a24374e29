"""The one reducer: (execution state, event) → execution state.

Every view of an execution — the executor's snapshot, the notebook widget, the bridge, the
``zmqmon tail`` display — derives state from events with :func:`apply_event`, and the dashboard's
``reducer.js`` mirrors it rule for rule (both are tested on ``tests/fixtures/``).

Cost: an agent event is O(log n) in the number of agents n — ``agents`` is a persistent vector
(:data:`AgentRows`, :mod:`zmqmon.core.rows`) that shares every untouched row with the previous
state, and rows are found by id, not by a scan. Terminal events, which touch every running
agent, are O(n), once per execution.

Rules:

1. An event whose ``seq`` is not above ``lastSeq`` is a duplicate: the state is returned unchanged.
2. With no state yet, the first event starts one (``status`` ``pending``, nothing else known).
3. Once the execution is terminal (completed, failed, cancelled), later events only move
   ``lastSeq``.
4. ``execution:started`` → ``running``; sets workflow name, user and ``startedAt``; the agents it
   announces (``data.agents``) get ``pending`` rows, in order, with their ``dependsOn`` (one row
   per agent id, as in ``reducer.js``, even if announced twice: the first announcement wins, and
   a row an earlier agent event made is left as it is). The DAG and timeline views read the
   dependencies from the state, so a late joiner's snapshot carries them too.
5. ``execution:progress`` → ``progress``. ``execution:completed`` → ``completed``, progress 100.
   ``execution:failed`` → ``failed`` with ``error``. ``execution:cancelled`` → ``cancelled``.
   On each of the three, ``finishedAt`` is set and agents still ``running`` become ``cancelled``.
6. ``agent:started`` → the agent ``running`` from 0 %; ``agent:progress`` → its progress;
   ``agent:completed`` → ``completed``, 100 %, ``durationMs``; ``agent:failed`` → ``failed`` with
   ``error``. An agent not yet known gets a row appended. Any event but ``started`` moves a
   ``pending`` execution to ``running``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer, PlainValidator, TypeAdapter
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
from zmqmon.core.rows import KeyedRows

__all__ = [
    "TERMINAL_STATUSES",
    "AgentRows",
    "AgentState",
    "AgentStatus",
    "ExecutionState",
    "ExecutionStatus",
    "apply_event",
    "fold_progress",
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
    #: the agents it waits for, as announced by ``execution:started`` (zmqmon's addition)
    depends_on: tuple[str, ...] = ()
    status: AgentStatus = "pending"
    progress: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    error: str | None = None


def _agent_key(row: AgentState) -> str:
    return row.agent_id


#: An execution's agent rows, in order: a read-only sequence (len, index, iterate, ``==`` with a
#: list) in which the reducer changes one row in O(log n) — see :mod:`zmqmon.core.rows`. On the
#: wire, and in ``model_dump``, it is the contract's plain list.
AgentRows: TypeAlias = KeyedRows[AgentState]

_AGENT_LIST: TypeAdapter[list[AgentState]] = TypeAdapter(list[AgentState])
_NO_AGENTS: AgentRows = KeyedRows.from_rows((), _agent_key)


def _to_rows(value: Any) -> AgentRows:
    if isinstance(value, KeyedRows):
        return value
    return KeyedRows.from_rows(_AGENT_LIST.validate_python(value), _agent_key)


def _rows_to_list(rows: AgentRows) -> list[AgentState]:
    return list(rows)


_Agents = Annotated[
    AgentRows,
    PlainValidator(_to_rows),
    PlainSerializer(_rows_to_list, return_type=list[AgentState]),
]


class ExecutionState(_State):
    """An execution's state, as derived from its events 1..``last_seq``.

    ``agents`` is an :data:`AgentRows` sequence (built from a list when one is given).
    """

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
    agents: _Agents = _NO_AGENTS

    @property
    def is_terminal(self) -> bool:
        """True once completed, failed or cancelled."""
        return self.status in TERMINAL_STATUSES

    def agent(self, agent_id: str) -> AgentState | None:
        """The row of one agent, or None (O(1): looked up by id)."""
        return self.agents.get(agent_id)


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
    agents: AgentRows,
    agent_id: str,
    agent_name: str,
    changes: dict[str, Any],
    if_pending: dict[str, Any] | None = None,
) -> AgentRows:
    """``agents`` with one row changed (appended if new); ``if_pending`` is applied too when that
    row is new or still pending. O(log n): this runs for every agent event, and the other rows
    are shared with the previous state, not copied."""
    i = agents.position(agent_id)
    if i is not None:
        row = agents[i]
        if if_pending and row.status == "pending":
            changes = {**changes, **if_pending}
        return agents.replace(i, _replace(row, changes))
    if if_pending:
        changes = {**changes, **if_pending}
    return agents.append(_replace(AgentState(agent_id=agent_id, agent_name=agent_name), changes))


def _stop_running(agents: AgentRows, timestamp: str) -> AgentRows:
    # Once per execution (its terminal event): O(n) is fine here.
    return agents.map_rows(
        lambda row: (
            _replace(row, {"status": "cancelled", "finished_at": timestamp})
            if row.status == "running"
            else row
        )
    )


def fold_progress(
    state: ExecutionState,
    agents: Mapping[str, int],
    progress: int | None,
    last_seq: int,
) -> ExecutionState:
    """The state after progress events of a *running* execution whose listed agents are all
    *running*: each agent's last progress, the execution's last progress, ``last_seq``.

    What :func:`apply_event` gives applying those events one by one (their only effect there),
    in one copy: the lazy fast path of :class:`~zmqmon.core.states.ExecutionStates`.
    """
    update: dict[str, Any] = {"last_seq": last_seq}
    if progress is not None:
        update["progress"] = progress
    if agents:
        rows = state.agents
        for agent_id, value in agents.items():
            i = rows.position(agent_id)
            if i is not None:
                rows = rows.replace(i, _replace(rows[i], {"progress": value}))
        update["agents"] = rows
    return _replace(state, update)


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
        agents = state.agents
        known = {row.agent_id for row in agents}
        new_rows = []
        for info in event.data.agents or ():
            if info.agent_id not in known:
                known.add(info.agent_id)
                new_rows.append(
                    AgentState(
                        agent_id=info.agent_id,
                        agent_name=info.agent_name,
                        depends_on=tuple(info.depends_on),
                    )
                )
        if new_rows:
            agents = agents.extend(new_rows)
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
