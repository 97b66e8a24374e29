"""Fixtures of the overload tests: a flooding service in its own process, RSS readings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


def rss_mb(pid: int | None = None) -> float:
    """Resident memory of a process (this one by default), in MB."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class BurstService:
    """``tests.overload.burst_service`` in a subprocess: endpoints, bursts, floods, its file."""

    def __init__(self, db: Path, sndhwm: int) -> None:
        self.db = db
        env = {**os.environ, "BURST_SNDHWM": str(sndhwm), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.overload.burst_service", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.endpoints: dict[str, str] = json.loads(self._line())

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the burst service ended"
        return line

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return dict(json.loads(self._line()))

    def flood(self, seconds: float, executions: int) -> list[str]:
        """Start a flood in the background; its ids (:meth:`flooded` then waits for its end)."""
        return list(self.command(f"flood {seconds} {executions}")["started"])

    def flooded(self) -> dict[str, int]:
        """Wait for the flood started last to complete; each execution's last seq."""
        return dict(json.loads(self._line())["executions"])

    def burst(self, seconds: float, executions: int) -> dict[str, int]:
        """Publish a burst as fast as the service can; returns each execution's last seq."""
        return dict(self.command(f"burst {seconds} {executions}")["executions"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def burst_service(tmp_path: Path) -> Iterator[BurstService]:
    """A flooding service whose PUB drops past 500 queued messages per subscriber."""
    service = BurstService(tmp_path / "burst.sqlite3", sndhwm=500)
    yield service
    service.close()


class BridgeProcess:
    """``zmqmon bridge`` in a subprocess, on free ports, against a service's endpoints."""

    def __init__(self, events: str, state: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zmqmon.cli",
                "bridge",
                "--events",
                events,
                "--state",
                state,
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read() if self.proc.stderr else "bridge ended"
        self.endpoints: dict[str, str] = json.loads(line)

    @property
    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def bridge_process(burst_service: BurstService) -> Iterator[BridgeProcess]:
    """The real bridge command on the flooding service."""
    bridge = BridgeProcess(burst_service.endpoints["events"], burst_service.endpoints["state"])
    yield bridge
    bridge.close()
