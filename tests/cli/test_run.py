"""``zmqmon run FILE`` in a subprocess: exit codes 0 / 1 / 130 (SIGINT) / 2, events stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from zmqmon.shells.store import Store

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, definition: Any) -> Path:
    path = tmp_path / name
    path.write_text(definition if isinstance(definition, str) else json.dumps(definition))
    return path


def work(agent_id: str, seconds: float, *deps: str) -> dict[str, Any]:
    return {
        "id": agent_id,
        "uses": "zmqmon.demo:work",
        "params": {"seconds": seconds, "steps": 2},
        "dependsOn": list(deps),
    }


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZMQMON_DB": str(tmp_path / "run.sqlite3"), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "zmqmon.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=45,
        env=env,
        cwd=ROOT,
    )


def stored_executions(tmp_path: Path) -> list[Any]:
    store = Store(tmp_path / "run.sqlite3")
    try:
        return [(st, store.events(st.execution_id)) for st in store.executions()]
    finally:
        store.close()


def test_completed_exits_0_and_stores_the_events(tmp_path: Path) -> None:
    path = write(
        tmp_path, "ok.json", {"name": "OK", "agents": [work("a", 0.02), work("b", 0.02, "a")]}
    )
    proc = run([str(path), "--input", "n=3", "--input", "who=ada"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    assert "OK" in proc.stdout and "100%" in proc.stdout
    [(state, events)] = stored_executions(tmp_path)
    assert state.status == "completed"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_yaml_and_toml_files_run(tmp_path: Path) -> None:
    assert run([str(ROOT / "examples" / "quick.toml")], tmp_path).returncode == 0


def test_failed_exits_1_and_shows_the_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "fail.json",
        {
            "name": "Fails",
            "agents": [
                work("a", 0.02),
                {
                    "id": "f",
                    "uses": "zmqmon.demo:fail",
                    "params": {"message": "disk on fire"},
                    "dependsOn": ["a"],
                },
                work("never", 0.02, "f"),
            ],
        },
    )
    proc = run([str(path)], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "disk on fire" in proc.stdout
    [(state, events)] = stored_executions(tmp_path)
    assert state.status == "failed"
    assert not any(e["data"].get("agentId") == "never" for e in events)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        (
            json.dumps({"name": "X", "agents": [{"id": "a", "uses": "nope_mod_q:f"}]}),
            "cannot import module 'nope_mod_q'",
        ),
        (json.dumps({"name": "X", "agents": [work("a", 1, "a")]}), "depends on itself"),
        (
            json.dumps(
                {"name": "X", "agents": [{"id": "a", "uses": "zmqmon.demo:work", "params": "x"}]}
            ),
            "agents.0.params",
        ),
    ],
)
def test_invalid_file_exits_2_with_a_precise_message(
    tmp_path: Path, content: str, message: str
) -> None:
    proc = run([str(write(tmp_path, "bad.json", content))], tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run.sqlite3").exists()  # refused before anything ran


def test_missing_file_and_bad_input_exit_2(tmp_path: Path) -> None:
    proc = run([str(tmp_path / "missing.json")], tmp_path)
    assert proc.returncode == 2 and "cannot read the file" in proc.stderr
    ok = write(tmp_path, "ok.json", {"name": "OK", "agents": [work("a", 0.01)]})
    proc = run([str(ok), "--input", "novalue"], tmp_path)
    assert proc.returncode == 2 and "expected KEY=VALUE" in proc.stderr


def test_sigint_cancels_and_exits_130(tmp_path: Path) -> None:
    path = write(tmp_path, "long.json", {"name": "Long", "agents": [work("slow", 60)]})
    env = {**os.environ, "ZMQMON_DB": str(tmp_path / "run.sqlite3")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(
            lambda: any("execution" in line for line in lines), timeout=20, message="the header"
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    assert "cancelled" in "".join(lines)
    [(state, events)] = stored_executions(tmp_path)
    assert state.status == "cancelled"
    assert events[-1]["type"] == "execution:cancelled"


def test_remote_run_submits_to_the_service_and_follows_it(server: Any, tmp_path: Path) -> None:
    path = write(
        tmp_path, "ok.json", {"name": "Remote", "agents": [work("a", 0.02), work("b", 0.02, "a")]}
    )
    proc = run([str(path), "--state", server.endpoints["state"]], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [state] = server.store.executions()
    assert state.status == "completed" and state.workflow_name == "Remote"
    assert state.execution_id in proc.stdout
    assert not (tmp_path / "run.sqlite3").exists()  # nothing embedded
