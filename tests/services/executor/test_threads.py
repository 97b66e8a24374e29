"""AgentThreads: daemon threads, at most max_workers counted, a call given up on frees its slot and
its late outcome is dropped. Driven from a real asyncio loop; waits poll, no fixed sleeps."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from tests.conftest import wait_for
from zmqmon.services.executor.threads import AgentThreads, Outcome

pytestmark = pytest.mark.timeout(30)


async def test_outcomes_of_returns_and_of_any_base_exception() -> None:
    threads = AgentThreads(2)

    def fail(exc: BaseException) -> None:
        raise exc

    assert await threads.call(lambda x: x * 2, 21) == Outcome(True, 42)
    for exc in (ValueError("v"), SystemExit(3), KeyboardInterrupt(), StopIteration()):
        outcome = await threads.call(fail, exc)
        assert not outcome.ok and outcome.value is exc
    threads.close()


async def test_at_most_max_workers_run_at_once_on_daemon_threads() -> None:
    threads = AgentThreads(3)
    lock = threading.Lock()
    now = peak = 0
    release = threading.Event()
    seen: list[threading.Thread] = []

    def work(_: Any) -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
            seen.append(threading.current_thread())
        release.wait(10)
        with lock:
            now -= 1

    calls = [asyncio.ensure_future(threads.call(work, None)) for _ in range(10)]
    await asyncio.to_thread(wait_for, lambda: now == 3)
    assert threads.running == 3
    release.set()
    assert all(o.ok for o in await asyncio.gather(*calls))
    assert peak == 3
    assert all(t.daemon for t in seen)
    assert len(set(seen)) <= 6  # threads are reused, not one per call
    threads.close()


async def test_outcomes_that_finish_together_wake_the_loop_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each wake-up of the loop from a thread is a system call: calls that finish while the
    loop is busy are settled together, each with its own outcome."""
    threads = AgentThreads(4)
    loop = asyncio.get_running_loop()
    wakeups = 0
    real = loop.call_soon_threadsafe

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal wakeups
        wakeups += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counting)
    calls = [asyncio.ensure_future(threads.call(lambda x: x * 2, i)) for i in range(50)]
    await asyncio.sleep(0)  # every call queued (the futures' first step)
    # The loop is kept busy (blocked here) until every call has finished on its thread and
    # handed its outcome back. (`running` alone could read 0 between two calls of a thread.)
    wait_for(lambda: len(threads._settling.get(loop, ())) == 50)
    assert not any(c.done() for c in calls)
    assert [o.value for o in await asyncio.gather(*calls)] == [2 * i for i in range(50)]
    assert wakeups == 1
    threads.close()


async def test_a_call_given_up_on_frees_its_slot_and_its_outcome_is_dropped() -> None:
    threads = AgentThreads(1)
    release = threading.Event()
    started = threading.Event()
    ended = threading.Event()

    def stuck(_: Any) -> str:
        started.set()
        release.wait(10)
        ended.set()
        return "late"

    first = asyncio.ensure_future(threads.call(stuck, None, label="the stuck one"))
    await asyncio.to_thread(started.wait, 10)
    queued_ran = threading.Event()
    queued = asyncio.ensure_future(threads.call(lambda _: queued_ran.set(), None))
    await asyncio.sleep(0)  # queued behind the stuck call: one slot
    assert not queued_ran.is_set()
    first.cancel()  # the engine gives up (timeout, cancel)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await queued).ok and queued_ran.is_set()  # the slot went to the next call
    assert threads.abandoned == 1 and threads.running == 0
    release.set()
    await asyncio.to_thread(ended.wait, 10)
    await asyncio.to_thread(wait_for, lambda: threads.abandoned == 0)
    threads.close()


async def test_a_call_given_up_on_before_it_started_never_runs() -> None:
    threads = AgentThreads(1)
    release = threading.Event()
    ran = threading.Event()
    blocker = asyncio.ensure_future(threads.call(lambda _: release.wait(10), None))
    never = asyncio.ensure_future(threads.call(lambda _: ran.set(), None))
    await asyncio.to_thread(wait_for, lambda: threads.running == 1)
    never.cancel()
    with pytest.raises(asyncio.CancelledError):
        await never
    release.set()
    assert (await blocker).ok
    assert (await threads.call(lambda x: x, 7)).value == 7  # served after the skipped one
    assert not ran.is_set()
    threads.close()
    with pytest.raises(RuntimeError, match="closed"):
        await threads.call(lambda x: x, 1)


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AgentThreads(0)
