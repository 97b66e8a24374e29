"""The HTTP API in front of several state services: two executors publishing into a real
``Proxy``, one bridge on its backend with no ``--state`` — it learns the services from their
heartbeats, merges lists, routes each execution's routes to its owner, and sends an execute to
the service that has the workflow. Real sockets, real SQLite files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import workflow
from tests.bridge.test_http_api import Http, error_code, wait_status
from tests.conftest import wait_for
from zmqmon.services.server import Server
from zmqmon.shells.client import StateClient
from zmqmon.shells.proxy import Proxy

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def two_services(tmp_path: Path) -> Iterator[tuple[list[Server], Bridge]]:
    with Proxy("tcp://127.0.0.1:0", "tcp://127.0.0.1:0") as proxy:
        servers = [
            Server(
                ">" + proxy.endpoints["frontend"],
                "tcp://127.0.0.1:0",
                tmp_path / f"ex{i}.sqlite3",
            ).start()
            for i in range(2)
        ]
        bridge = Bridge(proxy.endpoints["backend"], None, "127.0.0.1", 0).start()
        try:
            yield servers, bridge
        finally:
            bridge.stop()
            for server in servers:
                server.stop()


def _services(api: Http) -> list[str]:
    code, body, _ = api("GET", "/api/services")
    assert code == 200, body
    return [s["endpoint"] for s in body["services"]]


def test_executions_of_two_services_are_listed_read_run_and_cancelled_through_one_bridge(
    two_services: tuple[list[Server], Bridge],
) -> None:
    servers, bridge = two_services
    state = [s.endpoints["state"] for s in servers]
    api = Http(bridge.port)
    wait_for(lambda: sorted(_services(api)) == sorted(state), timeout=20, message="heartbeats")

    # one workflow stored on each service (different definitions: ids are content digests)
    ids = []
    for i, endpoint in enumerate(state):
        code, body, _ = api("POST", "/api/workflows", workflow(seconds=0.2, steps=2, agents=i + 1))
        assert code == 400 and "?service=" in body["error"]["message"]  # which one, then?
        code, body, _ = api("POST", f"/api/workflows?service={endpoint}", workflow(0.2, 2, i + 1))
        assert code == 201 and body["service"] == endpoint, body
        ids.append(body["workflowId"])

    # an execute goes to the service that has the workflow
    runs = []
    for i, workflow_id in enumerate(ids):
        code, body, _ = api("POST", f"/api/workflows/{workflow_id}/execute", {"inputs": {}})
        assert code == 202 and body["service"] == state[i], body
        runs.append(body["executionId"])
    for i, execution_id in enumerate(runs):
        done = wait_status(api, execution_id, "completed")  # routed to its owner
        assert len(done["agents"]) == i + 1
        code, body, _ = api("GET", f"/api/executions/{execution_id}/events")
        assert code == 200 and [e["seq"] for e in body["events"]] == list(
            range(1, body["lastSeq"] + 1)
        )

    # one list, newest first, each execution with its service
    code, body, _ = api("GET", "/api/executions")
    assert code == 200
    listed = {s["executionId"]: s["service"] for s in body["executions"]}
    assert listed == {runs[0]: state[0], runs[1]: state[1]}
    code, body, _ = api("GET", f"/api/executions?service={state[1]}")
    assert [s["executionId"] for s in body["executions"]] == [runs[1]]
    code, body, _ = api("GET", "/api/workflows")
    assert {(w["workflowId"], w["service"]) for w in body["workflows"]} == set(
        zip(ids, state, strict=True)
    )

    # a long one on the second service, cancelled through the bridge
    code, body, _ = api(
        "POST", f"/api/workflows/{ids[1]}/execute?service={state[1]}", {"inputs": {}}
    )
    assert code == 202
    code, body, _ = api("POST", f"/api/executions/{body['executionId']}/cancel")
    assert code in (202, 409)  # 409: it was quicker than the request

    # the bridge connects only where heartbeats (or --state) told it to
    for path in ("/api/executions?service=tcp://10.9.9.9:5557", "/api/workflows?service=x"):
        code, body, _ = api("GET", path)
        assert code == 404 and error_code(body) == "not_found", body
    code, body, _ = api("POST", "/api/workflows/nope/execute", {"inputs": {}})
    assert code == 404 and "no state service has workflow" in body["error"]["message"]


def test_a_service_that_stops_answering_is_named_and_the_others_still_listed(
    two_services: tuple[list[Server], Bridge],
) -> None:
    servers, bridge = two_services
    state = [s.endpoints["state"] for s in servers]
    api = Http(bridge.port)
    wait_for(lambda: sorted(_services(api)) == sorted(state), timeout=20, message="heartbeats")
    handle = servers[0].submit(workflow(seconds=0.1, steps=1))
    handle.wait(20)
    for client in bridge.hub.clients._clients.values():
        client.timeout = 0.5
    servers[1].stop()  # heard within the last seconds, not answering now
    code, body, _ = api("GET", "/api/executions")
    assert code == 200, body
    assert [s["executionId"] for s in body["executions"]] == [handle.id]
    assert body["unavailable"] == [state[1]]


@pytest.mark.browser
def test_the_dashboard_runs_a_stored_workflow_where_it_is_stored_and_a_pasted_one_where_chosen(
    two_services: tuple[list[Server], Bridge], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.bridge.test_dashboard_actions_browser import open_page, shot

    servers, bridge = two_services
    state = [s.endpoints["state"] for s in servers]
    api = Http(bridge.port)
    wait_for(lambda: sorted(_services(api)) == sorted(state), timeout=20, message="heartbeats")
    with StateClient(state[1]) as client:
        stored = client.create_workflow({**workflow(0.3, 3, 1), "name": "Only on the second"})
    with sync_playwright() as p:
        browser, page, errors = open_page(p, bridge)
        try:
            page.click("#run-open")
            page.wait_for_selector("#run-dialog[open]")
            option = page.locator("#run-workflow option")
            wait_for(lambda: option.count() == 1, timeout=10, message="the stored workflow")
            assert state[1] in option.inner_text()  # says where it is stored
            assert page.is_hidden("#service-pane")  # a stored workflow runs where it is
            page.click("#run-submit")
            page.wait_for_selector('#detail[data-status="completed"]', timeout=20_000)
            first = page.inner_text("#d-id")

            page.click("#run-open")
            page.click("#tab-paste")
            page.wait_for_selector("#service-pane", state="visible")
            page.select_option("#run-service", state[0])
            shot(page, tmp_path, "run-dialog-services")
            page.fill("#run-definition", json.dumps({**workflow(0.2, 2, 2), "name": "Pasted"}))
            page.click("#run-submit")
            page.wait_for_selector("#run-dialog", state="hidden", timeout=10_000)
            page.wait_for_function(
                "id => document.querySelector('#d-id').textContent !== id", arg=first
            )
            page.wait_for_selector('#detail[data-status="completed"]', timeout=20_000)
            second = page.inner_text("#d-id")
        finally:
            browser.close()
    assert not errors, errors
    with StateClient(state[1]) as client:
        assert client.snapshot(first).workflow_id == stored
    with StateClient(state[0]) as client:
        assert client.snapshot(second).status == "completed"  # ran where it was sent
