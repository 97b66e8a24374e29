"""The HTTP API of contract §8 with a plain HTTP client (the stdlib's http.client): every route,
every error status, and auth isolation (a user sees and cancels only their own)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import jwt
import pytest
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import workflow
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

SECRET = "api-test-secret-0123456789abcdef"


class Http:
    """One keep-alive connection to the bridge, JSON in and out."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any, http.client.HTTPResponse]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        assert resp.getheader("Content-Type") == "application/json", payload
        return resp.status, json.loads(payload), resp


def error_code(reply: Any) -> str:
    return str(reply["error"]["code"])


def wait_status(api: Http, execution_id: str, status: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        code, body, _ = api("GET", f"/api/executions/{execution_id}")
        assert code == 200, body
        return body["execution"] if body["execution"]["status"] == status else None

    return wait_for(done, timeout=30, message=f"execution {status}")


def test_the_original_manual_test_create_execute_follow_cancel(bridge: Bridge) -> None:
    api = Http(bridge.port)
    code, body, _ = api("POST", "/api/workflows", workflow(seconds=0.2, steps=2, agents=2))
    assert code == 201
    workflow_id = body["workflowId"]
    code, body, _ = api("GET", "/api/workflows")
    assert code == 200 and [w["workflowId"] for w in body["workflows"]] == [workflow_id]
    assert body["workflows"][0]["name"] == "Test Pipeline"

    code, body, _ = api("POST", f"/api/workflows/{workflow_id}/execute", {"inputs": {"n": 1}})
    assert code == 202
    execution_id = body["executionId"]
    final = wait_status(api, execution_id, "completed")
    assert [a["status"] for a in final["agents"]] == ["completed", "completed"]

    code, body, _ = api("GET", f"/api/executions/{execution_id}/events")
    assert code == 200
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == list(range(1, body["lastSeq"] + 1)) and body["events"][-1]["type"] == (
        "execution:completed"
    )
    code, page, _ = api("GET", f"/api/executions/{execution_id}/events?afterSeq=3&limit=2")
    assert [e["seq"] for e in page["events"]] == [4, 5] and page["lastSeq"] == body["lastSeq"]

    code, body, _ = api("GET", f"/api/executions?workflowId={workflow_id}&status=completed")
    assert [s["executionId"] for s in body["executions"]] == [execution_id]
    # an empty body executes too; a running execution is cancelled
    code, body, _ = api("POST", f"/api/workflows/{workflow_id}/execute")
    assert code == 202
    slow = api("POST", "/api/workflows", workflow(seconds=30, steps=30, agents=1))[1]
    running = api("POST", f"/api/workflows/{slow['workflowId']}/execute")[1]["executionId"]
    wait_status(api, running, "running")
    code, body, _ = api("POST", f"/api/executions/{running}/cancel")
    assert code == 202 and body == {"executionId": running}
    wait_status(api, running, "cancelled")
    code, body, _ = api("POST", f"/api/executions/{running}/cancel")
    assert code == 409 and error_code(body) == "conflict"


def test_history_pages_back_with_before(bridge: Bridge) -> None:
    api = Http(bridge.port)
    wf = api("POST", "/api/workflows", workflow(seconds=0, steps=1, agents=1))[1]["workflowId"]
    ids = [api("POST", f"/api/workflows/{wf}/execute")[1]["executionId"] for _ in range(5)]
    newest_first = ids[::-1]
    wait_for(
        lambda: len(api("GET", "/api/executions?status=completed")[1]["executions"]) == 5,
        message="all completed",
    )
    first = api("GET", "/api/executions?limit=2")[1]["executions"]
    assert [s["executionId"] for s in first] == newest_first[:2]
    second = api("GET", f"/api/executions?limit=2&before={first[-1]['executionId']}")[1]
    assert [s["executionId"] for s in second["executions"]] == newest_first[2:4]
    last = api("GET", f"/api/executions?limit=2&before={newest_first[3]}")[1]["executions"]
    assert [s["executionId"] for s in last] == newest_first[4:]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/api/workflows", {"name": "x", "agents": [{"id": "a"}]}, 400, "bad_request"),
        ("POST", "/api/workflows", [1, 2], 400, "bad_request"),
        ("POST", "/api/workflows", None, 400, "bad_request"),  # no body
        (
            "POST",
            "/api/workflows",
            {"name": "x", "agents": [{"id": "a", "uses": "os:system"}]},
            400,
            "bad_request",
        ),
        ("POST", "/api/workflows/nope/execute", None, 404, "not_found"),
        ("POST", "/api/workflows/nope/execute", {"inputs": 3}, 400, "bad_request"),
        ("POST", "/api/workflows/nope/execute", {"input": {}}, 400, "bad_request"),
        ("GET", "/api/executions?status=done", None, 400, "bad_request"),
        ("GET", "/api/executions?limit=0", None, 400, "bad_request"),
        ("GET", "/api/executions?limit=ten", None, 400, "bad_request"),
        ("GET", "/api/executions/nope", None, 404, "not_found"),
        ("GET", "/api/executions/nope/events", None, 404, "not_found"),
        ("GET", "/api/executions/nope/events?afterSeq=-1", None, 400, "bad_request"),
        ("POST", "/api/executions/nope/cancel", None, 404, "not_found"),
        ("GET", "/api/nothing", None, 404, "not_found"),
        ("DELETE", "/api/workflows", None, 405, "method_not_allowed"),
    ],
)
def test_errors_have_the_right_status_and_code(
    bridge: Bridge, method: str, path: str, body: Any, status: int, code: str
) -> None:
    got, reply, _ = Http(bridge.port)(method, path, body)
    assert got == status and error_code(reply) == code, reply
    assert reply["error"]["message"]


def test_bad_json_is_400_and_another_media_type_415(bridge: Bridge) -> None:
    api = Http(bridge.port)
    code, body, _ = api("POST", "/api/workflows", raw=b"{not json")
    assert code == 400 and error_code(body) == "bad_request"
    code, body, _ = api("POST", "/api/workflows", raw=b"{}", content_type="text/plain")
    assert code == 415 and error_code(body) == "unsupported_media_type"
    code, body, _ = api("POST", "/api/workflows", raw=b"x" * (1024 * 1024 + 1))
    assert code == 413 and error_code(body) == "too_large"


def test_a_state_service_that_does_not_answer_is_503(make_bridge: Any) -> None:
    from tests.conftest import free_port

    lost = Bridge(
        f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}", "127.0.0.1", 0
    ).start()
    try:
        lost.hub.client.timeout = 0.3
        code, body, _ = Http(lost.port)("GET", "/api/workflows")
        assert code == 503 and error_code(body) == "unavailable"
    finally:
        lost.stop()


def test_a_bridge_without_a_state_service_answers_503_not_500() -> None:
    from tests.conftest import free_port

    events_only = Bridge(f"tcp://127.0.0.1:{free_port()}", None, "127.0.0.1", 0).start()
    try:
        api = Http(events_only.port)
        for method, path in [
            ("GET", "/api/executions"),
            ("GET", "/api/workflows"),
            ("GET", "/api/executions/e-1"),
            ("POST", "/api/executions/e-1/cancel"),
        ]:
            code, body, _ = api(method, path)
            assert code == 503 and error_code(body) == "unavailable", (path, body)
            assert "--state" in body["error"]["message"]
    finally:
        events_only.stop()


def test_auth_isolation(server: Any, make_bridge: Any) -> None:
    bridge = make_bridge(jwt_secret=SECRET)

    def as_user(sub: str, **claims: Any) -> Http:
        return Http(bridge.port, jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256"))

    alice, bob, admin = as_user("alice"), as_user("bob"), as_user("root", roles=["admin"])
    # no token, a bad token: 401 on every route of the API (health stays public)
    for method, path in [
        ("GET", "/api/workflows"),
        ("POST", "/api/workflows"),
        ("POST", "/api/workflows/x/execute"),
        ("GET", "/api/executions"),
        ("GET", "/api/executions/x"),
        ("GET", "/api/executions/x/events"),
        ("POST", "/api/executions/x/cancel"),
    ]:
        for client in (Http(bridge.port), Http(bridge.port, "garbage")):
            code, body, resp = client(method, path)
            assert code == 401 and error_code(body) == "unauthorized", (method, path)
            assert resp.getheader("WWW-Authenticate") == 'Bearer realm="zmqmon"'
    assert Http(bridge.port)("GET", "/api/ws/health")[0] == 200

    wf = alice("POST", "/api/workflows", workflow(seconds=30, steps=30, agents=1))[1]["workflowId"]
    # execute records the token's user, whatever the body says
    code, body, _ = alice("POST", f"/api/workflows/{wf}/execute", {"userId": "bob"})
    assert code == 202
    mine = body["executionId"]
    assert wait_status(alice, mine, "running")["userId"] == "alice"
    theirs = bob("POST", f"/api/workflows/{wf}/execute")[1]["executionId"]

    assert [s["executionId"] for s in alice("GET", "/api/executions")[1]["executions"]] == [mine]
    assert [s["executionId"] for s in bob("GET", "/api/executions")[1]["executions"]] == [theirs]
    assert len(admin("GET", "/api/executions")[1]["executions"]) == 2
    for method, path in [
        ("GET", f"/api/executions/{theirs}"),
        ("GET", f"/api/executions/{theirs}/events"),
        ("POST", f"/api/executions/{theirs}/cancel"),
    ]:
        code, body, _ = alice(method, path)
        assert code == 403 and error_code(body) == "forbidden", (method, path)
    assert bob("GET", f"/api/executions/{theirs}")[1]["execution"]["status"] == "running"
    # bob cancels his own; the admin cancels alice's
    assert bob("POST", f"/api/executions/{theirs}/cancel")[0] == 202
    assert admin("POST", f"/api/executions/{mine}/cancel")[0] == 202
    assert wait_status(admin, mine, "cancelled")["userId"] == "alice"
    assert admin("GET", f"/api/executions/{theirs}/events")[0] == 200
