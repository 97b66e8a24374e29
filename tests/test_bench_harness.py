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


def test_a_paced_run_ends_for_a_server_that_fell_behind_with_lower_bounds() -> None:
    """bench bridge: readers still waiting at the deadline are cancelled (the run goes on,
    flagged), a reader's own failure is raised, and each event a probe never got counts with at
    least the time since the publisher's end."""
    import asyncio
    import time

    from bench.bench_bridge import RawClient, _latencies, _settle

    async def scenario() -> tuple[bool, bool, bool]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        done.set_result(1)
        never: asyncio.Future[int] = loop.create_future()
        behind = await _settle([done, never], timeout=0.01)
        ok_in_time = await _settle([done], timeout=0.01)
        failed: asyncio.Future[int] = loop.create_future()
        failed.set_exception(ConnectionError("closed early"))
        with pytest.raises(ConnectionError):
            await _settle([failed], timeout=0.01)
        return behind, never.cancelled(), ok_in_time

    behind, cancelled, ok_in_time = asyncio.run(scenario())
    assert (behind, cancelled, ok_in_time) == (True, True, False)

    probe, sink = RawClient(0, probe=True), RawClient(0, probe=False)
    probe.latencies = [0.001, 0.002]
    sent = {"t0": time.monotonic() - 5.0, "seconds": 2.0}  # the publisher ended 3 s ago
    assert _latencies([probe, sink], 5, sent, late=False) == [0.001, 0.002]
    filled = _latencies([probe, sink], 5, sent, late=True)
    assert filled[:2] == [0.001, 0.002] and len(filled) == 5
    assert all(x >= 3.0 for x in filled[2:])
