"""The engine inside the real service: Executor/Server, SQLite store, state service over ZeroMQ."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.services.executor.rules import check_events
from zmqmon.core.events import event_to_dict
from zmqmon.core.wire import MAX_EVENT_BYTES
from zmqmon.errors import BadRequestError, ConflictError
from zmqmon.services.executor import Agent, AgentContext, Executor, Workflow
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(60)

WORK = "zmqmon.demo:work"


def test_embedded_executor_runs_publishes_and_stores(tmp_path: Path) -> None:
    with Executor(db=tmp_path / "x.sqlite3") as ex:
        run = ex.submit(
            Workflow(
                "Embedded",
                [
                    Agent("a", WORK, params={"seconds": 0.02, "steps": 2}),
                    Agent("b", lambda ctx: "x" * (2 * MAX_EVENT_BYTES), depends_on=["a"]),
                ],
            )
        )
        assert run.endpoints == ex.endpoints
        assert set(ex.endpoints) == {"events", "state"}
        final = run.wait(20)
        assert final.status == "completed"
        check_events(run.events)
        ex.server.store.flush()
        stored = ex.server.store.events(run.id)
        # what was stored is what was emitted, the oversized result already cut in both
        assert stored == run.events
        big = next(
            e for e in stored if e["type"] == "agent:completed" and e["data"]["agentId"] == "b"
        )
        assert big["data"]["truncated"] is True
        with StateClient(ex.endpoints["state"]) as client:
            snap = client.snapshot(run.id)
            assert snap == final
            events, last_seq = client.events(run.id)
            assert last_seq == len(run.events)
            assert [event_to_dict(e)["seq"] for e in events] == list(range(1, last_seq + 1))


def test_fifty_executions_via_the_state_service(server: Any) -> None:
    definition = {
        "name": "Fifty",
        "agents": [
            {"id": "a", "uses": WORK, "params": {"seconds": 0.05, "steps": 5}},
            {"id": "b", "uses": WORK, "params": {"seconds": 0.02, "steps": 2}, "dependsOn": ["a"]},
            {"id": "c", "uses": WORK, "params": {"seconds": 0.02, "steps": 2}, "dependsOn": ["a"]},
        ],
    }
    ids: list[str] = []
    lock = threading.Lock()

    def submit(n: int) -> None:
        with StateClient(server.endpoints["state"]) as client:
            for _ in range(n):
                eid = client.execute(workflow=definition, user_id="u")
                with lock:
                    ids.append(eid)

    threads = [threading.Thread(target=submit, args=(10,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(ids)) == 50
    with StateClient(server.endpoints["state"]) as client:

        def all_done() -> bool:
            return all(client.snapshot(eid).is_terminal for eid in ids)

        wait_for(all_done, timeout=40, interval=0.1, message="50 executions to finish")
        for eid in ids:
            events, last_seq = client.events(eid)
            dicts = [event_to_dict(e) for e in events]
            assert all(d["executionId"] == eid for d in dicts)
            state = check_events(dicts)
            assert state.status == "completed" and state.last_seq == last_seq
            assert client.snapshot(eid) == state


def test_cancel_and_invalid_definitions_through_the_service(server: Any) -> None:
    with StateClient(server.endpoints["state"]) as client:
        with pytest.raises(BadRequestError, match="no_such_mod"):
            client.execute(
                workflow={"name": "Bad", "agents": [{"id": "a", "uses": "no_such_mod:f"}]}
            )
        with pytest.raises(BadRequestError, match="dependency cycle"):
            client.execute(
                workflow={
                    "name": "Cyc",
                    "agents": [
                        {"id": "a", "uses": WORK, "dependsOn": ["b"]},
                        {"id": "b", "uses": WORK, "dependsOn": ["a"]},
                    ],
                }
            )
        assert client.executions() == []  # nothing ran
        eid = client.execute(
            workflow={
                "name": "Long",
                "agents": [{"id": "w", "uses": WORK, "params": {"seconds": 60}}],
            }
        )
        wait_for(lambda: client.snapshot(eid).agents[0].status == "running")
        client.cancel(eid, "enough")
        wait_for(lambda: client.snapshot(eid).status == "cancelled")
        with pytest.raises(ConflictError):
            client.cancel(eid)
        events, _ = client.events(eid)
        dicts = [event_to_dict(e) for e in events]
        check_events(dicts)
        assert dicts[-1]["type"] == "execution:cancelled"


def test_python_agents_with_progress_in_the_embedded_executor() -> None:
    seen: list[int] = []

    def count(ctx: AgentContext) -> int:
        for i in range(1000):
            ctx.progress(i / 10)
        seen.append(1)
        return 1000

    with Executor(progress_interval=0) as ex:
        run = ex.submit(Workflow("Count", [Agent("count", count)]))
        assert run.result == {"count": 1000}
        progress = [e for e in run.events if e["type"] == "agent:progress"]
        assert len(progress) == 1000  # interval 0: every call
    assert seen == [1]
