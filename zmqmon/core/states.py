"""Execution states as a subscriber keeps them: the one reducer, with progress folded lazily.

Nearly all of a busy stream is progress — ``agent:progress`` of an agent already running,
``execution:progress`` of an execution already running — and each such event only sets a
progress value and ``lastSeq``, which the next one of the same agent overwrites. Applying them one
by one costs model copies per event for values nobody reads in between. :class:`ExecutionStates`
notes them instead (the last value per agent, the execution's last progress, the seq) and folds
them into the state when it is read, or when an event of another kind comes. What a reader gets is
exactly what :func:`~zmqmon.core.state.apply_event` would have given event by event (the tests
check it on random streams); anything else — a first progress of a pending agent, a terminal
event, a state not running — goes through the reducer at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

from zmqmon.core.events import AgentProgress, Event, ExecutionProgress
from zmqmon.core.state import ExecutionState, apply_event, fold_progress

__all__ = ["ExecutionStates"]

_PROGRESS: Final = frozenset({"agent:progress", "execution:progress"})


class _Progress:
    """Progress noted since an execution's state was last folded."""

    __slots__ = ("agents", "last_seq", "progress")

    def __init__(self) -> None:
        self.agents: dict[str, int] = {}
        self.progress: int | None = None
        self.last_seq = 0


class ExecutionStates(Mapping[str, ExecutionState]):
    """Execution id → state; written by :meth:`apply` and :meth:`set`, read as a mapping."""

    def __init__(self) -> None:
        self._states: dict[str, ExecutionState] = {}
        self._noted: dict[str, _Progress] = {}

    # -- writes ---------------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold one event in, as :func:`~zmqmon.core.state.apply_event` would."""
        eid = event.execution_id
        if event.type in _PROGRESS:
            noted = self._noted.get(eid)
            if noted is not None and type(event) is AgentProgress and event.seq > noted.last_seq:
                # Nearly every event of a busy stream: more progress of an agent noted already.
                # Nothing changed the state since it was noted (any other write folds first), so
                # it is still running, and so is that agent: _note's checks all hold.
                data = event.data
                agents = noted.agents
                if data.agent_id in agents:
                    agents[data.agent_id] = data.progress
                    noted.last_seq = event.seq
                    return
            if self._note(eid, event):
                return
        self._states[eid] = apply_event(self._fold(eid), event)

    def set(self, execution_id: str, state: ExecutionState) -> None:
        """Replace a state (a snapshot): what was noted before it is dropped."""
        self._noted.pop(execution_id, None)
        self._states[execution_id] = state

    def pop(
        self, execution_id: str, default: ExecutionState | None = None
    ) -> ExecutionState | None:
        """Forget an execution; its state (folded) or ``default``."""
        state = self._fold(execution_id)
        self._states.pop(execution_id, None)
        return default if state is None else state

    def _note(self, eid: str, event: Event) -> bool:
        """Note a progress event instead of applying it, when that gives the same state."""
        state = self._states.get(eid)
        if state is None or state.status != "running":
            return False
        noted = self._noted.get(eid)
        if event.seq <= (state.last_seq if noted is None else noted.last_seq):
            return False  # a duplicate: the reducer's rule decides (it changes nothing)
        if isinstance(event, AgentProgress):
            agent_id = event.data.agent_id
            if noted is None or agent_id not in noted.agents:
                row = state.agent(agent_id)
                if row is None or row.status != "running":
                    return False  # its first progress also sets status and startedAt
            if noted is None:
                noted = self._noted[eid] = _Progress()
            noted.agents[agent_id] = event.data.progress
        elif isinstance(event, ExecutionProgress):
            if noted is None:
                noted = self._noted[eid] = _Progress()
            noted.progress = event.data.progress
        else:
            return False
        noted.last_seq = event.seq
        return True

    def _fold(self, eid: str) -> ExecutionState | None:
        state = self._states.get(eid)
        noted = self._noted.pop(eid, None)
        if noted is None or state is None:
            return state
        state = fold_progress(state, noted.agents, noted.progress, noted.last_seq)
        self._states[eid] = state
        return state

    # -- reads ----------------------------------------------------------------------------------

    def __getitem__(self, execution_id: str) -> ExecutionState:
        state = self._fold(execution_id)
        if state is None:
            raise KeyError(execution_id)
        return state

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._states

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._states))

    def __len__(self) -> int:
        return len(self._states)

    def __repr__(self) -> str:
        return f"ExecutionStates({len(self._states)} executions)"
