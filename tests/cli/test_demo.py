"""``zmqmon demo``: service, bridge and demo workflows; endpoints on line 1, dashboard on line 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from zmqmon.shells.client import StateClient

FREE = ["--port", "0", "--events", "tcp://127.0.0.1:0", "--state", "tcp://127.0.0.1:0"]


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqmon.cli",
            "demo",
            "--db",
            str(tmp_path / "demo.db"),
            *FREE,
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(60)
def test_demo_once_prints_endpoints_and_dashboard_then_exits_0(tmp_path: Path) -> None:
    proc = start(tmp_path, "--once")
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        assert set(endpoints) >= {"events", "state", "ws", "http", "dashboard"}
        assert endpoints["ws"].startswith("ws://127.0.0.1:")
        line2 = proc.stdout.readline()
        assert endpoints["dashboard"] in line2
        with urllib.request.urlopen(endpoints["dashboard"], timeout=10) as resp:
            assert b"zmqmon" in resp.read()
        assert proc.wait(45) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # one round of every demo workflow ran to its end, and every event was stored
    from zmqmon.shells.store import Store

    store = Store(tmp_path / "demo.db")
    try:
        states = store.executions()
    finally:
        store.close()
    assert len(states) == 3
    assert sorted(s.status for s in states) == ["completed", "completed", "failed"]


@pytest.mark.timeout(60)
def test_demo_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    proc = start(tmp_path)
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        proc.stdout.readline()
        with StateClient(endpoints["state"]) as client:
            assert client.ping()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
