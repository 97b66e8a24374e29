"""``zmqmon.records``: events, agents and executions as rows, from any source, pandas optional."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime
from typing import Any

import pytest

import zmqmon
from tests.conftest import reducer_fixtures
from zmqmon.core.events import parse_event
from zmqmon.core.records import EVENT_COLUMNS
from zmqmon.core.state import replay


def fixture_events() -> list[dict[str, Any]]:
    return next(f for f in reducer_fixtures() if f["events"])["events"]  # type: ignore[no-any-return]


def test_event_rows_from_dicts_and_models_are_the_same() -> None:
    events = fixture_events()
    rows = zmqmon.records(events)

    def columns(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:  # a model's data has defaults
        return [{k: v for k, v in r.items() if k != "data"} for r in rs]

    assert columns(rows) == columns(zmqmon.records([parse_event(e) for e in events]))
    assert [r["seq"] for r in rows] == [e["seq"] for e in events]
    assert tuple(rows[0]) == EVENT_COLUMNS
    first = rows[0]
    assert isinstance(first["time"], datetime) and first["time"].tzinfo is UTC
    agent_rows = [r for r in rows if r["type"] == "agent:completed"]
    assert agent_rows and all(r["agentId"] and r["durationMs"] is not None for r in agent_rows)


def test_agent_and_execution_rows_from_states_and_events() -> None:
    events = fixture_events()
    state = replay(parse_event(e) for e in events)
    assert state is not None
    assert zmqmon.records(events, "agents") == zmqmon.records(state, "agents")
    agents = zmqmon.records([state], "agents")
    assert [a["agentId"] for a in agents] == [a.agent_id for a in state.agents]
    (execution,) = zmqmon.records(state, "executions")
    assert execution["executionId"] == state.execution_id
    assert execution["agentCount"] == len(state.agents)
    with pytest.raises(ValueError, match="kind"):
        zmqmon.records(state, "nope")  # type: ignore[arg-type]


def test_a_handle_and_a_subscriber_like_source(server: Any) -> None:
    handle = server.submit(
        {
            "name": "R",
            "agents": [
                {"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0, "steps": 2}}
            ],
        }
    )
    final = handle.wait(20)
    rows = zmqmon.records(handle)
    assert len(rows) == final.last_seq and rows[-1]["type"] == "execution:completed"
    by_id = zmqmon.records(handle.id, state=server.endpoints["state"])
    assert [r["seq"] for r in by_id] == [r["seq"] for r in rows]

    class Follower:  # what a Subscriber offers: states()
        def states(self) -> dict[str, Any]:
            return {final.execution_id: final}

    assert zmqmon.records(Follower(), "executions")[0]["status"] == "completed"


def test_frames_need_pandas_and_get_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    events = fixture_events()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        zmqmon.records(events, frame=True)
    made: dict[str, Any] = {}

    class DataFrame:
        @staticmethod
        def from_records(rows: list[dict[str, Any]], columns: Any = None) -> str:
            made.update(rows=rows, columns=columns)
            return "frame"

    monkeypatch.setitem(sys.modules, "pandas", types.SimpleNamespace(DataFrame=DataFrame))
    assert zmqmon.records(events, frame=True) == "frame"
    assert made["rows"] == zmqmon.records(events)
    zmqmon.records([], frame=True)
    assert made["columns"] == EVENT_COLUMNS  # an empty frame still has its columns
