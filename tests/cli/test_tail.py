"""``zmqmon tail`` in a subprocess against a real service, and ``zmqmon proxy`` likewise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import pytest

from tests.conftest import wait_for
from zmqmon.core.events import parse_event
from zmqmon.core.state import apply_event
from zmqmon.services.server import Server
from zmqmon.shells.subscriber import Subscriber
from zmqmon.terminal.tail import format_event, format_snapshot

WORKFLOW = {
    "name": "Tail Pipeline",
    "agents": [
        {
            "id": "one",
            "name": "StepOne",
            "uses": "zmqmon.demo:work",
            "params": {"seconds": 0.6, "steps": 4},
        },
        {
            "id": "two",
            "name": "StepTwo",
            "uses": "zmqmon.demo:work",
            "params": {"seconds": 0.6, "steps": 4},
            "dependsOn": ["one"],
        },
    ],
}
FAILING = {
    "name": "Tail Fails",
    "agents": [
        {
            "id": "bad",
            "name": "Breaker",
            "uses": "zmqmon.demo:fail",
            "params": {"message": "boom here", "seconds": 0.5},
        }
    ],
}


def zmqmon(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def tail_args(server: Server, *extra: str) -> list[str]:
    return [
        "tail",
        *extra,
        "--events",
        server.endpoints["events"],
        "--state",
        server.endpoints["state"],
    ]


@pytest.mark.timeout(60)
def test_tail_follows_a_running_execution_and_exits_0(server: Server) -> None:
    handle = server.submit(WORKFLOW)
    proc = zmqmon(*tail_args(server, handle.id))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"snapshot  {handle.id[:8]}")
    assert any("agent:completed" in line and "StepTwo" in line for line in lines)
    assert "execution:completed" in lines[-1]
    assert "Traceback" not in err


@pytest.mark.timeout(60)
def test_tail_json_lines_are_events_complete_and_in_order(server: Server) -> None:
    handle = server.submit(WORKFLOW)
    proc = zmqmon(*tail_args(server, handle.id, "--json"))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [parse_event(line) for line in out.splitlines()]
    assert events and all(e.execution_id == handle.id for e in events)
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # after the snapshot: no gap
    assert events[-1].type == "execution:completed"
    assert "snapshot" in err  # the snapshot line goes to stderr with --json


@pytest.mark.timeout(60)
def test_tail_exits_1_when_the_execution_fails(server: Server) -> None:
    handle = server.submit(FAILING)
    proc = zmqmon(*tail_args(server, handle.id))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "boom here" in out


@pytest.mark.timeout(60)
def test_tail_all_executions_until_ctrl_c(server: Server) -> None:
    proc = zmqmon(*tail_args(server, "--json"))
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    handles = []

    def some_output() -> bool:
        # tail's subscription becomes live at some point: keep starting short executions.
        if not handles or handles[-1].done:
            handles.append(server.submit(FAILING))
        return any(line["type"] == "execution:failed" for line in lines)

    try:
        wait_for(some_output, timeout=30, interval=0.05, message="tail prints executions")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:  # a failed test leaves no process behind
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.returncode == 0
    assert "Traceback" not in err


@pytest.mark.timeout(60)
def test_tail_unreachable_state_service_exits_2(server: Server) -> None:
    proc = zmqmon(
        "tail", "nope", "--events", server.endpoints["events"], "--state", "tcp://127.0.0.1:9"
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "did not answer" in err


@pytest.mark.timeout(60)
def test_proxy_command_prints_endpoints_and_forwards(server: Server) -> None:
    proc = zmqmon(
        "proxy", "--frontend", ">" + server.endpoints["events"], "--backend", "tcp://127.0.0.1:0"
    )
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        assert endpoints["backend"].startswith("tcp://127.0.0.1:")
        with Subscriber(endpoints["backend"], server.endpoints["state"]) as sub:
            handle = server.submit(WORKFLOW)
            sub.subscribe_execution(handle.id)
            wait_for(
                lambda: (
                    sub.recv(0.05) is None
                    and handle.id in sub.states
                    and sub.states[handle.id].is_terminal
                ),
                timeout=30,
            )
            assert sub.states[handle.id].status == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_formatting_is_readable() -> None:
    event = parse_event(
        {
            "type": "agent:progress",
            "executionId": "3f2a1b9c-0000",
            "workflowId": "w",
            "timestamp": "2026-11-25T10:00:10.123Z",
            "seq": 4,
            "data": {
                "agentId": "a",
                "agentName": "DataCollector",
                "progress": 40,
                "message": "step 4/10",
            },
        }
    )
    text = format_event(event).plain
    assert text.split() == [
        "10:00:10.123",
        "3f2a1b9c",
        "agent:progress",
        "DataCollector",
        "40%",
        "step",
        "4/10",
    ]
    assert "running" in format_snapshot(apply_event(None, event)).plain
