"""Agents on a real Dask cluster (LocalCluster: two worker processes, shared by the module).

What in-process agents do, agents on workers must do too, event for event: progress coalesced,
exceptions named, timeouts, cancellation reaching the running agent (seen through files the
agents write, in the worker's process), and a worker killed mid-agent failing that agent with
``WorkerLost`` — or rerunning it when the agent asks for ``retries``. Waits poll; nothing
asserts on time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.services.executor.rules import check_events, types_of
from zmqmon.core.emitter import EventEmitter
from zmqmon.errors import ConfigError
from zmqmon.services.executor import WorkflowEngine
from zmqmon.services.executor.dask_runner import DaskRunner

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[3]
AGENTS = "tests.services.executor.agents"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    # Workers import the agents' module themselves: the repository on their PYTHONPATH.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old) if p)
    lc = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        scheduler_port=0,
        dashboard_address=None,
        host="127.0.0.1",
    )
    try:
        yield lc
    finally:
        lc.close()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def engine_events(cluster: Any) -> Iterator[tuple[WorkflowEngine, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    engine = WorkflowEngine(EventEmitter(events.append), dask=cluster, progress_interval=0)
    try:
        yield engine, events
    finally:
        engine.close()


def _of(events: list[dict[str, Any]], execution_id: str) -> list[dict[str, Any]]:
    return [e for e in list(events) if e["executionId"] == execution_id]


def _wf(*agents: dict[str, Any]) -> dict[str, Any]:
    return {"name": "On Dask", "agents": list(agents)}


DIAMOND = _wf(
    {"id": "a", "uses": f"{AGENTS}:steps", "params": {"steps": 4}},
    {"id": "b", "uses": f"{AGENTS}:steps", "params": {"steps": 2}, "dependsOn": ["a"]},
    {"id": "c", "uses": "zmqmon.demo:work", "params": {"seconds": 0.01}, "dependsOn": ["a"]},
    {"id": "d", "uses": f"{AGENTS}:echo", "dependsOn": ["b", "c"]},
)


def _essence(events: list[dict[str, Any]]) -> dict[str, Any]:
    """What must not depend on where agents ran: the event types (per agent, in order, and in
    all), the progress values each agent reported, and the final state without times."""
    state = check_events(events).to_json_dict()
    for key in ("startedAt", "finishedAt", "executionId"):
        state.pop(key)
    for row in state["agents"]:
        for key in ("startedAt", "finishedAt", "durationMs"):
            row.pop(key)
    agents = [a["id"] for a in DIAMOND["agents"]]
    return {
        "types": Counter(types_of(events)),
        "per_agent": {a: types_of(events, a) for a in agents},
        "progress": {
            a: [
                (e["data"]["progress"], e["data"]["message"])
                for e in events
                if e["type"] == "agent:progress" and e["data"]["agentId"] == a
            ]
            for a in agents
        },
        "completed": {
            e["data"]["agentId"]: e["data"]["result"]
            for e in events
            if e["type"] == "agent:completed"
        },
        "state": state,
    }


def test_a_diamond_on_dask_emits_what_it_emits_in_process(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]],
) -> None:
    engine, events = engine_events
    local_events: list[dict[str, Any]] = []
    with WorkflowEngine(EventEmitter(local_events.append), progress_interval=0) as local:
        local.submit(DIAMOND, workflow_id="wf", user_id="ada").wait(30)
    run = engine.submit(DIAMOND, workflow_id="wf", user_id="ada")
    state = run.wait(60)
    assert state.status == "completed", state.error
    on_dask = _of(events, run.id)
    assert on_dask[-1]["type"] == "execution:completed"
    assert _essence(on_dask) == _essence(local_events)
    assert run.result["d"] == {"params": {}, "inputs": {}, "deps": ["b", "c"]}


def test_progress_is_coalesced_on_the_worker_and_the_last_value_comes_first(
    cluster: Any,
) -> None:
    events: list[dict[str, Any]] = []
    with WorkflowEngine(EventEmitter(events.append), dask=cluster, progress_interval=0.05) as eng:
        run = eng.submit(_wf({"id": "chatty", "uses": f"{AGENTS}:chatty"}))
        assert run.wait(60).status == "completed"
    mine = _of(events, run.id)
    check_events(mine)
    progress = [e for e in mine if e["type"] == "agent:progress"]
    duration_ms = next(e for e in mine if e["type"] == "agent:completed")["data"]["durationMs"]
    # at most one per 50 ms interval (plus the first and the final flush), of 100,000 calls
    assert 1 <= len(progress) <= duration_ms / 50 + 2
    assert types_of(mine, "chatty")[-2:] == ["agent:progress", "agent:completed"]
    assert progress[-1]["data"]["progress"] == 99


@pytest.mark.parametrize(
    ("uses", "error_type", "message"),
    [
        ("zmqmon.demo:fail", "RuntimeError", "boom"),
        (f"{AGENTS}:abort", "Abort", "gave up"),
        (f"{AGENTS}:exit_now", "SystemExit", "3"),
    ],
)
def test_an_agent_exception_fails_it_with_its_error_type(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]],
    uses: str,
    error_type: str,
    message: str,
) -> None:
    engine, events = engine_events
    run = engine.submit(_wf({"id": "bad", "uses": uses, "params": {"message": "boom"}}))
    assert run.wait(60).status == "failed"
    mine = _of(events, run.id)
    check_events(mine)
    failed = next(e for e in mine if e["type"] == "agent:failed")["data"]
    assert (failed["errorType"], failed["error"]) == (error_type, message)
    assert mine[-1]["data"]["errorType"] == error_type and mine[-1]["data"]["agentId"] == "bad"


def test_a_timeout_fails_the_agent_and_the_agent_on_the_worker_sees_it(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]], tmp_path: Path
) -> None:
    engine, events = engine_events
    params = {"started": str(tmp_path / "started"), "seen": str(tmp_path / "seen")}
    run = engine.submit(
        _wf({"id": "t", "uses": f"{AGENTS}:wait_for_cancel", "params": params, "timeoutSeconds": 1})
    )
    assert run.wait(60).status == "failed"
    failed = next(e for e in _of(events, run.id) if e["type"] == "agent:failed")["data"]
    assert failed["errorType"] == "AgentTimeoutError"
    wait_for(lambda: Path(params["seen"]).exists(), timeout=30, message="ctx.cancelled on worker")


@pytest.mark.parametrize("uses", ["wait_for_cancel", "wait_async"])
def test_cancel_reaches_a_running_agent_on_its_worker(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]], tmp_path: Path, uses: str
) -> None:
    engine, events = engine_events
    params = {"started": str(tmp_path / "started"), "seen": str(tmp_path / "seen")}
    run = engine.submit(_wf({"id": "w", "uses": f"{AGENTS}:{uses}", "params": params}))
    wait_for(lambda: Path(params["started"]).exists(), timeout=30, message="agent running")
    assert engine.cancel(run.id, "enough")
    assert run.wait(30).status == "cancelled"
    mine = _of(events, run.id)
    check_events(mine)
    assert mine[-1]["data"]["reason"] == "enough"
    wait_for(lambda: Path(params["seen"]).exists(), timeout=30, message="agent saw the cancel")


def _kill_the_agent(params: dict[str, str]) -> int:
    pid = int(wait_for(lambda: _read(params["started"]), timeout=30, message="agent running"))
    assert pid != os.getpid()  # it runs in a worker process
    os.kill(pid, signal.SIGKILL)
    return pid


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


def test_a_worker_killed_mid_agent_fails_it_with_worker_lost(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]], tmp_path: Path
) -> None:
    engine, events = engine_events
    params = {"started": str(tmp_path / "started"), "seen": str(tmp_path / "seen")}
    run = engine.submit(_wf({"id": "k", "uses": f"{AGENTS}:wait_for_cancel", "params": params}))
    _kill_the_agent(params)
    state = run.wait(60)  # never hangs
    assert state.status == "failed"
    mine = _of(events, run.id)
    check_events(mine)
    failed = next(e for e in mine if e["type"] == "agent:failed")["data"]
    assert failed["errorType"] == "WorkerLost" and "was lost" in failed["error"]
    assert mine[-1]["data"]["errorType"] == "WorkerLost"


def test_an_agent_with_retries_is_rerun_after_its_worker_was_lost(
    engine_events: tuple[WorkflowEngine, list[dict[str, Any]]], tmp_path: Path
) -> None:
    engine, events = engine_events
    params = {"started": str(tmp_path / "started"), "seen": str(tmp_path / "seen")}
    run = engine.submit(
        _wf({"id": "r", "uses": f"{AGENTS}:wait_for_cancel", "params": params, "retries": 1})
    )
    _kill_the_agent(params)
    state = run.wait(60)
    assert state.status == "completed", state.error
    assert run.result["r"] == "rerun"  # the second attempt saw the first one's file
    mine = _of(events, run.id)
    check_events(mine)
    reruns = [e["data"]["message"] for e in mine if e["type"] == "agent:progress"]
    assert reruns == ["worker lost: rerun 1 of 1"]


def test_what_does_not_name_a_scheduler_is_refused(cluster: Any) -> None:
    with pytest.raises(ConfigError, match="empty"):
        DaskRunner(" ")
    with pytest.raises(ConfigError, match="cannot find a Dask scheduler"):
        DaskRunner(object())
    assert DaskRunner(cluster).address == cluster.scheduler_address


def test_serve_with_dask_runs_a_workflow_on_the_cluster(cluster: Any, tmp_path: Path) -> None:
    from zmqmon.shells.client import StateClient

    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", "serve", "--db", str(tmp_path / "db.sqlite3")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "ZMQMON_EVENTS": "tcp://127.0.0.1:0",
            "ZMQMON_STATE": "tcp://127.0.0.1:0",
            "ZMQMON_DASK": cluster.scheduler_address,
        },
    )
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            execution_id = client.execute(
                workflow=_wf(
                    {"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0.05}},
                    {"id": "b", "uses": "zmqmon.demo:work", "dependsOn": ["a"]},
                )
            )
            state = wait_for(
                lambda: (s := client.snapshot(execution_id)).is_terminal and s, timeout=60
            )
            assert state.status == "completed"
            events, _ = client.events(execution_id)
        check_events([e.model_dump(by_alias=True, mode="json") for e in events])
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "agents run on the Dask cluster at " + cluster.scheduler_address in err
