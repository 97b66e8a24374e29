"""HTTP on the bridge's port: health, metrics, dashboard files; and ``zmqmon bridge`` itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import open_client
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_health_reports_connections_subscriptions_upstream(server: Any, bridge: Bridge) -> None:
    status, headers, body = fetch(bridge.http_url + "/api/ws/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    health = json.loads(body)
    assert set(health) >= {
        "status",
        "connections",
        "subscriptions",
        "upstream",
        "eventsRelayed",
        "uptimeSeconds",
    }
    assert health["connections"] == 0 and health["uptimeSeconds"] >= 0


async def test_health_and_metrics_count_what_happens(server: Any, bridge: Bridge) -> None:
    c = await open_client(bridge.ws_url)
    await c.send({"type": "subscribe", "topic": "exec/"})
    await c.expect("subscribed")
    await c.send("{bad")
    await c.expect("error")
    server.submit(
        {
            "name": "M",
            "agents": [
                {
                    "id": "a",
                    "name": "A",
                    "uses": "zmqmon.demo:work",
                    "params": {"seconds": 0.05, "steps": 1},
                }
            ],
        }
    )
    await c.until(lambda m: m.get("type") == "execution:completed")
    health = wait_for(
        lambda: (h := json.loads(fetch(bridge.http_url + "/api/ws/health")[2]))["upstream"] and h,
        message="a heartbeat seen",
    )
    assert health["connections"] == 1 and health["subscriptions"] == 1
    assert health["status"] == "ok"
    assert health["eventsRelayed"] == len(c.events)
    status, headers, text = fetch(bridge.http_url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    metrics = text.decode()
    for line in (
        "zmqmon_bridge_connections 1.0",
        "zmqmon_bridge_subscriptions 1.0",
        "zmqmon_bridge_upstream_prefixes 1.0",
        f"zmqmon_bridge_events_out_total {float(len(c.events))}",
        'zmqmon_bridge_errors_total{code="invalid_json"} 1.0',
        "zmqmon_bridge_slow_client_closes_total 0.0",
        "zmqmon_bridge_drops_total 0.0",
    ):
        assert line in metrics, line
    assert "zmqmon_bridge_events_in_total" in metrics
    await c.close()


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/reducer.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
    ],
)
def test_dashboard_files(bridge: Bridge, path: str, ctype: str) -> None:
    status, headers, body = fetch(bridge.http_url + path)
    assert status == 200 and headers["Content-Type"] == ctype and body
    assert headers["X-Content-Type-Options"] == "nosniff"
    if path == "/":
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert b"http://" not in body and b"https://" not in body  # nothing from outside


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/static/..%2fserver.py",
        "/static/",
        "/static/app.js/",
        "/../../etc/passwd",
        "/static/py.typed",
    ],
)
def test_unknown_paths_and_traversal_are_404(bridge: Bridge, path: str) -> None:
    status, _, body = fetch(bridge.http_url + path)
    assert status == 404
    assert b"import" not in body and b"root:" not in body


def test_zmqmon_bridge_command_prints_endpoints_and_stops_on_sigterm(server: Any) -> None:
    # anonymous: no JWT setting inherited (an empty ZMQMON_JWT_SECRET is an error, not "off")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMQMON_JWT_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqmon.cli",
            "bridge",
            "--port",
            "0",
            "--events",
            server.endpoints["events"],
            "--state",
            server.endpoints["state"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        assert endpoints["ws"].startswith("ws://127.0.0.1:") and endpoints["ws"].endswith("/api/ws")
        status, _, body = fetch(endpoints["http"] + "/api/ws/health")
        assert status == 200 and json.loads(body)["connections"] == 0
        assert "dashboard" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
