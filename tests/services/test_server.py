"""The composed service: the engine driven through the state service, clean stop, restart on the
same SQLite file, recovery of executions interrupted by ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import wait_for
from zmqmon.errors import BadRequestError, ConflictError, NotFoundError
from zmqmon.services.server import INTERRUPTED, Server
from zmqmon.shells.client import StateClient
from zmqmon.shells.store import Store


def work_workflow(seconds: float, steps: int = 4, name: str = "Work") -> dict[str, Any]:
    return {
        "name": name,
        "agents": [
            {"id": "a", "name": "A", "uses": "zmqmon.demo:work",
             "params": {"seconds": seconds, "steps": steps}},
            {"id": "b", "name": "B", "uses": "zmqmon.demo:work", "dependsOn": ["a"],
             "params": {"seconds": seconds, "steps": steps}},
        ],
    }  # fmt: skip


def start(tmp_path: Path, **kwargs: Any) -> Server:
    return Server(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", tmp_path / "zmqmon.sqlite3", **kwargs
    ).start()


def seqs_of(client: StateClient, execution_id: str) -> list[int]:
    return [e.seq for e in client.events(execution_id)[0]]


@pytest.mark.timeout(60)
def test_execute_and_cancel_through_the_state_service(server: Server) -> None:
    assert server.engine is not None
    with StateClient(server.endpoints["state"], timeout=5) as client:
        wid = client.create_workflow(work_workflow(0.1))
        execution_id = client.execute(wid, inputs={"n": 1}, user_id="alice")
        state = wait_for(lambda: (s := client.snapshot(execution_id)).is_terminal and s, timeout=20)
        assert state.status == "completed" and state.user_id == "alice"
        assert [(a.agent_id, a.status) for a in state.agents] == [
            ("a", "completed"),
            ("b", "completed"),
        ]
        events, last = client.events(execution_id)
        assert [e.seq for e in events] == list(range(1, last + 1))
        assert events[-1].type == "execution:completed"
        assert any(e.type == "agent:progress" for e in events)
        assert state.workflow_id == wid

        slow = client.execute(workflow=work_workflow(60, name="Slow"))
        wait_for(lambda: client.snapshot(slow).agents[0].status == "running", timeout=10)
        client.cancel(slow, reason="enough")
        cancelled = wait_for(lambda: (s := client.snapshot(slow)).is_terminal and s, timeout=10)
        assert cancelled.status == "cancelled"
        with pytest.raises(ConflictError):
            client.cancel(slow)
        assert [w["name"] for w in client.workflows()] == ["Slow", "Work"]  # newest first

        with pytest.raises(BadRequestError, match="nope"):
            client.execute(
                workflow={"name": "x", "agents": [{"id": "a", "uses": "zmqmon.demo:nope"}]}
            )
        assert [w["name"] for w in client.workflows()] == ["Slow", "Work"]  # refused: not stored
        with pytest.raises(NotFoundError):
            client.execute("ghost")


@pytest.mark.timeout(60)
def test_submit_runs_and_stores_the_workflow(server: Server) -> None:
    handle = server.submit(work_workflow(0.05, steps=2), user_id="u")
    handle.wait(20)
    state = server.store.state(handle.id)
    assert state is not None and state.status == "completed"
    stored = server.store.workflow(handle.workflow_id)
    assert stored is not None and stored.name == "Work"


@pytest.mark.timeout(60)
def test_submit_a_python_workflow_with_a_local_callable(server: Server) -> None:
    from zmqmon.services.executor.api import Agent, Workflow

    def local(ctx: Any) -> dict[str, int]:  # not importable: runs in this process
        return {"answer": 42}

    handle = server.submit(Workflow("Local", [Agent("a", local)]))
    handle.wait(20)
    events = server.store.events(handle.id)
    assert events[-1]["type"] == "execution:completed"
    assert events[-1]["data"]["results"] == {"a": {"answer": 42}}
    stored = server.store.workflow(handle.workflow_id)
    assert stored is not None and stored.agents[0].uses.endswith("local")


@pytest.mark.timeout(60)
def test_stop_cancels_running_executions_and_stores_every_event(tmp_path: Path) -> None:
    srv = start(tmp_path)
    handle = srv.submit(work_workflow(60))
    wait_for(lambda: (s := srv.store.state(handle.id)) and s.agents[0].status == "running")
    srv.stop()
    with Store(tmp_path / "zmqmon.sqlite3") as store:
        state = store.state(handle.id)
        assert state is not None and state.status == "cancelled"
        events = store.events(handle.id)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "execution:cancelled"


@pytest.mark.timeout(60)
def test_restart_on_the_same_file_answers_for_old_executions(tmp_path: Path) -> None:
    with start(tmp_path) as srv:
        handle = srv.submit(work_workflow(0.02, steps=2))
        handle.wait(20)
        with StateClient(srv.endpoints["state"], timeout=5) as client:
            before = client.events(handle.id)
            snapshot = client.snapshot(handle.id)
    with start(tmp_path) as srv:
        assert srv.recovered == []  # it had finished: nothing to recover
        with StateClient(srv.endpoints["state"], timeout=5) as client:
            assert client.events(handle.id) == before
            assert client.snapshot(handle.id) == snapshot
            assert client.executions()[0].execution_id == handle.id


def test_start_marks_unfinished_executions_failed_interrupted(tmp_path: Path) -> None:
    # A previous process left one execution running and one pending (its started event lost).
    with Store(tmp_path / "zmqmon.sqlite3") as store:
        from zmqmon.core.emitter import EventEmitter
        from zmqmon.core.wire import encode_event

        em = EventEmitter(lambda e: store.append(e, encode_event(e)[1]))
        em.emit_execution_started("left", "wf", workflow_name="W", agent_count=1)
        em.emit_agent_progress("left", "wf", "a", "A", 40)
        em.emit_execution_started("done", "wf", workflow_name="W", agent_count=0)
        em.emit_execution_completed("done", "wf", duration_ms=1, results={})
    with start(tmp_path) as srv:
        assert srv.recovered == ["left"]
        state = srv.store.state("left")
        assert state is not None and state.status == "failed" and state.last_seq == 3
        last = srv.store.events("left")[-1]
        assert last["type"] == "execution:failed" and last["data"]["errorType"] == INTERRUPTED
        assert srv.store.state("done").status == "completed"  # type: ignore[union-attr]
        # The publisher numbers on from there.
        assert srv.publisher.last_seq("left") == 3


def serve_process(db: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", "serve", "--events", "tcp://127.0.0.1:0",
         "--state", "tcp://127.0.0.1:0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "zmqmon serve printed nothing"
    return proc, json.loads(line)


@pytest.mark.timeout(90)
def test_kill_9_mid_execution_then_restart_reads_failed_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "zmqmon.sqlite3"
    proc, endpoints = serve_process(db)
    try:
        with StateClient(endpoints["state"], timeout=10) as client:
            execution_id = client.execute(workflow=work_workflow(60, steps=600))
            wait_for(
                lambda: client.snapshot(execution_id).agents[0].progress >= 1,
                timeout=20,
                message="progress events stored",
            )
            seen = client.snapshot(execution_id).last_seq
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with start(tmp_path) as srv, StateClient(srv.endpoints["state"], timeout=5) as client:
        assert srv.recovered == [execution_id]
        state = client.snapshot(execution_id)
        assert state.status == "failed" and state.last_seq > seen
        events, last = client.events(execution_id, limit=10_000)
        assert [e.seq for e in events] == list(range(1, last + 1))  # a gap-free prefix + 1
        assert events[-1].type == "execution:failed"
        assert events[-1].data.error_type == INTERRUPTED  # type: ignore[union-attr]


def test_busy_port_fails_start_and_releases_everything(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    taken = ctx.socket(zmq.PUB)
    taken.bind("tcp://127.0.0.1:0")
    endpoint = taken.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        srv = Server("tcp://127.0.0.1:0", endpoint, tmp_path / "x.sqlite3")
        with pytest.raises(zmq.ZMQError):
            srv.start()
    finally:
        taken.close(0)
        ctx.term()


def many_agents(n: int, chain: bool = False) -> dict[str, Any]:
    return {
        "name": f"{n} agents",
        "agents": [
            {"id": f"a{i}", "uses": "zmqmon.demo:work", "params": {"seconds": 0, "steps": 1},
             "dependsOn": [f"a{i + 1}"] if chain and i < n - 1 else []}
            for i in range(n)
        ],
    }  # fmt: skip


@pytest.mark.timeout(60)
def test_agents_per_workflow_are_capped_with_a_bad_request_naming_the_cap(tmp_path: Path) -> None:
    from zmqmon.config import ServiceLimits

    srv = start(tmp_path, limits=ServiceLimits(max_agents=50))
    with srv, StateClient(srv.endpoints["state"], timeout=10) as client:
        for n in (51, 20_000):
            with pytest.raises(BadRequestError, match=f"{n} agents; at most 50 per workflow"):
                client.create_workflow(many_agents(n))
            with pytest.raises(BadRequestError, match="at most 50 per workflow"):
                client.execute(workflow=many_agents(n))
        assert client.workflows() == []
        # At the cap, even as one long chain (no recursion limit on the way), it runs.
        execution_id = client.execute(workflow=many_agents(50, chain=True))
        state = wait_for(lambda: (s := client.snapshot(execution_id)).is_terminal and s, 20)
        assert state.status == "completed"


@pytest.mark.timeout(60)
def test_a_handle_keeps_few_events_in_memory_and_reads_the_rest_from_the_store(
    tmp_path: Path,
) -> None:
    from zmqmon.config import ServiceLimits

    with start(tmp_path, limits=ServiceLimits(max_events_in_memory=5)) as srv:
        handle = srv.submit(work_workflow(0.05, steps=10))
        handle.wait(20)
        record = handle._record
        # memory bounded: a store reads the rest back, so no per-agent allowance (a bare
        # engine's only)
        assert len(record.events) == 5 and record.evicted > 5
        events = handle.events
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events == srv.store.events(handle.id, limit=10_000)
        assert [e["seq"] for e in handle.events_after(3)] == list(range(4, len(events) + 1))
        assert handle.state == srv.store.state(handle.id)
        assert handle.state.status == "completed"


@pytest.mark.timeout(60)
def test_submitting_one_definition_again_stores_one_workflow(server: Server) -> None:
    first = server.submit(work_workflow(0, steps=1))
    again = server.submit(work_workflow(0, steps=1))
    assert first.workflow_id == again.workflow_id
    assert first.join(20) == again.join(20) == "completed"
    assert [w["workflowId"] for w in server.store.workflows()] == [first.workflow_id]
