"""The dashboard in a real browser (Debian's Chromium through Playwright) while a workflow runs."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from playwright.sync_api import sync_playwright
from zmqmon_bridge.server import Bridge

from tests.bridge.conftest import workflow
from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from zmqmon.shells.client import StateClient


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_dashboard_follows_a_running_workflow(server: Any, bridge: Bridge, tmp_path: Path) -> None:
    requests: list[str] = []
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on(
                "console", lambda m: console_errors.append(m.text) if m.type == "error" else None
            )
            page.goto(bridge.http_url + "/")
            page.wait_for_selector('#conn[data-state="connected"]', timeout=10_000)

            handle = server.submit(workflow(seconds=1.5, steps=10, agents=3))
            row = f'tr[data-exec-id="{handle.id}"]'
            page.wait_for_selector(row, timeout=10_000)  # appears in the live list
            page.click(row)
            page.wait_for_selector('#detail[data-status="running"]', timeout=10_000)

            # the overall progress bar moves
            bar = "#d-progress .bar"
            page.wait_for_function(  # a function, not a string: the page's CSP forbids eval
                "sel => parseFloat(document.querySelector(sel).style.width) > 0",
                arg=bar,
                timeout=15_000,
            )
            first_width = page.eval_on_selector(bar, "e => parseFloat(e.style.width)")
            # agent rows change state: the first completes while a later one runs
            page.wait_for_selector(
                'tr[data-agent-id="a0"][data-status="completed"]', timeout=15_000
            )
            page.wait_for_selector('tr[data-agent-id="a1"][data-status="running"]', timeout=15_000)
            page.screenshot(path=str(tmp_path / "running.png"))
            page.wait_for_selector('#detail[data-status="completed"]', timeout=20_000)
            page.wait_for_selector(f'{row}[data-status="completed"]', timeout=5_000)
            last_width = page.eval_on_selector(bar, "e => parseFloat(e.style.width)")
            assert last_width == 100 > first_width
            statuses = page.eval_on_selector_all(
                "#agent-rows tr", "rows => rows.map(r => r.dataset.status)"
            )
            assert statuses == ["completed", "completed", "completed"]
            # the event log holds every event once, in order, and expands to JSON
            seqs = page.eval_on_selector_all("#log li", "lis => lis.map(l => +l.dataset.seq)")
            assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 10
            page.click("#log li:first-child .line")
            page.wait_for_selector("#log li:first-child pre")
            assert '"execution:started"' in page.inner_text("#log li:first-child pre")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.exists() and shot.stat().st_size > 10_000
    assert (tmp_path / "running.png").stat().st_size > 10_000
    # nothing fetched from anywhere but the bridge
    hosts = {urlsplit(u).hostname for u in requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requests
    assert not console_errors, console_errors


def _launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_dashboard_reconnects_and_resumes_after_the_bridge_restarts(
    server: Any, make_bridge: Any, tmp_path: Path
) -> None:
    first = make_bridge()
    port = first.port
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900}, color_scheme="dark")
            page.goto(first.http_url + "/")
            page.wait_for_selector('#conn[data-state="connected"]', timeout=10_000)
            handle = server.submit(workflow(seconds=1.0, steps=10, agents=3))
            row = f'tr[data-exec-id="{handle.id}"]'
            page.wait_for_selector(row, timeout=10_000)
            page.click(row)
            page.wait_for_function(
                "() => document.querySelectorAll('#log li').length >= 5", timeout=10_000
            )
            first.stop()  # the bridge goes away mid-execution
            page.wait_for_selector('#conn:not([data-state="connected"])', timeout=10_000)
            make_bridge(port=port)  # ... and comes back on the same port
            page.wait_for_selector('#conn[data-state="connected"]', timeout=15_000)
            page.wait_for_selector('#detail[data-status="completed"]', timeout=20_000)
            page.screenshot(path=str(tmp_path / "dark.png"))
            lines = page.eval_on_selector_all(
                "#log li", "lis => lis.map(l => [+l.dataset.seq, l.className])"
            )
        finally:
            browser.close()
    handle.wait(10)
    with StateClient(server.endpoints["state"]) as client:
        _, last = client.events(handle.id)
    seqs = [seq for seq, _ in lines]
    assert seqs == sorted(set(seqs)) and seqs[0] == 1 and seqs[-1] == last  # none twice
    # Resumed with afterSeq: every event is in the log, except where the state-mode
    # subscription took a snapshot for a backlog that came late (a loaded machine): the log
    # then says so at the seq the snapshot stands for — nothing is skipped silently.
    for (before, _), (seq, kind) in itertools.pairwise(lines):
        assert seq == before + 1 or "t-snapshot" in kind, (before, seq, kind)
    assert (tmp_path / "dark.png").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.timeout(90)
def test_dashboard_with_auth_asks_for_a_token_and_shows_only_that_users_executions(
    server: Any, make_bridge: Any, tmp_path: Path
) -> None:
    secret = "browser-test-secret-0123456789abcdef"
    bridge = make_bridge(jwt_secret=secret)
    alice = jwt.encode({"sub": "alice"}, secret, algorithm="HS256")
    wf = workflow(seconds=0.05, steps=1)
    theirs = server.submit(wf, user_id="bob")
    theirs.wait(20)
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(bridge.http_url + "/")
            page.wait_for_selector('#conn[data-state="unauthorized"]', timeout=10_000)
            assert page.is_visible("#token-form")
            page.fill("#token", alice)
            page.click("#token-form button")
            page.wait_for_selector('#conn[data-state="connected"]', timeout=10_000)
            mine = server.submit(wf, user_id="alice")
            page.wait_for_selector(
                f'tr[data-exec-id="{mine.id}"][data-status="completed"]', timeout=15_000
            )
            page.reload()  # the list is seeded from /api/executions with the token too
            page.wait_for_selector(f'tr[data-exec-id="{mine.id}"]', timeout=10_000)
            ids = page.eval_on_selector_all("#exec-rows tr", "rs => rs.map(r => r.dataset.execId)")
            page.screenshot(path=str(tmp_path / "auth.png"))
        finally:
            browser.close()
    assert ids == [mine.id]  # bob's execution never reached alice's page
    assert (tmp_path / "auth.png").stat().st_size > 5_000
