"""The benchmark harness: its table and verdicts, and that `python -m bench` runs a suite.

Only the harness is tested here; the figures themselves are never asserted (they are the
benchmark's output, not a test's).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import Row, format_table

ROOT = Path(__file__).parents[1]


def test_ratio_and_verdict_follow_the_direction_of_the_target() -> None:
    cost = Row("s", "emit", 3.0, 2.0, "µs", target="≤ 2×", target_ratio=2.0)
    speed = Row("s", "rate", 40.0, 100.0, "ev/s", higher_is_better=True, target_ratio=0.5)
    assert cost.ratio == 1.5 and cost.verdict == "ok"
    assert speed.ratio == 0.4 and speed.verdict == "MISS"
    assert Row("s", "info", 1.0, None, "x").verdict == ""
    assert Row("s", "p99", 12.0, 900.0, "ms", target_value=10.0).verdict == "MISS"
    assert Row("s", "p99", 5.0, 900.0, "ms", target_value=10.0).verdict == "ok"


def test_table_has_one_line_per_row_plus_notes() -> None:
    rows = [
        Row("stream", "emit cost", 2.5, 1.6, "µs/event", target="≤ 2× raw", target_ratio=2.0),
        Row("stream", "no baseline", 7.0, None, "MB", note="context only"),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:4] == ["suite", "metric", "zmqmon", "baseline"]
    assert "1.56x" in lines[2] and lines[2].rstrip().endswith("ok")
    assert lines[-1].strip() == "stream/no baseline: context only"


@pytest.mark.timeout(120)
def test_python_m_bench_runs_a_suite_and_refuses_unknown_ones() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "executor"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:2] == ["suite", "metric"]
    assert "executor" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "bench", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown suite(s) nope" in bad.stderr
