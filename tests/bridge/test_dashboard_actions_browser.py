"""The dashboard's actions in a real browser (Debian's Chromium through Playwright): run a stored
workflow or a pasted definition, cancel it from the page, filter the list, page back through
history beyond the newest executions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import workflow
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, wait_for
from zmqmon.shells.client import StateClient

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def shot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot in the test's folder (and in ZMQMON_SCREENSHOTS, if set, to look at)."""
    page.screenshot(path=str(tmp_path / f"{name}.png"))
    folder = os.environ.get("ZMQMON_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_page(p: Any, bridge: Bridge) -> tuple[Any, Page, list[str]]:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(bridge.http_url + "/")
    page.wait_for_selector('#conn[data-state="connected"]', timeout=10_000)
    return browser, page, errors


def test_run_a_workflow_from_the_page_watch_it_and_cancel_it(
    server: Any, bridge: Bridge, tmp_path: Path
) -> None:
    with StateClient(server.endpoints["state"]) as client:
        slow = client.create_workflow({**workflow(seconds=20, steps=40, agents=2), "name": "Slow"})
        client.create_workflow({**workflow(seconds=0.1, steps=2, agents=1), "name": "Quick"})
    with sync_playwright() as p:
        browser, page, errors = open_page(p, bridge)
        try:
            page.click("#run-open")
            page.wait_for_selector("#run-dialog[open]")
            page.wait_for_function(
                "() => document.querySelectorAll('#run-workflow option').length === 2"
            )
            page.select_option("#run-workflow", slow)
            page.fill("#run-inputs", '{"batch": 7}')
            shot(page, tmp_path, "run-dialog")
            page.click("#run-submit")
            page.wait_for_selector("#run-dialog", state="hidden", timeout=10_000)
            # the new execution is selected, runs and moves
            page.wait_for_selector('#detail[data-status="running"]', timeout=10_000)
            execution_id = page.inner_text("#d-id")
            page.wait_for_selector(f'tr[data-exec-id="{execution_id}"]')
            page.wait_for_function(
                "() => parseFloat(document.querySelector('#d-progress .bar').style.width) > 0",
                timeout=15_000,
            )
            assert page.is_visible("#cancel-btn")
            shot(page, tmp_path, "running-with-cancel")
            page.click("#cancel-btn")
            page.wait_for_selector('#detail[data-status="cancelled"]', timeout=15_000)
            page.wait_for_selector("#cancel-btn", state="hidden")
            shot(page, tmp_path, "cancelled")
            with StateClient(server.endpoints["state"]) as client:
                state = client.snapshot(execution_id)
                assert state.status == "cancelled" and state.workflow_id == slow
                started, _ = client.events(execution_id, limit=1)
            assert started[0].type == "execution:started"

            # a pasted definition (with a mistake first: the bridge's message is shown)
            page.click("#run-open")
            page.click("#tab-paste")
            page.fill("#run-definition", '{"name": "Broken", "agents": [{"id": "a"}]}')
            page.click("#run-submit")
            page.wait_for_selector("#run-error:not([hidden])")
            assert "bad_request" in page.inner_text("#run-error")
            shot(page, tmp_path, "run-dialog-error")
            pasted = {**workflow(seconds=0.2, steps=2, agents=1), "name": "Pasted"}
            page.fill("#run-definition", json.dumps(pasted))
            page.click("#run-submit")
            page.wait_for_selector('#detail[data-status="completed"]', timeout=15_000)
            assert page.inner_text("#d-name") == "Pasted"
            assert not page.is_visible("#cancel-btn")
        finally:
            browser.close()
    # the one refused request was the broken definition's (the browser logs every 4xx)
    assert errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    ], errors


def test_filters_and_history_beyond_the_newest(tmp_path: Path) -> None:
    # The executions are made by an earlier run of the service on the same store: the page can
    # know them only from the HTTP API (the seed's newest 100, then "Load older"), never live.
    from zmqmon.services.server import Server

    db = tmp_path / "history.sqlite3"
    tiny = {**workflow(seconds=0, steps=1, agents=1), "name": "Tiny"}
    failing = {
        "name": "Failing",
        "agents": [{"id": "f", "uses": "zmqmon.demo:fail", "params": {"message": "no"}}],
    }
    earlier = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", db).start()
    try:
        with StateClient(earlier.endpoints["state"]) as client:
            oldest = client.execute(workflow=tiny)
            for _ in range(3):
                client.execute(workflow=failing)
            for _ in range(130):
                client.execute(workflow=tiny)
            wait_for(
                lambda: (
                    len(client.executions(status="running", limit=1000)) == 0
                    and len(client.executions(limit=1000)) == 134
                ),
                timeout=60,
                message="all 134 ended",
            )
    finally:
        earlier.stop()
    server = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", db).start()
    bridge = Bridge(server.endpoints["events"], server.endpoints["state"], "127.0.0.1", 0).start()
    try:
        _filters_and_history(bridge, oldest, tmp_path)
    finally:
        bridge.stop()
        server.stop()


def _filters_and_history(bridge: Bridge, oldest: str, tmp_path: Path) -> None:
    with sync_playwright() as p:
        browser, page, errors = open_page(p, bridge)
        try:
            rows = "#exec-rows tr"
            page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 100")
            assert not page.is_visible(f'tr[data-exec-id="{oldest}"]')
            page.click("#older")
            page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 134")
            page.wait_for_selector(f'tr[data-exec-id="{oldest}"]')
            assert page.inner_text("#older-note") == "That is all of them."
            assert page.is_disabled("#older")
            page.select_option("#f-status", "failed")
            page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 3")
            statuses = page.eval_on_selector_all(rows, "rs => rs.map(r => r.dataset.status)")
            assert statuses == ["failed"] * 3
            assert page.inner_text("#exec-count") == "3 of 134"
            shot(page, tmp_path, "filtered")
            page.select_option("#f-status", "")
            tiny_id = page.eval_on_selector(
                f'tr[data-exec-id="{oldest}"]', "r => r.querySelector('.wf').textContent"
            )
            assert tiny_id == "Tiny"
            workflows = page.eval_on_selector_all(
                "#f-workflow option", "os => os.map(o => o.textContent)"
            )
            assert workflows == ["All workflows", "Failing", "Tiny"]
            page.select_option("#f-workflow", label="Tiny")
            page.wait_for_function(f"() => document.querySelectorAll('{rows}').length === 131")
        finally:
            browser.close()
    assert not errors, errors
