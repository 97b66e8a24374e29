"""The dashboard's replay (static/replay.js): the state as of any seq is the Python reducer's.

Run in node (the page's own file), or in Chromium when node is missing: every seq of a long run
(across the checkpoints), a log that grows while it is scrubbed, a log with a hole that a
state-mode snapshot filled, and an event arriving out of order.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.layout_cases import fan_out_in, run_events
from zmqmon.core.events import parse_event
from zmqmon.core.state import replay

STATIC = Path(__file__).parents[2] / "bridge" / "zmqmon_bridge" / "static"
NODE = shutil.which("node")

# steps: ["add", event] puts an entry in the log; ["at", seq] answers History.stateAt(log, seq)
_DISPATCH = """
function play(Replay, R, steps) {
  var log = {}, h = new Replay.History(R), out = [];
  steps.forEach(function (s) {
    if (s[0] === "add") log[s[1].seq] = s[1];
    else out.push(h.stateAt(log, s[1]));
  });
  return out;
}
"""
_RUNNER = (
    _DISPATCH
    + """
const Replay = require(process.argv[1]), R = require(process.argv[2]);
const steps = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(play(Replay, R, steps)));
"""
)


def run_js(steps: list[list[Any]]) -> list[Any]:
    if NODE is not None:
        proc = subprocess.run(
            [NODE, "-e", _RUNNER, str(STATIC / "replay.js"), str(STATIC / "reducer.js")],
            input=json.dumps(steps),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return list(json.loads(proc.stdout))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            for name in ("reducer.js", "replay.js"):
                page.add_script_tag(content=(STATIC / name).read_text())
            page.add_script_tag(content=_DISPATCH)
            return list(page.evaluate("s => play(ZmqmonReplay, ZmqmonReducer, s)", steps))
        finally:
            browser.close()


EVENTS = run_events(fan_out_in(30), {}, progress_steps=20)  # 706 events: > 2 checkpoints


def _want(n: int) -> dict[str, Any] | None:
    state = replay(parse_event(e) for e in EVENTS[:n])
    return None if state is None else state.to_json_dict()


def test_every_seq_of_a_long_run() -> None:
    n = len(EVENTS)
    assert n > 2 * 256
    seqs = [0, *range(1, n + 1, 7), 255, 256, 257, 511, 512, 513, n - 1, n, n + 5]
    got = run_js([["add", e] for e in EVENTS] + [["at", s] for s in seqs])
    for seq, state in zip(seqs, got, strict=True):
        assert state == _want(min(seq, n)), seq


def test_a_log_that_grows_while_scrubbed() -> None:
    steps: list[list[Any]] = []
    asked = []
    for i, event in enumerate(EVENTS):
        steps.append(["add", event])
        if i % 37 == 0:
            for seq in (1, (i + 1) // 2, i + 1):
                steps.append(["at", seq])
                asked.append(seq)
    got = run_js(steps)
    for seq, state in zip(asked, got, strict=True):
        assert state == _want(seq), seq


def test_a_snapshot_marker_stands_for_a_skipped_backlog() -> None:
    # state mode: events 1..40 arrived, the bridge skipped 41..299 with a snapshot at 300
    snap = {"type": "snapshot", "seq": 300, "execution": _want(300)}
    log = [*EVENTS[:40], snap, *EVENTS[300:]]
    seqs = [10, 40, 41, 150, 299, 300, 301, len(EVENTS)]
    got = run_js([["add", e] for e in log] + [["at", s] for s in seqs])
    expected = [_want(10), _want(40), _want(40), _want(40), _want(40), _want(300), _want(301)]
    assert got == [*expected, _want(len(EVENTS))]


def test_an_event_arriving_out_of_order_rebuilds_the_checkpoints() -> None:
    late = EVENTS[99]
    early = [e for e in EVENTS if e is not late]
    steps = [["add", e] for e in early] + [["at", 600], ["add", late], ["at", 600], ["at", 99]]
    got = run_js(steps)
    hole = replay(parse_event(e) for e in early[:599])  # 1..600 without 100
    assert hole is not None
    assert got[0] == hole.to_json_dict()  # with seq 100 missing …
    assert got[1:] == [_want(600), _want(99)]  # … and once it came
