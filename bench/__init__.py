"""zmqmon's benchmark suite: ``./dev bench`` (or ``python -m bench [SUITE …]``).

Each suite module ``bench/bench_<name>.py`` defines ``run(quick: bool) -> list[Row]``, measuring
zmqmon *and* its raw baseline (pyzmq or websockets) in the same run, so that what is reported is
a ratio against this machine, today, not a wall-clock number from elsewhere.

A shared VM's speed swings (2× within a minute was seen here): where a suite repeats, zmqmon's
runs alternate with their baseline's and each keeps its best. For an A/B of a code change that
no neighbour disturbs, count instructions instead (``valgrind --tool=cachegrind``, the same
script at two sizes, the difference divided by the extra work): the executor's and the
Subscriber's figures in ``docs/capacity.md`` and the issue notes were taken so.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Row", "format_table"]


@dataclass(frozen=True)
class Row:
    """One measurement beside its baseline.

    ``higher_is_better`` tells how to read ``ratio`` (= value / baseline) against ``target``:
    e.g. throughput ≥ 0.5× raw, or cost ≤ 2× raw.
    """

    suite: str
    metric: str
    value: float
    baseline: float | None
    unit: str
    target: str = ""
    higher_is_better: bool = False
    target_ratio: float | None = None
    note: str = ""
    #: an absolute target on ``value`` (≤, or ≥ when ``higher_is_better``), for targets such as
    #: "p99 ≤ 10 ms" that are not ratios
    target_value: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    @property
    def verdict(self) -> str:
        if self.target_ratio is not None and self.ratio is not None:
            measured, bound = self.ratio, self.target_ratio
        elif self.target_value is not None:
            measured, bound = self.value, self.target_value
        else:
            return ""
        ok = measured >= bound if self.higher_is_better else measured <= bound
        return "ok" if ok else "MISS"


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def format_table(rows: list[Row]) -> str:
    """A plain-text table: suite, metric, zmqmon, baseline, ratio, target, verdict."""
    header = ("suite", "metric", "zmqmon", "baseline", "unit", "ratio", "target", "")
    body = [
        (
            r.suite,
            r.metric,
            _fmt(r.value),
            _fmt(r.baseline),
            r.unit,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False))
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.suite}/{r.metric}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))
