"""``zmqmon.track`` overhead: ``agent.iter`` on a tight loop, beside the bare loop and tqdm.

The same loop of N iterations (``for _ in range(N): pass``), timed in this run three ways, best
of a few rounds each:

* bare — the loop alone;
* tqdm — ``for _ in tqdm(range(N))`` writing to an in-memory file (tqdm's own overhead, with the
  default 0.1 s redraw interval);
* ``agent.iter`` — ``for _ in agent.iter(range(N))`` inside a run reporting to an embedded
  service (the reporter thread, the coalesced progress events and the service all run).

Reported: each one's overhead per iteration over the bare loop; the target is ``agent.iter`` no
dearer than tqdm (ratio ≤ 1 against tqdm's overhead).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench import Row

SUITE = "track"


def _best(loop: Callable[[], None], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        loop()
        best = min(best, time.perf_counter() - t0)
    return best


def _consume(iterable: Iterable[Any]) -> None:
    for _ in iterable:
        pass


def run(quick: bool) -> list[Row]:
    import zmqmon

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is in the dev extra
        tqdm = None
    n = 200_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    bare = _best(lambda: _consume(range(n)), rounds)
    rows: list[Row] = []
    with zmqmon.track("bench", tqdm=False) as tracked:
        counter = [0]

        def with_iter() -> None:
            counter[0] += 1
            with tracked.agent(f"loop-{counter[0]}") as agent:
                _consume(agent.iter(range(n)))

        ours = _best(with_iter, rounds)
    tracked.flush(10)
    sent = sum(1 for e in tracked.events if e["type"] == "agent:progress")
    per = (ours - bare) / n * 1e9
    if tqdm is not None:
        theirs = _best(lambda: _consume(tqdm(range(n), file=io.StringIO())), rounds)
        tqdm_per = (theirs - bare) / n * 1e9
        rows.append(
            Row(
                SUITE,
                f"agent.iter overhead, {n:,} iterations (vs tqdm)",
                per,
                tqdm_per,
                "ns/iter",
                target="≤ tqdm's",
                target_ratio=1.0,
                note=f"bare loop {bare / n * 1e9:.1f} ns/iter; {sent} agent:progress events "
                f"sent for {rounds} loops of {n:,}",
            )
        )
    rows.append(
        Row(
            SUITE,
            f"agent.iter loop, {n:,} iterations (vs bare loop)",
            ours / n * 1e9,
            bare / n * 1e9,
            "ns/iter",
        )
    )
    return rows
