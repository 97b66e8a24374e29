"""The dashboard's layout.js computes the same geometry as zmqmon.core.layout/timeline.

The page's own files run in node when it is installed (else in Chromium): events are folded by
reducer.js and laid out by layout.js, and the answer must be the fixture's, which the Python
layout gives too (tests/core/test_layout.py). Random graphs, timestamps and scales are compared
between the two languages directly.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.core.test_layout import BAD_TIMESTAMPS
from tests.layout_cases import T0, layout_fixtures, stamp
from zmqmon.core.layout import Node, dag_layout
from zmqmon.core.timeline import format_offset, time_scale, timestamp_ms

STATIC = Path(__file__).parents[2] / "bridge" / "zmqmon_bridge" / "static"
FIXTURES = layout_fixtures()
NODE = shutil.which("node")

# One entry point for every case: {"op": ..., ...} → its answer.
_DISPATCH = """
function answer(R, L, c) {
  switch (c.op) {
    case "layout": return L.executionLayout(R.replay(c.events, null), c.nowMs);
    case "dag": {
      var d = L.dagLayout(c.nodes);
      return {layers: d.layers, nodes: d.nodes, width: d.width, height: d.height};
    }
    case "stamp": return c.values.map(L.timestampMs);
    case "scale": return L.timeScale(c.start, c.end, c.x0, c.width, c.minTickPx);
    case "offset": return c.values.map(function (v) { return L.formatOffset(v[0], v[1]); });
  }
}
"""
_RUNNER = (
    _DISPATCH
    + """
const R = require(process.argv[1]), L = require(process.argv[2]);
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(cases.map(c => answer(R, L, c))));
"""
)


def _in_chromium(cases: list[dict[str, Any]]) -> list[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            # Classic scripts, as the page loads them: globals ZmqmonReducer and ZmqmonLayout.
            page.add_script_tag(content=(STATIC / "reducer.js").read_text())
            page.add_script_tag(content=(STATIC / "layout.js").read_text())
            page.add_script_tag(content=_DISPATCH)
            return list(
                page.evaluate(
                    "cases => cases.map(c => answer(ZmqmonReducer, ZmqmonLayout, c))", cases
                )
            )
        finally:
            browser.close()


def run_js(cases: list[dict[str, Any]]) -> list[Any]:
    if NODE is None:
        return _in_chromium(cases)
    proc = subprocess.run(
        [NODE, "-e", _RUNNER, str(STATIC / "reducer.js"), str(STATIC / "layout.js")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(proc.stdout))


def test_every_fixture_lays_out_as_expected() -> None:
    results = run_js([{"op": "layout", **f} for f in FIXTURES])
    for fixture, got in zip(FIXTURES, results, strict=True):
        assert got == fixture["expected"], fixture["description"]


def _random_graph(rng: random.Random, n: int) -> list[Node]:
    nodes: list[Node] = []
    for i in range(n):
        # mostly recent dependencies, some unknown ones, now and then a cycle or a repeat
        pool = [
            f"v{j}" for j in range(max(0, i - 30), min(n, i + (3 if rng.random() < 0.05 else 0)))
        ]
        deps = [rng.choice(pool) for _ in range(rng.randint(0, 3))] if pool else []
        if rng.random() < 0.03:
            deps.append("nowhere")
        nodes.append((f"v{i}", deps))
    rng.shuffle(nodes)
    return nodes


def test_random_graphs_get_the_same_layers_order_and_coordinates() -> None:
    rng = random.Random(20261125)
    graphs = [_random_graph(rng, n) for n in (1, 2, 5, 50, 80, 150, 300, 500)]
    results = run_js([{"op": "dag", "nodes": g} for g in graphs])
    for graph, got in zip(graphs, results, strict=True):
        want = dag_layout(graph)
        assert got["layers"] == [list(layer) for layer in want.layers]
        assert got["nodes"] == [
            {"id": v, "layer": n[0], "index": n[1], "x": n[2], "y": n[3]}
            for v, n in want.nodes.items()
        ]
        assert (got["width"], got["height"]) == (want.width, want.height)


def test_timestamps_parse_alike() -> None:
    values = [stamp(ms) for ms in (0, 1, 999, 59_999, 3_600_001, 86_400_000 * 800 + 123)]
    values += ["0001-01-01T00:00:00.000Z", "2024-02-29T12:00:00.500Z", "1969-12-31T23:59:59.999Z"]
    values += [v for v in BAD_TIMESTAMPS if v is not None]
    assert run_js([{"op": "stamp", "values": values}]) == [[timestamp_ms(v) for v in values]]


def test_time_scales_and_labels_agree() -> None:
    t0 = int(T0.timestamp() * 1000)
    spans = [1, 3, 99, 100, 1_001, 4_321, 59_999, 61_000, 3_599_999, 7_777_777, 3 * 86_400_000]
    spans += [37 * 86_400_000, 900 * 86_400_000]
    cases = [
        {"op": "scale", "start": t0, "end": t0 + s, "x0": 150, "width": w, "minTickPx": 72}
        for s in spans
        for w in (120, 554, 1999)
    ]
    results = run_js(cases)
    for case, got in zip(cases, results, strict=True):
        want = time_scale(case["start"], case["end"], 150, case["width"], 72)
        assert got["stepMs"] == want.step_ms
        assert [(t["ms"], t["x"], t["label"]) for t in got["ticks"]] == list(want.ticks)
    rng = random.Random(7)
    pairs = [[rng.randrange(0, 10**9) // s * s, s] for s in (1, 2, 5, 50, 500, 1000, 60_000)]
    pairs += [[rng.randrange(0, 3000), rng.choice((1, 2, 5, 10, 20, 50, 100, 200, 500))]
              for _ in range(300)]  # fmt: skip
    assert run_js([{"op": "offset", "values": pairs}]) == [[format_offset(*p) for p in pairs]]


@pytest.mark.browser
def test_the_browser_runs_the_same_files() -> None:
    fixture = FIXTURES[0]
    assert _in_chromium([{"op": "layout", **fixture}]) == [fixture["expected"]]
