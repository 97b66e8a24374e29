"""The bridge's HTTP front against browsers and odd clients (contract §5, the security findings):
Origin and Host checks on the WebSocket handshake and every route, 405 with Allow, pipelined
requests answered in order, bodies over 1 MiB refused, and a user's execution list filtered by
the state service rather than after a limit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import open_client
from tests.bridge.http_client import call, exchange, parse_replies, request_bytes
from tests.conftest import wait_for
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(60)

EVIL = "http://evil.example"
SECRET = "front-test-secret-0123456789abcdef"

#: every HTTP route (method, path) of the bridge
ROUTES = [
    ("GET", "/"),
    ("GET", "/static/app.js"),
    ("GET", "/api/ws/health"),
    ("GET", "/metrics"),
    ("GET", "/api/config"),
    ("GET", "/api/workflows"),
    ("POST", "/api/workflows"),
    ("POST", "/api/workflows/wf-x/execute"),
    ("GET", "/api/executions"),
    ("GET", "/api/executions/e-x"),
    ("GET", "/api/executions/e-x/events"),
    ("POST", "/api/executions/e-x/cancel"),
]


# -- the WebSocket handshake ----------------------------------------------------------------------


async def test_handshake_refuses_a_foreign_origin_and_accepts_its_own(bridge: Bridge) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(bridge.ws_url, origin=EVIL):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    assert b"Origin" in info.value.response.body
    # Origin: null (a sandboxed frame, a file:// page) is not the bridge's page either
    with pytest.raises(InvalidStatus) as info:
        async with connect(bridge.ws_url, origin="null"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403
    # the bridge's own page, and a script that sends no Origin, connect
    own = await open_client(bridge.ws_url, origin=f"http://127.0.0.1:{bridge.port}")
    await own.close()
    script = await open_client(bridge.ws_url)
    await script.close()


async def test_allow_origin_lets_that_page_connect(make_bridge: Any) -> None:
    bridge = make_bridge(allow_origin="http://notebook.local:8888, " + EVIL)
    client = await open_client(bridge.ws_url, origin=EVIL)
    await client.close()
    with pytest.raises(InvalidStatus) as info:
        async with connect(bridge.ws_url, origin="http://other.example"):  # type: ignore[arg-type]
            pass
    assert info.value.response.status_code == 403


def test_handshake_refuses_a_host_that_does_not_name_the_bridge(bridge: Bridge) -> None:
    # DNS rebinding: evil.example re-pointed at 127.0.0.1 — the browser sends its own name
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    for host, expected in (
        ("evil.example:%d", 403),
        ("127.0.0.1:%d", 101),
        ("localhost:%d", 101),
        ("LocalHost", 101),
    ):
        raw = request_bytes(
            "GET", "/api/ws", host=host % bridge.port if "%" in host else host, headers=upgrade
        )
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
            sock.sendall(raw)
            head = sock.recv(4096)
        assert head.startswith(f"HTTP/1.1 {expected} ".encode()), (host, head[:100])


# -- every HTTP route -----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_foreign_origin_or_host(
    bridge: Bridge, method: str, path: str
) -> None:
    body = b"{}" if method == "POST" else None
    json_type = {"Content-Type": "application/json"}
    evil = call(bridge.port, method, path, headers={"Origin": EVIL, **json_type}, body=body)
    assert evil.status == 403 and evil.json()["error"]["code"] == "forbidden"
    rebinding = call(
        bridge.port, method, path, host="evil.example:3001", headers=json_type, body=body
    )
    assert rebinding.status == 403 and rebinding.json()["error"]["code"] == "forbidden"
    # the bridge's own page passes the check (whatever the route then answers)
    own = call(
        bridge.port,
        method,
        path,
        host=f"localhost:{bridge.port}",
        headers={"Origin": f"http://localhost:{bridge.port}", **json_type},
        body=body,
    )
    assert own.status != 403, own


def test_allow_host_and_wildcard_binding(make_bridge: Any) -> None:
    named = make_bridge(allow_host="monitor.lan")
    assert call(named.port, "GET", "/api/config", host="monitor.lan:3001").status == 200
    assert call(named.port, "GET", "/api/config", host="[::1]:3001").status == 200  # loopback
    assert call(named.port, "GET", "/api/config", host="other.lan").status == 403
    # no Host at all (HTTP/1.0 scripts) is not a browser's request
    raw = b"GET /api/config HTTP/1.0\r\n\r\n"
    assert parse_replies(exchange(named.port, raw))[0].status == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/ws/health", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("PUT", "/api/executions", "GET, HEAD"),
        ("PATCH", "/api/workflows", "GET, HEAD, POST"),
        ("GET", "/api/executions/e-x/cancel", "POST"),
        ("DELETE", "/api/executions/e-x", "GET, HEAD"),
        ("POST", "/api/ws", "GET, HEAD"),
        ("OPTIONS", "/metrics", "GET, HEAD"),
    ],
)
def test_unsupported_methods_are_405_with_allow(
    bridge: Bridge, method: str, path: str, allow: str
) -> None:
    reply = call(bridge.port, method, path)
    assert reply.status == 405, reply
    assert reply.headers["allow"] == allow
    assert reply.json()["error"]["code"] == "method_not_allowed"


def test_head_is_served_like_get_without_a_body(bridge: Bridge) -> None:
    get = call(bridge.port, "GET", "/api/config")
    head = call(bridge.port, "HEAD", "/api/config")
    assert head.status == get.status == 200 and head.body == b""
    assert head.headers["content-length"] == get.headers["content-length"]


def test_pipelined_requests_are_answered_in_order(bridge: Bridge) -> None:
    raw = b"".join(
        [
            request_bytes("GET", "/api/config"),
            request_bytes("GET", "/nope"),
            request_bytes("HEAD", "/api/ws/health"),
            request_bytes("GET", "/api/ws/health"),
            request_bytes("DELETE", "/metrics"),
            request_bytes("GET", "/api/executions?limit=1", close=True),
        ]
    )
    replies = parse_replies(exchange(bridge.port, raw), [False, False, True, False, False])
    assert [r.status for r in replies] == [200, 404, 200, 200, 405, 200]
    assert replies[0].json() == {"auth": False}
    assert "connections" in replies[3].json()
    assert replies[5].json() == {"executions": []}


def test_keep_alive_then_websocket_on_the_same_connection(bridge: Bridge) -> None:
    upgrade = request_bytes(
        "GET",
        "/api/ws",
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
        sock.sendall(request_bytes("GET", "/api/config") + upgrade)
        data = b""
        while b"101 Switching Protocols" not in data or not data.endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        first, _, rest = data.partition(b'{"auth":false}')
        assert first.startswith(b"HTTP/1.1 200 ")
        assert rest.startswith(b"HTTP/1.1 101 Switching Protocols")
        assert b'"type":"connected"' in rest  # the WebSocket's first frame


def test_bodies_over_one_mebibyte_are_413_and_json_only_is_415(bridge: Bridge) -> None:
    big = b"{" + b" " * (1024 * 1024) + b"}"
    reply = call(
        bridge.port,
        "POST",
        "/api/workflows",
        headers={"Content-Type": "application/json"},
        body=big,
    )
    assert reply.status == 413 and reply.json()["error"]["code"] == "too_large"
    assert reply.headers.get("connection") == "close"
    # chunked, past the limit: refused as it streams in
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    raw = (
        b"POST /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    )
    assert parse_replies(exchange(bridge.port, raw))[0].status == 413
    form = call(
        bridge.port,
        "POST",
        "/api/workflows",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"name=x",
    )
    assert form.status == 415 and form.json()["error"]["code"] == "unsupported_media_type"


def test_expect_100_continue_is_answered(bridge: Bridge) -> None:
    body = json.dumps({"name": "Continue", "agents": [{"id": "a", "uses": "zmqmon.demo:work"}]})
    raw = request_bytes(
        "POST",
        "/api/workflows",
        headers={"Content-Type": "application/json", "Expect": "100-continue"},
        body=body.encode(),
        close=True,
    )
    replies = parse_replies(exchange(bridge.port, raw))
    assert [r.status for r in replies] == [100, 201]


# -- a user's list, filtered by the state service ------------------------------------------------


def test_a_users_executions_are_listed_even_behind_100_newer_of_others(
    server: Any, make_bridge: Any
) -> None:
    secured = make_bridge(jwt_secret=SECRET)
    tiny = {
        "name": "Tiny",
        "agents": [{"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0, "steps": 1}}],
    }
    with StateClient(server.endpoints["state"]) as client:
        mine = client.execute(workflow=tiny, user_id="alice")
        for _ in range(101):
            client.execute(workflow=tiny, user_id="bob")
        wait_for(
            lambda: len(client.executions(status="completed", limit=200)) == 102,
            timeout=30,
            message="every execution done",
        )
    alice = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    reply = call(
        secured.port, "GET", "/api/executions", headers={"Authorization": f"Bearer {alice}"}
    )
    assert reply.status == 200
    assert [s["executionId"] for s in reply.json()["executions"]] == [mine]
    bob = jwt.encode({"sub": "bob"}, SECRET, algorithm="HS256")
    reply = call(
        secured.port,
        "GET",
        "/api/executions?limit=1000",
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert len(reply.json()["executions"]) == 101


def test_zmqmon_bridge_reads_allow_origin_and_allow_host_from_the_environment(server: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZMQMON_")}
    env.update(ZMQMON_ALLOW_ORIGIN="http://notebook.local:8888", ZMQMON_ALLOW_HOST="monitor.lan")
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
        port = int(json.loads(proc.stdout.readline())["http"].rsplit(":", 1)[1])
        ok = {"Origin": "http://notebook.local:8888"}
        assert call(port, "GET", "/api/config", host="monitor.lan", headers=ok).status == 200
        assert call(port, "GET", "/api/config", headers={"Origin": EVIL}).status == 403
        assert call(port, "GET", "/api/config", host="evil.example").status == 403
    finally:
        proc.terminate()
        proc.wait(15)


async def test_a_websocket_leaves_the_front_at_its_handshake(bridge: Bridge) -> None:
    # From the handshake on, websockets' connection owns the transport: the front is out of the
    # data path, so relaying costs what it cost before the front existed.
    client = await open_client(bridge.ws_url)
    try:
        (session,) = bridge.hub.connections
        ws: Any = session.ws  # type: ignore[attr-defined]
        assert ws.transport.get_protocol() is ws
        assert not bridge._fronts  # no front object left for it
    finally:
        await client.close()


def test_a_malformed_request_is_answered_400_and_closed(bridge: Bridge) -> None:
    (reply,) = parse_replies(exchange(bridge.port, b"HELLO THERE\r\n\r\n"))
    assert reply.status == 400 and reply.json()["error"]["code"] == "bad_request"
    # a header block that does not end within 16 KiB (h11's bound on what waits unparsed)
    endless = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000
    (reply,) = parse_replies(exchange(bridge.port, endless))
    assert reply.status == 431
