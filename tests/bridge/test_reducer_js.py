"""The dashboard's reducer.js derives the same states as the Python reducer (same fixtures).

Runs the page's own file (no build step: the file the browser loads is the one tested) in node
when it is installed, else in Debian's Chromium through Playwright — never skipped.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import CHROMIUM, CHROMIUM_ARGS, reducer_fixtures
from zmqmon.core.events import parse_event
from zmqmon.core.state import replay

REDUCER = Path(__file__).parents[2] / "bridge" / "zmqmon_bridge" / "static" / "reducer.js"
FIXTURES = reducer_fixtures()
NODE = shutil.which("node")


_RUNNER = """
const r = require(process.argv[1]);
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = cases.map(c => {
  const start = c.snapshot === undefined ? null : c.snapshot;
  return r.replay(c.events, start);
});
process.stdout.write(JSON.stringify(out));
"""


def _run_in_chromium(cases: list[dict[str, Any]]) -> list[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_script_tag(content=REDUCER.read_text())
            return list(
                page.evaluate(
                    "cases => cases.map(c => ZmqmonReducer.replay(c.events, "
                    "c.snapshot === undefined ? null : c.snapshot))",
                    cases,
                )
            )
        finally:
            browser.close()


def run_js(cases: list[dict[str, Any]]) -> list[Any]:
    if NODE is None:
        return _run_in_chromium(cases)
    proc = subprocess.run(
        [NODE, "-e", _RUNNER, str(REDUCER)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return list(json.loads(proc.stdout))


def test_every_fixture_reduces_to_its_expected_state() -> None:
    results = run_js([{"events": f["events"]} for f in FIXTURES])
    for fixture, state in zip(FIXTURES, results, strict=True):
        assert state == fixture["expected"], fixture["description"]


def test_js_and_python_agree_on_duplicates_reordering_and_snapshot_joins() -> None:
    rng = random.Random(11)
    cases: list[dict[str, Any]] = []
    expected: list[Any] = []
    for fixture in FIXTURES:
        events = fixture["events"]
        # every event delivered twice, older ones re-delivered late: stale ones change nothing
        noisy = [e for e in events for _ in range(2)] + rng.sample(events, len(events))
        cases.append({"events": noisy})
        expected.append(fixture["expected"])
        # a late joiner: the Python snapshot after `cut` events, then the rest in JS
        for cut in range(len(events) + 1):
            head = replay(parse_event(e) for e in events[:cut])
            cases.append(
                {"snapshot": head.to_json_dict() if head else None, "events": events[cut:]}
            )
            expected.append(fixture["expected"])
    results = run_js(cases)
    assert len(results) == len(expected)
    for i, (got, want) in enumerate(zip(results, expected, strict=True)):
        assert got == want, f"case {i}"


def test_python_prefixes_agree_with_js_prefixes() -> None:
    # Not only the end state: every intermediate state matches, rule for rule.
    fixture = max(FIXTURES, key=lambda f: len(f["events"]))
    events = fixture["events"]
    results = run_js([{"events": events[: n + 1]} for n in range(len(events))])
    for n, got in enumerate(results):
        want = replay(parse_event(e) for e in events[: n + 1])
        assert want is not None
        assert got == want.to_json_dict(), f"after {n + 1} events"


def test_the_browser_runs_the_same_file() -> None:
    # The page loads reducer.js as a classic script (global ZmqmonReducer), not as a module.
    fixture = FIXTURES[0]
    assert _run_in_chromium([{"events": fixture["events"]}]) == [fixture["expected"]]
