"""The burst stress tool (bench/stress.py) end to end on a tiny burst.

Only that it runs, ends and counts is tested: its figures are the benchmark's output, never
asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stress import HEADER, format_results

ROOT = Path(__file__).parents[1]


@pytest.mark.timeout(90)
def test_a_tiny_burst_runs_end_to_end_and_counts_every_event() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.stress", "--seconds", "0.3", "--clients", "5",
         "--executions", "5", "--mode", "log", "--rate", "20000", "--deadline", "30", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=80,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert isinstance(results, list) and len(results) == 1
    r = results[0]
    assert r["config"]["mode"] == "log" and r["clients"] == 5
    assert r["published"] > 0 and r["flood"] > 0
    # every client followed its execution to the end: each event delivered once
    assert r["complete"] == 5 and r["catchUpS"] is not None
    assert r["deliveries"] == r["published"]
    assert r["lost"] == r["duplicated"] == r["reordered"] == r["undelivered"] == 0
    assert r["pingsSent"] > 0 and r["bridgeRssPeakMB"] > 0
    for key in ("longestSilenceS", "stalenessP99S", "pingP99Ms", "healthP99Ms", "deliveriesPerS"):
        assert isinstance(r[key], (int, float)), key
    table = format_results(results).splitlines()
    assert table[0].split("  ")[0] == HEADER[0] and len(table) >= 3
