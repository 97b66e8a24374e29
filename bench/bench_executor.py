"""Executor overhead: per agent (1,000 no-op agents) and per ``ctx.progress()`` call.

Each figure sits beside the least asyncio itself does for the same work, in this run, on a loop
in its own thread as the engine's is: 1,000 no-op tasks gathered (async fan-out), awaited one
after the other (chain), or 1,000 no-ops sent to a ``ThreadPoolExecutor`` of the engine's size
with ``run_in_executor`` (sync fan-out); and an empty Python loop calling a no-op method 100,000
times for ``ctx.progress()``. The emitter delivers to a list (the engine's own cost; the
publisher's is measured by its own suite). Runs of zmqmon and its baseline alternate, best of
three each, so that a slow spell of the machine does not land on one side only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from bench import Row
from zmqmon.core.emitter import EventEmitter
from zmqmon.services.executor import Agent, AgentContext, Workflow, WorkflowEngine


async def _noop_async(ctx: AgentContext | None = None) -> None:
    return None  # (an agent, and without a context the baseline's own task)


def _noop_sync(ctx: AgentContext | None = None) -> None:
    return None


class _Sink:
    def progress(self, percent: float, message: str | None = None) -> None:
        return None


class _BareLoop:
    """The baseline: asyncio alone, on a loop in its own thread (as the engine's is)."""

    def __init__(self, workers: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        asyncio.run_coroutine_threadsafe(make(), self.loop).result(120)

    async def fan_out(self, n: int) -> None:
        await asyncio.gather(*(asyncio.create_task(_noop_async()) for _ in range(n)))

    async def chain(self, n: int) -> None:
        for _ in range(n):
            await asyncio.create_task(_noop_async())

    async def threads(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, _noop_sync) for _ in range(n)))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        self.pool.shutdown()


def _per_agent(
    engine: WorkflowEngine, fn: Any, n: int, chain: bool, bare: Callable[[], None]
) -> tuple[float, float]:
    """(zmqmon, baseline) µs per agent: best of three alternating runs each."""
    agents = [Agent(f"a{i}", fn, depends_on=[f"a{i - 1}"] if chain and i else []) for i in range(n)]
    wf = Workflow("bench", agents)
    best = base = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run = engine.submit(wf)
        run.join(120)
        best = min(best, time.perf_counter() - t0)
        assert run.status == "completed"
        t0 = time.perf_counter()
        bare()
        base = min(base, time.perf_counter() - t0)
    return best / n * 1e6, base / n * 1e6


def run(quick: bool) -> list[Row]:
    n = 200 if quick else 1000
    calls = 10_000 if quick else 100_000
    events: list[dict[str, Any]] = []
    rows: list[Row] = []
    workers = 8
    engine = WorkflowEngine(EventEmitter(events.append), max_workers=workers)
    bare = _BareLoop(workers)
    try:
        for label, fn, chain, bare_work, what in (
            ("async no-op agents, fan-out", _noop_async, False, bare.fan_out, "gathered tasks"),
            ("async no-op agents, chain", _noop_async, True, bare.chain, "awaited tasks"),
            ("sync no-op agents, fan-out", _noop_sync, False, bare.threads, "run_in_executor"),
        ):
            events.clear()
            us, base = _per_agent(engine, fn, n, chain, partial(bare.run, partial(bare_work, n)))
            rows.append(
                Row(
                    "executor",
                    f"{label} ({n})",
                    us,
                    base,
                    "µs/agent",
                    target="< 50 µs/agent",
                    target_value=50.0,
                    note=f"baseline: bare asyncio, {n} {what}"
                    + ("" if us < 50 else "; over the 50 µs target"),
                )
            )

        def chatty(ctx: AgentContext) -> None:
            for i in range(calls):
                ctx.progress(i / calls * 100)

        timings: list[float] = []

        def timed(ctx: AgentContext) -> None:
            t = time.perf_counter()
            chatty(ctx)
            timings.append(time.perf_counter() - t)

        events.clear()
        engine.submit(Workflow("progress", [Agent("p", timed)])).join(60)
        sent = sum(1 for e in events if e["type"] == "agent:progress")
        sink = _Sink()
        t0 = time.perf_counter()
        for i in range(calls):
            sink.progress(i / calls * 100)
        baseline = (time.perf_counter() - t0) / calls * 1e6
        per_call = timings[0] / calls * 1e6
        rows.append(
            Row(
                "executor",
                f"ctx.progress() x{calls:,}",
                per_call,
                baseline,
                "µs/call",
                target="< 1 µs/call",
                target_value=1.0,
                note=f"{sent} agent:progress events sent for {calls:,} calls (coalesced at 50 ms)",
            )
        )
    finally:
        engine.close()
        bare.close()
    return rows
