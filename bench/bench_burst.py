"""Burst benchmark: the bridge under overload, with the stress tool (:mod:`bench.stress`).

For bursts of 1, 3 and 10 s (quick: 1 s) published as fast as the executor service can, to 100
WebSocket clients each following one of 100 executions' raw prefix, once in log mode and once in
state mode (fresh processes each run), it reports:

* peak bridge RSS per burst length — it should be flat (bounded), not grow with the burst: the
  longer bursts against the 1 s burst's peak (target ≤ 1.25×);
* catch-up deliveries/s in log mode — how fast the backlog left at the burst's end is drained
  (the rate over the whole run when there is none) — beside a raw baseline measured in the same
  run: a raw ``websockets`` broadcast server's deliveries/s to 100 clients
  (:mod:`bench.bench_bridge`'s "broadcast" server and clients);
* staleness p99 in state mode (how old the oldest event a client has not seen gets);
* ping p99 (target ≤ 250 ms, contract §5) and the longest silence toward a client still owed
  events (target ≤ 1 s), the worse of the two modes.

Correctness (log: lost/duplicated; state: final states equal) and incomplete clients are in the
notes. Run: ``python -m bench burst [--quick]``; one burst by hand: ``python -m bench.stress``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench import Row
from bench.stress import Config, run_many

SUITE = "burst"
CLIENTS = 100
EXECUTIONS = 100


def _raw_broadcast(events: int) -> float:
    """Deliveries/s of raw websockets broadcast to 100 clients (bench_bridge's baseline)."""
    from bench.bench_bridge import Publisher, _round, _start_server

    async def measure() -> float:
        publisher = Publisher()
        proc, port = _start_server("broadcast", publisher.endpoint)
        try:
            result = await _round(publisher, port, CLIENTS, 0, events, 0)
            return float(result["deliveries_per_s"])
        finally:
            proc.terminate()
            proc.wait(10)
            publisher.close()

    return asyncio.run(measure())


def _correctness(r: dict[str, Any]) -> str:
    n = r["clients"]
    done = "all complete" if r["complete"] == n else f"{n - r['complete']}/{n} incomplete"
    if r["config"]["mode"] == "log":
        return f"log: lost {r['lost']}, duplicated {r['duplicated']}, {done}"
    return f"state: final states equal {r['statesEqual']}/{n}, {done}"


def run(quick: bool) -> list[Row]:
    """Run the bursts (and the raw baseline); one row per figure and burst length."""
    lengths = [1.0] if quick else [1.0, 3.0, 10.0]
    configs = [
        Config(seconds=s, mode=m, clients=CLIENTS, executions=EXECUTIONS)
        for s in lengths
        for m in ("log", "state")
    ]
    results = {(c.seconds, c.mode): r for c, r in zip(configs, run_many(configs), strict=True)}
    raw = _raw_broadcast(2_000 if quick else 6_000)
    rows: list[Row] = []
    first_peak = max(results[(lengths[0], m)]["bridgeRssPeakMB"] for m in ("log", "state"))
    for s in lengths:
        log, state = results[(s, "log")], results[(s, "state")]
        both = (log, state)
        peak = max(r["bridgeRssPeakMB"] for r in both)
        rss_note = (
            f"log {log['bridgeRssBaseMB']:.0f}→{log['bridgeRssPeakMB']:.0f} MB, "
            f"state {state['bridgeRssBaseMB']:.0f}→{state['bridgeRssPeakMB']:.0f} MB"
        )
        if s == lengths[0]:
            rows.append(
                Row(
                    SUITE,
                    f"peak bridge RSS, {s:g} s burst (vs before it)",
                    peak,
                    max(r["bridgeRssBaseMB"] for r in both),
                    "MB",
                    note=rss_note,
                )
            )
        else:
            rows.append(
                Row(
                    SUITE,
                    f"peak bridge RSS, {s:g} s burst (vs {lengths[0]:g} s burst)",
                    peak,
                    first_peak,
                    "MB",
                    "flat: ≤ 1.25x",
                    target_ratio=1.25,
                    note=rss_note,
                )
            )
        catch = (
            f"catch-up {log['catchUpS']:.1f} s after the burst"
            if log["catchUpS"] is not None
            else f"{log['clients'] - log['complete']} clients incomplete at the deadline"
        )
        drain = log["catchUpDeliveriesPerS"]
        rows.append(
            Row(
                SUITE,
                f"catch-up deliveries/s, {s:g} s burst, log (vs raw broadcast)",
                log["deliveriesPerS"] if drain is None else drain,
                raw,
                "msg/s",
                higher_is_better=True,
                note=f"{log['published']:,} events at {log['publishRate']:,.0f}/s; {catch}; "
                + (
                    "no backlog at the burst's end: the rate over the run"
                    if drain is None
                    else f"backlog {log['backlogAtEnd']:,} at the burst's end"
                )
                + "; "
                + _correctness(log),
            )
        )
        rows.append(
            Row(
                SUITE,
                f"staleness p99, {s:g} s burst, state",
                1000 * state["stalenessP99S"],
                None,
                "ms",
                note=f"max {1000 * state['stalenessMaxS']:.0f} ms; " + _correctness(state),
            )
        )
        rows.append(
            Row(
                SUITE,
                f"ping p99, {s:g} s burst (worse mode)",
                max(r["pingP99Ms"] for r in both),
                None,
                "ms",
                "≤ 250 ms",
                target_value=250.0,
                note=f"log {log['pingP99Ms']:.0f} ms, state {state['pingP99Ms']:.0f} ms; "
                f"unanswered {log['pingsUnanswered'] + state['pingsUnanswered']}",
            )
        )
        rows.append(
            Row(
                SUITE,
                f"longest silence, {s:g} s burst (worse mode)",
                max(r["longestSilenceS"] for r in both),
                None,
                "s",
                "≤ 1 s",
                target_value=1.0,
                note=f"log {log['longestSilenceS']:.2f} s, state {state['longestSilenceS']:.2f} s",
            )
        )
    return rows


if __name__ == "__main__":
    import sys

    from bench import format_table

    print(format_table(run(quick="--quick" in sys.argv)))
