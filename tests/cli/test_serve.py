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
from zmqmon.errors import BadRequestError
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


REPO = Path(__file__).resolve().parents[2]


def serve_in(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``zmqmon serve`` on free ports, run from ``cwd``, the tests' helper agents importable."""
    return subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", "serve", "--events", "tcp://127.0.0.1:0",
         "--state", "tcp://127.0.0.1:0", "--db", str(cwd / "serve.sqlite3"), *args],
        cwd=cwd,
        stdin=subprocess.PIPE,  # never written: an agent reading stdin blocks, as a daemon's would
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )  # fmt: skip


def one_agent(uses: str, **extra: Any) -> dict[str, Any]:
    return {"name": uses, "agents": [{"id": "a", "uses": uses, **extra}]}


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, expect a clean exit, return stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def finished(client: StateClient, execution_id: str) -> Any:
    return wait_for(lambda: (s := client.snapshot(execution_id)).is_terminal and s, timeout=20)


@pytest.mark.timeout(60)
def test_serve_runs_only_its_agent_modules_and_imports_nothing_else(tmp_path: Path) -> None:
    proc = serve_in(tmp_path)
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            for uses in ("sys:exit", "venv.__main__:main", "unittest.__main__:main",
                         "zmqmon.demo_evil:x", "zmqmon:Executor",
                         "tests.services.executor.agents:echo"):  # fmt: skip
                with pytest.raises(BadRequestError, match="not an agent module"):
                    client.execute(workflow=one_agent(uses))
                with pytest.raises(BadRequestError, match="not an agent module"):
                    client.create_workflow(one_agent(uses))
            # An allowed module's attribute path may not lead into another module.
            with pytest.raises(BadRequestError, match="leads into module 'asyncio'"):
                client.execute(workflow=one_agent("zmqmon.demo:asyncio.sleep"))
            assert client.workflows() == []  # nothing refused was stored
            assert client.ping()
            assert finished(client, client.execute(workflow=QUICK)).status == "completed"
        err = stop(proc)
    finally:
        proc.kill()
        proc.wait()
    # venv.__main__ was never imported: no virtualenv appeared where the service runs.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("serve.sqlite3")] == []
    assert "Traceback" not in err and "agents may be imported from: zmqmon.demo" in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_agents_from_the_flag_or_the_environment(tmp_path: Path, how: str) -> None:
    modules = "tests.services.executor.agents"
    if how == "flag":
        proc = serve_in(tmp_path, "--agents", modules)
    else:
        proc = serve_in(tmp_path, env={"ZMQMON_AGENTS": modules})
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            echo = client.execute(workflow=one_agent(f"{modules}:echo"))
            assert finished(client, echo).status == "completed"
            with pytest.raises(BadRequestError, match="not an agent module"):
                client.execute(workflow=one_agent("tests.services.executor.import_marker:agent"))
        stop(proc)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(90)
def test_serve_with_any_agents_warns_and_outlives_whatever_agents_raise(tmp_path: Path) -> None:
    proc = serve_in(tmp_path, "--agents", "*")
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            for uses, error_type in (
                ("sys:exit", "SystemExit"),
                ("tests.services.executor.agents:interrupt", "KeyboardInterrupt"),
                ("tests.services.executor.agents:abort", "Abort"),
                ("tests.services.executor.agents:exit_async", "SystemExit"),
            ):
                execution_id = client.execute(workflow=one_agent(uses))
                state = finished(client, execution_id)
                assert state.status == "failed", uses
                events, _ = client.events(execution_id)
                failed = [e for e in events if e.type == "agent:failed"]
                assert [e.data.error_type for e in failed] == [error_type]  # type: ignore[union-attr]
                assert events[-1].type == "execution:failed"
                assert client.ping()
            # A module that raises SystemExit on import refuses the request, and only that.
            with pytest.raises(BadRequestError, match="SystemExit"):
                client.execute(workflow=one_agent("tests.services.executor.exits_on_import:x"))
            assert client.ping()
            assert finished(client, client.execute(workflow=QUICK)).status == "completed"
        err = stop(proc)
    finally:
        proc.kill()
        proc.wait()
    warning = next(line for line in err.splitlines() if "--agents '*'" in line)
    assert "WARNING" in warning and endpoints["state"] in warning and "run" in warning


@pytest.mark.timeout(90)
def test_sigterm_stops_serve_while_sync_agents_are_stuck(tmp_path: Path) -> None:
    agents = "tests.services.executor.agents"
    proc = serve_in(tmp_path, "--agents", agents)
    stuck = {
        "name": "Stuck",
        "agents": [
            {"id": "stdin", "uses": f"{agents}:read_stdin"},  # blocked input(): never returns
            {"id": "sleep", "uses": f"{agents}:sleep_long"},
            {"id": "wait", "uses": f"{agents}:wait_forever"},
        ],
    }
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        with StateClient(endpoints["state"], timeout=10) as client:
            execution_id = client.execute(workflow=stuck)
            wait_for(
                lambda: all(a.status == "running" for a in client.snapshot(execution_id).agents),
                timeout=20,
            )
        proc.send_signal(signal.SIGTERM)
        # A few seconds at most (the engine's grace for agents to unwind); never the stuck calls'.
        # (wait, not communicate: closing its stdin would end the blocked input() with EOFError.)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err
    with Store(tmp_path / "serve.sqlite3") as store:
        state = store.state(execution_id)
        assert state is not None and state.status == "cancelled"
        assert {a.agent_id: a.status for a in state.agents} == dict.fromkeys(
            ("stdin", "sleep", "wait"), "cancelled"
        )
        events = store.events(execution_id, limit=10_000)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "execution:cancelled"


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def ping_until_answered(sock: Any, request_id: int) -> dict[str, Any]:
    """Ping on a DEALER until a reply comes (ZeroMQ reconnects a dropped peer on its own)."""
    deadline_tries = 100  # x 0.2 s
    for n in range(deadline_tries):
        sock.send(json.dumps({"op": "ping", "id": request_id + n}).encode())
        if sock.poll(200):
            reply: dict[str, Any] = json.loads(sock.recv())
            return reply
    raise AssertionError("the state service never answered")


@pytest.mark.timeout(90)
def test_an_oversized_request_is_never_read_and_the_service_goes_on(tmp_path: Path) -> None:
    proc = serve_in(tmp_path)  # default cap: 4 MiB
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        sock.connect(endpoints["state"])
        assert ping_until_answered(sock, 1)["ok"] is True
        before = peak_rss_bytes(proc.pid)
        big = 64 * 1024 * 1024
        sock.send(b'{"op": "ping", "id": "big", "pad": "' + b"x" * big + b'"}')
        reply = ping_until_answered(sock, 100)
        # The first reply is a ping's: the big request got none (ZeroMQ dropped it unread) ...
        assert reply["ok"] is True and reply["id"] != "big"
        # ... and it never sat in the service's memory (it grew by ~3x its size before).
        assert peak_rss_bytes(proc.pid) - before < big // 4
        # Just under the cap is read and answered as usual.
        sock.send(json.dumps({"op": "ping", "id": "fits", "pad": "x" * (3 << 20)}).encode())
        assert sock.poll(10_000)
        fits = json.loads(sock.recv())
        assert fits["id"] == "fits" and fits["error"]["code"] == "bad_request"
        stop(proc)
    finally:
        sock.close(0)
        ctx.term()
        proc.kill()
        proc.wait()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_request_cap_is_set_by_flag_or_environment(tmp_path: Path, how: str) -> None:
    if how == "flag":
        proc = serve_in(tmp_path, "--max-request-bytes", "65536")
    else:
        proc = serve_in(tmp_path, env={"ZMQMON_MAX_REQUEST_BYTES": "65536"})
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        assert proc.stdout is not None
        sock.connect(json.loads(proc.stdout.readline())["state"])
        sock.send(json.dumps({"op": "ping", "id": "big", "pad": "x" * 70_000}).encode())
        assert ping_until_answered(sock, 1)["id"] != "big"
        stop(proc)
    finally:
        sock.close(0)
        ctx.term()
        proc.kill()
        proc.wait()


@pytest.mark.timeout(30)
def test_an_unusable_limit_stops_serve_at_start(tmp_path: Path) -> None:
    proc = serve_in(tmp_path, "--max-agents", "0")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and out == ""
    assert "max-agents (env ZMQMON_MAX_AGENTS) must be a whole number >= 1" in err
