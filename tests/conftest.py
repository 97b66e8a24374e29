"""Shared test helpers: fixtures on disk, free ports, polling waits (never fixed sleeps)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

# Property-based tests (hypothesis): bounded and deterministic, so that a failure reproduces and the
# whole set stays well under a minute on two cores. derandomize: the same examples on every run;
# no example database: no failure replayed from an earlier run (hypothesis still keeps its own
# caches in .hypothesis/, which ignores itself); no deadline: timing never fails a test.
settings.register_profile(
    "zmqmon",
    derandomize=True,
    database=None,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("zmqmon")

FIXTURES = Path(__file__).parent / "fixtures"

#: Debian's Chromium, driven by Playwright (which never downloads a browser here), and the flags
#: that keep it off the network: headless, no sandbox as root, no background requests.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T = TypeVar("T")


def reducer_fixtures() -> list[dict[str, Any]]:
    """The event fixtures shared by the Python reducer, the widget and the browser's reducer.js."""
    return [json.loads(p.read_text()) for p in sorted((FIXTURES / "reducer").glob("*.json"))]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (tests bind loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """A started executor service (``zmqmon.services.server.Server``) on free loopback ports,
    with its SQLite file in ``tmp_path``; stopped after the test. ``server.endpoints`` has
    ``events`` and ``state``."""
    from zmqmon.services.server import Server

    srv = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", tmp_path / "zmqmon.sqlite3").start()
    try:
        yield srv
    finally:
        srv.stop()
