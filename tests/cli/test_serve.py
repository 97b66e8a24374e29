"""``zmqmon serve`` as a process: endpoints JSON on line 1, SIGTERM/SIGINT stop it cleanly with
every event stored, env vars, a busy port reported."""

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
from zmqmon.shells.client import StateClient
from zmqmon.shells.store import Store

SLOW = {
    "name": "Slow",
    "agents": [{"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 60, "steps": 600}}],
}
QUICK = {
    "name": "Quick",
    "agents": [{"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0.05, "steps": 3}}],
}


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_endpoints_and_stops_cleanly_on_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "serve.sqlite3"
    proc = serve("--events", "tcp://127.0.0.1:0", "--state", "tcp://127.0.0.1:0", "--db", str(db))
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        assert set(endpoints) == {"events", "state"}
        for url in endpoints.values():
            assert url.startswith("tcp://127.0.0.1:") and not url.endswith(":0")
        with StateClient(endpoints["state"], timeout=10) as client:
            assert client.ping()
            quick = client.execute(workflow=QUICK)
            wait_for(lambda: client.snapshot(quick).is_terminal, timeout=20)
            slow = client.execute(workflow=SLOW)
            wait_for(lambda: client.snapshot(slow).agents[0].progress >= 1, timeout=20)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
    with Store(db) as store:
        assert store.state(quick).status == "completed"  # type: ignore[union-attr]
        # The running one was cancelled by the stop, and its terminal event was stored.
        state = store.state(slow)
        assert state is not None and state.status == "cancelled"
        events = store.events(slow, limit=10_000)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "execution:cancelled"


@pytest.mark.timeout(60)
def test_serve_reads_endpoints_from_the_environment(tmp_path: Path) -> None:
    proc = serve(
        env={
            "ZMQMON_EVENTS": "tcp://127.0.0.1:0",
            "ZMQMON_STATE": "tcp://127.0.0.1:0",
            "ZMQMON_DB": str(tmp_path / "env.sqlite3"),
        }
    )
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            assert client.ping()
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "env.sqlite3").exists()


@pytest.mark.timeout(60)
def test_serve_on_a_busy_port_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    taken = ctx.socket(zmq.PUB)
    taken.bind("tcp://127.0.0.1:0")
    endpoint = taken.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        proc = serve("--events", endpoint, "--state", "tcp://127.0.0.1:0",
                     "--db", str(tmp_path / "b.sqlite3"))  # fmt: skip
        out, err = proc.communicate(timeout=30)
    finally:
        taken.close(0)
        ctx.term()
    assert proc.returncode == 1
    assert out == ""
    assert "zmqmon serve:" in err and "in use" in err.lower()
