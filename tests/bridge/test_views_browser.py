"""The dashboard's graph, timeline and replay in a real browser (Debian's Chromium, Playwright).

A 30-agent fan-out/fan-in runs on a real service through a real bridge: nodes change colour and
running bars grow while it runs; afterwards the replay scrubber (set, and dragged with the mouse)
shows, in every view, exactly the state the Python reducer gives for the events up to that seq
(for those the page holds: a state-mode subscription may have had a backlog replaced by a
snapshot, on a loaded machine); "Live" brings the final state back. A failed run is checked (and
shot) in dark mode. Screenshots go to the test's tmp dir and to ``artifacts/views/`` (ignored by
git) for a human to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, sync_playwright
from zmqmon_bridge.server import Bridge

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState, apply_event, replay
from zmqmon.shells.client import StateClient

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

ARTIFACTS = Path(__file__).parents[2] / "artifacts" / "views"


def _agent(agent_id: str, name: str, seconds: float, deps: list[str], **extra: Any) -> dict:  # type: ignore[type-arg]
    uses = extra.pop("uses", "zmqmon.demo:work")
    params = extra.pop("params", {"seconds": seconds, "steps": 6})
    return {"id": agent_id, "name": name, "uses": uses, "params": params, "dependsOn": deps}


def fan_out_in(width: int = 28, fail: str | None = None) -> dict[str, Any]:
    """``split`` (2 s) → ``width`` workers (0.5–2.1 s; ``w05`` the longest) → ``merge``."""
    workers = []
    for i in range(width):
        wid = f"w{i:02d}"
        if wid == fail:
            params = {"seconds": 0.6, "message": "disk full: /data/shard-" + wid}
            workers.append(_agent(wid, f"Worker {i:02d}", 0, ["split"], uses="zmqmon.demo:fail",
                                  params=params))  # fmt: skip
        else:
            seconds = 2.1 if i == 5 else 0.5 + (i * 37 % 17) / 12
            workers.append(_agent(wid, f"Worker {i:02d}", seconds, ["split"]))
    return {
        "name": f"Fan-out {width + 2}",
        "agents": [
            _agent("split", "Splitter", 2.0, []),  # long enough to be seen running under load
            *workers,
            _agent("merge", "Merger", 0.5, [w["id"] for w in workers]),
        ],
    }


def _events(server: Any, execution_id: str) -> list[Event]:
    server.store.flush()
    with StateClient(server.endpoints["state"]) as client:
        events, last = client.events(execution_id, 0, 10_000)
    assert events and events[-1].seq == last
    return events


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _shoot(page: Page, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    path = tmp_path / name
    if selector:  # whole, below the sticky top bar
        page.eval_on_selector(selector, "e => { e.scrollIntoView(); window.scrollBy(0, -70); }")
        page.locator(selector).screenshot(path=str(path))
    else:  # from the top, or the sticky top bar lands mid-page
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
    shutil.copy(path, _artifacts() / name)
    assert path.stat().st_size > 5_000
    return path


def _statuses(page: Page, selector: str) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            selector, "els => els.map(e => [e.dataset.agentId, e.dataset.status])"
        )
    )


class PageHistory:
    """What the page holds of an execution (its log: events, and the snapshot markers a
    state-mode subscription leaves where the bridge skipped a backlog), and the state the Python
    reducer gives for it at any seq — what the replay must show."""

    def __init__(self, page: Page, execution_id: str, events: list[Event]) -> None:
        held = page.evaluate(
            "id => Object.values(zmqmonDashboard.logs[id]).map(e => [e.seq, e.type])",
            execution_id,
        )
        self.events = events
        self.seqs = [seq for seq, _ in held]
        self.markers = {seq for seq, kind in held if kind == "snapshot"}
        assert self.seqs == sorted(self.seqs) and self.seqs[-1] == len(events)

    def clamp(self, seq: int) -> int:
        return max(self.seqs[0], min(seq, self.seqs[-1]))

    def state_at(self, seq: int) -> ExecutionState:
        start = max((k for k in self.markers if k <= seq), default=0)
        state = replay(self.events[:start]) if start else None  # the marker's snapshot
        for q in self.seqs:
            if start < q <= seq:
                state = apply_event(state, self.events[q - 1])
        assert state is not None
        return state


def _check_replay_at(page: Page, held: PageHistory, asked: int) -> int:
    """Every view shows the reducer's state after the events up to the seq shown."""
    seq = held.clamp(asked)  # (a log that starts with a snapshot starts there)
    page.wait_for_selector(f'#detail[data-mode="replay"][data-replay-seq="{seq}"]')
    want = held.state_at(seq)
    if not held.markers:  # every event held: exactly the fold of events 1..seq
        assert want == replay(held.events[:seq])
    assert page.evaluate("() => ZmqmonViews.drawn()") == want.to_json_dict(), f"seq {seq}"
    statuses = {a.agent_id: a.status for a in want.agents}
    assert _statuses(page, "#agent-rows tr") == statuses
    assert _statuses(page, ".dag .node") == statuses
    assert _statuses(page, ".timeline .row") == statuses
    assert page.inner_text("#d-seq") == str(want.last_seq)
    assert page.get_attribute("#d-status", "class") == f"badge {want.status}"
    logged = page.eval_on_selector_all("#log li[data-seq]", "ls => ls.map(l => +l.dataset.seq)")
    assert max(logged) == seq  # the log stops at seq too
    return seq


def _open(p: Any, bridge: Bridge, scheme: str) -> tuple[Any, Page, list[str], list[str]]:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, color_scheme=scheme)
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(bridge.http_url + "/")
    page.wait_for_selector('#conn[data-state="connected"]', timeout=10_000)
    return browser, page, requests, errors


def _follow(page: Page, execution_id: str) -> None:
    row = f'tr[data-exec-id="{execution_id}"]'
    page.wait_for_selector(row, timeout=10_000)
    page.click(row)


def _fill_when(page: Page, node: str, status: str) -> str:
    """The node's fill colour, read in the same task as its status (a frame can change both)."""
    return str(
        page.wait_for_function(
            """([sel, status]) => {
                const n = document.querySelector(sel);
                const box = n && n.dataset.status === status && n.querySelector(".box");
                return box && getComputedStyle(box).fill;
            }""",
            arg=[node, status],
            timeout=15_000,
        ).json_value()
    )


def test_graph_and_timeline_follow_a_run_and_replay_matches_the_reducer(
    server: Any, bridge: Bridge, tmp_path: Path
) -> None:
    with sync_playwright() as p:
        browser, page, requests, errors = _open(p, bridge, "light")
        try:
            handle = server.submit(fan_out_in())
            _follow(page, handle.id)
            split = '.dag .node[data-agent-id="split"]'
            running_fill = _fill_when(page, split, "running")
            completed_fill = _fill_when(page, split, "completed")
            assert completed_fill != running_fill  # the node changed colour
            page.wait_for_function("() => document.querySelectorAll('.dag .node.s-running')"
                                   ".length >= 10")  # fmt: skip
            page.screenshot(path=str(tmp_path / "fanout-running.png"))  # the viewport: quick
            shutil.copy(tmp_path / "fanout-running.png", _artifacts() / "fanout-running.png")
            # w05 runs longest: its bar grows while it runs
            bar = '.timeline .row[data-agent-id="w05"] .span'
            page.wait_for_selector('.timeline .row[data-agent-id="w05"].open', timeout=15_000)
            before = float(page.eval_on_selector(bar, "e => e.getBBox().width"))
            page.wait_for_function(
                "([sel, w]) => document.querySelector(sel).getBBox().width > w + 20",
                arg=[bar, before],
                timeout=15_000,
            )
            assert page.get_attribute('.dag .node[data-agent-id="w05"]', "data-status") in (
                "running",
                "completed",
            )
            page.wait_for_selector('#detail[data-status="completed"]', timeout=30_000)
            page.wait_for_selector('.dag .node[data-agent-id="merge"][data-status="completed"]')
            _shoot(page, tmp_path, "fanout-completed.png")
            _shoot(page, tmp_path, "fanout-graph.png", "#dag")
            _shoot(page, tmp_path, "fanout-timeline.png", "#timeline")
            critical = page.inner_text("#critical")
            assert critical.startswith("critical path") and "Worker 05" in critical
            assert page.locator(".dag .node.critical").count() == 3  # split → w05 → merge
            assert page.locator(".dag .edge.critical").count() == 2
            assert page.locator(".timeline .row.critical").count() == 3

            events = _events(server, handle.id)
            n = len(events)
            slider = page.locator("#replay-seq")
            assert slider.get_attribute("max") == str(n)
            held = PageHistory(page, handle.id, events)
            for seq in sorted({1, 2, n // 3, n // 2, n - 1, n}):
                slider.fill(str(seq))  # the scrubber, set as a keyboard user would
                _check_replay_at(page, held, seq)
            # … and dragged with the mouse, to wherever the drop lands
            box = slider.bounding_box()
            assert box is not None
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] - 4, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=8)
            page.mouse.up()
            dropped = int(slider.input_value())
            assert 0.3 * n < dropped < 0.8 * n
            _check_replay_at(page, held, dropped)
            page.locator("#replay").scroll_into_view_if_needed()
            _shoot(page, tmp_path, "replay.png")
            _shoot(page, tmp_path, "replay-graph.png", "#dag")
            page.click("#replay-live")
            page.wait_for_selector('#detail[data-mode="live"][data-status="completed"]')
            assert set(_statuses(page, ".dag .node").values()) == {"completed"}
        finally:
            browser.close()
    assert {urlsplit(u).hostname for u in requests if not u.startswith("data:")} == {"127.0.0.1"}
    assert not errors, errors  # a CSP violation (an inline style, say) would show here


def test_a_failed_run_is_marked_in_both_views_in_dark_mode(
    server: Any, bridge: Bridge, tmp_path: Path
) -> None:
    with sync_playwright() as p:
        browser, page, _, errors = _open(p, bridge, "dark")
        try:
            handle = server.submit(fan_out_in(fail="w07"))
            _follow(page, handle.id)
            page.wait_for_selector('#detail[data-status="failed"]', timeout=30_000)
            node = '.dag .node[data-agent-id="w07"]'
            page.wait_for_selector(f'{node}[data-status="failed"]')
            assert (page.text_content(f"{node} .meta") or "").startswith("✕")
            row = '.timeline .row[data-agent-id="w07"]'
            assert page.text_content(f"{row} .mark") == "✕"
            page.hover(f"{row} .span")  # the tooltip: duration and error
            tip = page.text_content(f"{row} title") or ""
            assert "failed ·" in tip and "error: disk full: /data/shard-w07" in tip
            assert " ms" in tip or " s" in tip
            cancelled = page.eval_on_selector_all(
                ".timeline .row.s-cancelled .mark", "ms => ms.map(m => m.textContent)"
            )
            assert cancelled and set(cancelled) == {"⊘"}  # the workers cut short
            assert page.get_attribute('.dag .node[data-agent-id="merge"]', "data-status") == (
                "pending"
            )
            _shoot(page, tmp_path, "failed-dark.png")
            _shoot(page, tmp_path, "failed-dark-graph.png", "#dag")
            _shoot(page, tmp_path, "failed-dark-timeline.png", "#timeline")
        finally:
            browser.close()
    assert not errors, errors
