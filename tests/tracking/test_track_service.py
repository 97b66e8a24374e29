"""``zmqmon.track`` against real processes: a script reporting to ``zmqmon serve``, seen by a plain
ZeroMQ SUB and by the state service; the service killed mid-run, or started late."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import free_port, wait_for
from zmqmon.errors import NotFoundError
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]


def serve(tmp_path: Path, state: str = "tcp://127.0.0.1:0") -> tuple[subprocess.Popen[str], Any]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqmon.cli",
            "serve",
            "--events",
            "tcp://127.0.0.1:0",
            "--state",
            state,
            "--db",
            str(tmp_path / "serve.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def script(*args: str, linger: float = 5.0) -> subprocess.Popen[str]:
    env = {**os.environ, "ZMQMON_TRACK_LINGER": str(linger), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tracking.script", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def live_sub(events: str) -> Any:
    """A plain SUB on every execution, returned once its subscription is live (a heartbeat came)."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.connect(events)
    sub.subscribe(b"exec/")
    sub.subscribe(b"sys/heartbeat")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sub.poll(200) and sub.recv_multipart()[0] == b"sys/heartbeat":
            return sub
    pytest.fail("no heartbeat on the event stream")


def test_a_script_reports_seen_by_a_plain_sub_and_the_state_service(tmp_path: Path) -> None:
    service, endpoints = serve(tmp_path)
    sub = live_sub(endpoints["events"])
    user = script(endpoints["state"], "work")
    try:
        assert user.stdout is not None
        ids = json.loads(user.stdout.readline())
        assert user.wait(30) == 0, user.stderr.read() if user.stderr else ""
        seen: dict[str, list[dict[str, Any]]] = {ids["run"]: [], ids["failed"]: []}
        terminal = {"execution:completed", "execution:failed"}

        def both_ended() -> bool:
            while sub.poll(50):
                topic, payload = sub.recv_multipart()
                if topic.startswith(b"exec/"):
                    event = json.loads(payload)
                    seen[event["executionId"]].append(event)
            return all(evs and evs[-1]["type"] in terminal for evs in seen.values())

        wait_for(both_ended, timeout=30, message="both runs ended on the SUB")
        run, failed = seen[ids["run"]], seen[ids["failed"]]
        # numbered by the service: 1..n, in order, no gap
        for events in (run, failed):
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            assert events[0]["type"] == "execution:started"
        assert run[0]["data"]["workflowName"] == "Nightly ETL"
        started = [e["data"]["agentId"] for e in run if e["type"] == "agent:started"]
        assert started[0] == "load" and sorted(started[1:]) == ["shard-0", "shard-1", "shard-2"]
        done = {e["data"]["agentId"] for e in run if e["type"] == "agent:completed"}
        assert done == {"load", "shard-0", "shard-1", "shard-2"}
        assert run[-1]["type"] == "execution:completed"
        progress = [
            e["data"]["progress"]
            for e in run
            if e["type"] == "agent:progress" and e["data"]["agentId"] == "load"
        ]
        assert progress[-1] == 100 and progress == sorted(progress)
        assert [e["type"] for e in failed][-2:] == ["agent:failed", "execution:failed"]
        assert failed[-2]["data"]["errorType"] == "ValueError"
        assert failed[-1]["data"]["errorType"] == "ValueError"
        assert failed[-1]["data"]["agentId"] == "parse"
        # the state service stored the very events the SUB saw
        with StateClient(endpoints["state"]) as client:
            stored, last = client.events(ids["run"], limit=10_000)
            assert [e.seq for e in stored] == [e["seq"] for e in run] and last == len(run)
            state = client.snapshot(ids["run"])
            assert state.status == "completed" and state.progress == 100
            loader = state.agent("load")
            assert loader is not None and loader.agent_name == "Loader"
            broken = client.snapshot(ids["failed"])
            assert broken.status == "failed" and broken.agents[0].status == "failed"
            listed = client.executions(workflow_id=run[0]["workflowId"])
            assert [s.execution_id for s in listed] == [ids["run"]]
    finally:
        sub.close(0)
        stop(user)
        stop(service)


def test_the_service_killed_mid_run_the_script_finishes_normally(tmp_path: Path) -> None:
    service, endpoints = serve(tmp_path)
    user = script(endpoints["state"], "long", "3", linger=1.0)
    try:
        assert user.stdout is not None
        execution_id = user.stdout.readline().split()[1]
        with StateClient(endpoints["state"]) as client:

            def looping() -> bool:
                try:
                    agent = client.snapshot(execution_id).agent("loop")
                except NotFoundError:  # not reported yet
                    return False
                return agent is not None and agent.progress > 0

            wait_for(looping, timeout=20, message="the loop's progress reached the service")
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        assert user.wait(60) == 0
        out = user.stdout.read()
        assert out.startswith("done ")
        assert user.stderr is not None and "Traceback" not in user.stderr.read()
    finally:
        stop(user)
        stop(service)


def test_events_wait_for_a_service_that_starts_late(tmp_path: Path) -> None:
    state = f"tcp://127.0.0.1:{free_port()}"
    user = script(state, "long", "1", linger=30.0)
    service = None
    try:
        assert user.stdout is not None
        execution_id = user.stdout.readline().split()[1]  # running, nobody listening yet
        service, endpoints = serve(tmp_path, state)
        assert endpoints["state"] == state
        assert user.wait(60) == 0
        assert user.stdout.read().split() == ["done", "0"]  # delayed, none dropped
        with StateClient(state) as client:
            final = client.snapshot(execution_id)
            assert final.status == "completed"
            events, last = client.events(execution_id, limit=10_000)
            assert [e.seq for e in events] == list(range(1, last + 1))
            assert events[-1].type == "execution:completed"
    finally:
        stop(user)
        if service is not None:
            stop(service)
