"""The SQLite store: batching, flush, drain on close, reducer state, reads, workflows, restart."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import reducer_fixtures
from zmqmon.core.emitter import EventEmitter
from zmqmon.core.wire import dumps, encode_event
from zmqmon.core.workflow import parse_workflow
from zmqmon.errors import StoreError
from zmqmon.shells.store import Store

WORKFLOW = {
    "name": "Pipeline",
    "description": "two steps",
    "agents": [
        {"id": "a", "uses": "zmqmon.demo:work"},
        {"id": "b", "uses": "zmqmon.demo:work", "dependsOn": ["a"]},
    ],
}


def storing_emitter(store: Store) -> EventEmitter:
    return EventEmitter(lambda event: store.append(event, encode_event(event)[1]))


def raw_count(path: Path, execution_id: str) -> int:
    """Events of an execution as seen by an independent connection (i.e. durable)."""
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM events WHERE execution_id = ?", (execution_id,)
        ).fetchone()
    return int(row[0])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


def test_flush_makes_appended_events_durable_and_readable(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        em.emit_execution_started("e1", "w1", workflow_name="W", agent_count=1)
        for p in range(1, 50):
            em.emit_agent_progress("e1", "w1", "a", "A", p)
        store.flush(timeout=10)
        assert raw_count(db, "e1") == 50
        events = store.events("e1")
        assert [e["seq"] for e in events] == list(range(1, 51))
        assert events[10]["data"]["progress"] == 10


def test_appends_are_written_in_batches(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        for _ in range(2000):
            em.emit_agent_progress("e1", "w1", "a", "A", 1)
        store.flush(timeout=10)
        assert raw_count(db, "e1") == 2000
        # One transaction per batch, not per event.
        assert 1 <= store.batches_written < 200


def test_close_drains_everything_appended(db: Path) -> None:
    store = Store(db)
    em = storing_emitter(store)
    for _ in range(3000):
        em.emit_agent_progress("e1", "w1", "a", "A", 1)
    store.close()  # no flush: close must drain
    assert raw_count(db, "e1") == 3000
    with pytest.raises(StoreError, match="closed"):
        store.events("e1")


def test_payload_is_kept_verbatim(db: Path) -> None:
    with Store(db) as store:
        event = EventEmitter(lambda e: None).emit_agent_progress("e1", "w1", "a", "A", 5, "hi")
        payload = encode_event(event)[1]
        store.append(event, payload)
        assert store.event_payloads("e1") == [payload]


def test_events_after_seq_and_limit(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        for _ in range(20):
            em.emit_agent_progress("e1", "w1", "a", "A", 1)
        em.emit_agent_progress("other", "w1", "a", "A", 1)
        assert [e["seq"] for e in store.events("e1", after_seq=15)] == [16, 17, 18, 19, 20]
        assert [e["seq"] for e in store.events("e1", after_seq=3, limit=2)] == [4, 5]
        assert store.events("nope") == []


@pytest.mark.parametrize("fixture", reducer_fixtures(), ids=lambda f: f["description"])
def test_state_is_the_reducer_over_stored_events(db: Path, fixture: dict[str, Any]) -> None:
    with Store(db) as store:
        for event in fixture["events"]:
            store.append(event, dumps(event))
        state = store.state(fixture["events"][0]["executionId"])
        assert state is not None
        assert state.to_json_dict() == fixture["expected"]


def test_duplicate_events_are_stored_once(db: Path) -> None:
    with Store(db) as store:
        event = EventEmitter(lambda e: None).emit_agent_progress("e1", "w1", "a", "A", 5)
        store.append(event, dumps(event))
        store.append(event, dumps(event))
        assert len(store.events("e1")) == 1


def test_an_invalid_event_is_stored_but_not_applied_and_the_writer_goes_on(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        em.emit_execution_started("e1", "w1", workflow_name="W", agent_count=1)
        bad = {"type": "agent:progress", "executionId": "e1", "workflowId": "w1",
               "timestamp": "nonsense", "seq": 2, "data": {}}  # fmt: skip
        store.append(bad, dumps(bad))
        em.resume("e1", 2)
        em.emit_execution_progress("e1", "w1", 40)
        state = store.state("e1")
        assert state is not None and state.last_seq == 3 and state.progress == 40
        assert [e["seq"] for e in store.events("e1")] == [1, 2, 3]


def test_executions_newest_first_with_filters(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        for i in range(5):
            wf = "even" if i % 2 == 0 else "odd"
            em.emit_execution_started(f"e{i}", wf, workflow_name=wf, agent_count=0)
        em.emit_execution_completed("e2", "even", duration_ms=1, results={})
        assert [s.execution_id for s in store.executions()] == ["e4", "e3", "e2", "e1", "e0"]
        assert [s.execution_id for s in store.executions(workflow_id="odd")] == ["e3", "e1"]
        assert [s.execution_id for s in store.executions(status="completed")] == ["e2"]
        running = store.executions(status="running", workflow_id="even")
        assert [s.execution_id for s in running] == ["e4", "e0"]
        assert len(store.executions(limit=2)) == 2
        assert store.state("e2") is not None and store.state("e2").status == "completed"  # type: ignore[union-attr]
        assert store.state("missing") is None


def test_workflows_saved_listed_and_replaced(db: Path) -> None:
    with Store(db) as store:
        definition = parse_workflow(WORKFLOW)
        wid = store.save_workflow(definition)
        assert store.workflow(wid) == definition
        assert store.workflow("missing") is None
        listed = store.workflows()
        assert len(listed) == 1
        assert listed[0]["workflowId"] == wid
        assert listed[0]["name"] == "Pipeline"
        assert listed[0]["agentCount"] == 2
        assert listed[0]["description"] == "two steps"
        assert listed[0]["createdAt"].endswith("Z")
        renamed = parse_workflow({**WORKFLOW, "name": "Renamed"})
        assert store.save_workflow(renamed, wid) == wid
        assert [w["name"] for w in store.workflows()] == ["Renamed"]


def test_reopening_the_file_keeps_events_states_and_workflows(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        em.emit_execution_started("e1", "w1", workflow_name="W", agent_count=1)
        em.emit_execution_completed("e1", "w1", duration_ms=5, results={"a": 1})
        wid = store.save_workflow(parse_workflow(WORKFLOW))
    with Store(db) as store:
        assert [e["type"] for e in store.events("e1")] == [
            "execution:started",
            "execution:completed",
        ]
        state = store.state("e1")
        assert state is not None and state.status == "completed" and state.last_seq == 2
        assert store.workflow(wid) is not None
        # The writer picks the stored state up again for later events of the same execution.
        store.append(
            {**store.events("e1")[0], "type": "execution:progress", "seq": 3,
             "data": {"progress": 1}},
            b"{}",
        )  # fmt: skip
        assert store.state("e1").last_seq == 3  # type: ignore[union-attr]


def test_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store(tmp_path / "no-such-dir" / "x.sqlite3")


def test_bursts_of_progress_give_the_same_state_as_the_reducer(db: Path) -> None:
    """The writer skips progress events the next one supersedes: the state must not change."""
    import random

    from zmqmon.core.events import parse_event
    from zmqmon.core.state import replay

    rng = random.Random(7)
    emitted: list[dict[str, Any]] = []
    with Store(db) as store:

        def deliver(event: dict[str, Any]) -> None:
            emitted.append(event)
            store.append(event, dumps(event))

        em = EventEmitter(deliver)
        for x in range(3):
            em.emit_execution_started(f"x{x}", "w", workflow_name="W", agent_count=3)
        for step in range(3000):
            xid = f"x{rng.randrange(3)}"
            agent = f"a{rng.randrange(3)}"
            roll = rng.random()
            if roll < 0.6:
                em.emit_agent_progress(xid, "w", agent, agent.upper(), rng.randrange(101))
            elif roll < 0.8:
                em.emit_execution_progress(xid, "w", rng.randrange(101), agent)
            elif roll < 0.9:
                em.emit_agent_started(xid, "w", agent, agent.upper())
            else:
                em.emit_agent_completed(xid, "w", agent, agent.upper(), result=step, duration_ms=1)
            if step % 500 == 0:
                store.flush()  # batch boundaries in the middle of runs too
        for x in range(3):
            em.emit_execution_completed(f"x{x}", "w", duration_ms=1, results={})
        for x in range(3):
            mine = [parse_event(e) for e in emitted if e["executionId"] == f"x{x}"]
            assert store.state(f"x{x}") == replay(mine)
            # and before the terminal event (running state), from the stored events
            stored = [parse_event(e) for e in store.events(f"x{x}", limit=10_000)]
            assert replay(stored) == replay(mine)


def test_a_malformed_append_is_dropped_and_the_rest_of_its_batch_stored(db: Path) -> None:
    with Store(db) as store:
        em = storing_emitter(store)
        em.emit_execution_started("e1", "w1", workflow_name="W", agent_count=1)
        store.append({"no": "keys"}, b"{}")
        em.emit_execution_progress("e1", "w1", 10)
        store.flush(10)
        assert [e["seq"] for e in store.events("e1")] == [1, 2]


def test_a_full_queue_holds_the_emitter_back_and_loses_nothing(db: Path) -> None:
    store = Store(db, max_pending=200)
    emitter = storing_emitter(store)
    emitter.emit_execution_started("e", "w", workflow_name="W", agent_count=1)
    longest = 0
    for i in range(5000):
        emitter.emit_agent_progress("e", "w", "a", "A", i % 100)
        longest = max(longest, len(store._queue))
    assert longest <= 200  # bounded: the appends waited for the writer instead
    assert store.waits > 0
    store.flush()
    assert raw_count(db, "e") == 5001
    store.close()


def test_a_read_under_a_busy_writer_answers_what_is_committed_within_read_wait(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    store = Store(db, read_wait=0.05)
    emitter = storing_emitter(store)
    emitter.emit_execution_started("e", "w", workflow_name="W", agent_count=1)
    store.flush()
    gate = threading.Event()
    original = store._write_batch

    def slow(batch: Any) -> None:
        gate.wait(10)  # the writer is stuck in a long transaction
        original(batch)

    monkeypatch.setattr(store, "_write_batch", slow)
    emitter.emit_agent_started("e", "w", "a", "A")
    state = store.state("e")  # does not wait for the stuck writer: what is committed
    assert state is not None and state.last_seq == 1
    assert [e["seq"] for e in store.events("e")] == [1]
    gate.set()
    store.flush()
    after = store.state("e")
    assert after is not None and after.last_seq == 2
    store.close()


def test_a_definition_saved_again_keeps_its_one_row(db: Path) -> None:
    with Store(db) as store:
        wid = store.save_workflow(parse_workflow(WORKFLOW))
        again = store.save_workflow(parse_workflow(json.dumps(WORKFLOW, indent=2)))
        assert again == wid and len(store.workflows()) == 1
        other = store.save_workflow(parse_workflow({**WORKFLOW, "name": "Other"}))
        assert other != wid
        assert [w["workflowId"] for w in store.workflows()] == [other, wid]  # newest first
        assert [w["workflowId"] for w in store.workflows(limit=1)] == [other]
