"""The Python subscribers under a burst they cannot keep up with (contract §3, §5).

The consumer does not read at all while the service floods (the slowest consumer there is), so
the publisher drops for it at its high-water mark whatever this machine's speed. Afterwards:

* ``log`` mode: every event of every execution exactly once, in order — the backlog read from
  the store in pages;
* ``state`` mode: the exact final state of every execution, the backlog replaced by snapshots;
* either way memory stayed bounded (measured RSS), and the publisher was never declared dead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.overload.conftest import BurstService, rss_mb
from zmqmon.core.delivery import Delivery, Snapshot
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.shells.async_subscriber import AsyncSubscriber
from zmqmon.shells.client import StateClient
from zmqmon.shells.subscriber import Subscriber

EXECUTIONS = 10
#: what the subscriber may add while the burst outruns it: its ZeroMQ queue (5,000 messages),
#: the repair core's buffer and one page (15 MB measured here), whatever the burst's length
RSS_BOUND_MB = 50.0


class Consumer:
    """Folds deliveries per execution the way a consumer of each mode would."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seqs: dict[str, list[int]] = {}
        self.states: dict[str, ExecutionState] = {}
        self.snapshots = 0

    def take(self, item: Delivery) -> None:
        eid = item.execution_id
        if isinstance(item, Snapshot):
            assert self.mode == "state", "log mode delivers events only"
            self.snapshots += 1
            self.states[eid] = item.state
            return
        self.seqs.setdefault(eid, []).append(item.seq)
        current = self.states.get(eid)
        if current is not None:
            assert item.seq == current.last_seq + 1, f"{eid}: {item.seq} after {current.last_seq}"
        self.states[eid] = apply_event(current, item)

    def done(self, last: dict[str, int]) -> bool:
        return all(
            (st := self.states.get(eid)) is not None and st.last_seq >= n for eid, n in last.items()
        )


def check(consumer: Consumer, last: dict[str, int], service: BurstService, stats: Any) -> None:
    with StateClient(service.endpoints["state"]) as client:
        for eid, n in last.items():
            assert consumer.states[eid] == client.snapshot(eid)
            if consumer.mode == "log":
                assert consumer.seqs[eid] == list(range(1, n + 1))  # every event, once, in order
    if consumer.mode == "log":
        assert stats.fetched > 0, "the burst was meant to outrun the subscriber"
    else:
        assert consumer.snapshots > 0 and stats.resnapshots > 0


@pytest.mark.parametrize("mode", ["log", "state"])
def test_subscriber_that_fell_behind_a_burst(burst_service: BurstService, mode: str) -> None:
    changes: list[bool] = []
    sub = Subscriber(
        burst_service.endpoints["events"],
        burst_service.endpoints["state"],
        mode=mode,  # type: ignore[arg-type]
        max_lag=200,
        on_publisher_change=changes.append,
    )
    try:
        sub.subscribe_topic("exec/")
        wait_for(lambda: sub.publisher_alive, message="a heartbeat")
        before = rss_mb()
        last = burst_service.burst(1.5, EXECUTIONS)  # nothing is read meanwhile
        consumer = Consumer(mode)
        peak = rss_mb()
        for n in range(10**7):
            item = sub.recv(timeout=10)
            assert item is not None, "the subscriber went silent"
            consumer.take(item)
            if n % 2000 == 0:
                peak = max(peak, rss_mb())
            if consumer.done(last):
                break
        check(consumer, last, burst_service, sub.stats)
        assert peak - before < RSS_BOUND_MB
        assert False not in changes  # the flood never made the publisher look dead
    finally:
        sub.close()


@pytest.mark.parametrize("mode", ["log", "state"])
def test_async_subscriber_that_fell_behind_a_burst(burst_service: BurstService, mode: str) -> None:
    async def main() -> None:
        changes: list[bool] = []
        sub = AsyncSubscriber(
            burst_service.endpoints["events"],
            burst_service.endpoints["state"],
            mode=mode,  # type: ignore[arg-type]
            max_lag=200,
            on_publisher_change=changes.append,
        )
        try:
            sub.subscribe_topic("exec/")
            for _ in range(500):
                if sub.publisher_alive:
                    break
                await asyncio.sleep(0.01)
            before = rss_mb()
            last = await asyncio.to_thread(burst_service.burst, 1.5, EXECUTIONS)
            consumer = Consumer(mode)
            peak = rss_mb()
            n = 0
            async for item in sub:
                consumer.take(item)
                n += 1
                if n % 2000 == 0:
                    peak = max(peak, rss_mb())
                if consumer.done(last):
                    break
            check(consumer, last, burst_service, sub.stats)
            assert peak - before < RSS_BOUND_MB
            assert False not in changes
        finally:
            sub.close()

    asyncio.run(asyncio.wait_for(main(), 60))
