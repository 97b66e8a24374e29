"""The Dask channel's two ends without a cluster: progress in, cancels out, strangers dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import wait_for
from zmqmon.services.executor.channel import AgentChannel, decode_progress, encode_progress
from zmqmon.services.executor.dask_task import TaskSpec, WorkerLink, run_agent_task

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def channel() -> Iterator[tuple[AgentChannel, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ch = AgentChannel("tcp://127.0.0.1:0")
    asyncio.run_coroutine_threadsafe(ch.start(), loop).result(5)
    yield ch, loop
    asyncio.run_coroutine_threadsafe(ch.aclose(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_progress_frames_round_trip_and_garbage_is_refused() -> None:
    assert decode_progress(encode_progress(42, "half")) == (42, "half")
    assert decode_progress(encode_progress(0, None)) == (0, None)
    for bad in (b"", b"{", b"[101, null]", b"[-1, null]", b"[true, null]", b"[1.5, null]"):
        assert decode_progress(bad) is None
    assert decode_progress(b"[5, 7]") is None and decode_progress(b"[1]") is None


@given(st.binary(max_size=64))
def test_any_bytes_decode_to_a_valid_update_or_none(payload: bytes) -> None:
    update = decode_progress(payload)
    assert update is None or (0 <= update[0] <= 100 and update[1] in (None, update[1]))


def test_progress_reaches_its_attempt_and_a_cancel_reaches_the_task(
    channel: tuple[AgentChannel, asyncio.AbstractEventLoop],
) -> None:
    ch, loop = channel
    seen: list[tuple[int, str | None]] = []
    loop.call_soon_threadsafe(ch.expect, "t1", lambda v, m: seen.append((v, m)))
    link = WorkerLink(ch.endpoint, "worker-a")
    wait_for(lambda: ch._peers, message="hello")
    link.progress("t1", 10, "a")
    link.progress("unknown", 20, None)  # nobody expects it: dropped
    link.progress("t1", 30, None)
    wait_for(lambda: len(seen) == 2 and ch.dropped == 1)
    assert seen == [(10, "a"), (30, None)]
    cancelled = threading.Event()
    link.on_cancel("t1", cancelled.set)
    ch.cancel("t1")
    assert cancelled.wait(5)
    # a task that starts after its cancel was sent sees it at once
    late = threading.Event()
    link.on_cancel("t1", late.set)
    assert late.is_set()


def test_a_worker_connecting_after_a_cancel_still_gets_it(
    channel: tuple[AgentChannel, asyncio.AbstractEventLoop],
) -> None:
    ch, _ = channel
    ch.cancel("early")
    wait_for(lambda: b"early" in ch._recent)
    link = WorkerLink(ch.endpoint)
    wait_for(lambda: b"early" in link._cancelled, message="the replay on hello")
    seen = threading.Event()
    link.on_cancel("early", seen.set)
    assert seen.is_set()


def test_strangers_bytes_are_dropped_and_the_channel_goes_on(
    channel: tuple[AgentChannel, asyncio.AbstractEventLoop],
) -> None:
    ch, loop = channel
    got: list[int] = []
    loop.call_soon_threadsafe(ch.expect, "t", lambda v, m: got.append(v))
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        rogue = ctx.socket(zmq.DEALER)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(ch.endpoint)
        for frames in ([b"x"], [b"p", b"t"], [b"p", b"t", b"not json"], [b"?", b"t", b"1"]):
            rogue.send_multipart(frames)
        rogue.send_multipart([b"p", b"t", encode_progress(7, None)])
        wait_for(lambda: got == [7])
        assert ch.dropped == 4
    finally:
        ctx.destroy(linger=0)


def test_the_task_runs_an_agent_and_keeps_its_last_unsent_value(
    channel: tuple[AgentChannel, asyncio.AbstractEventLoop],
) -> None:
    ch, loop = channel
    seen: list[int] = []
    loop.call_soon_threadsafe(ch.expect, "tok", lambda v, m: seen.append(v))

    def agent(ctx: Any) -> str:
        for i in range(1, 101):
            ctx.progress(i)
        return "done"

    spec = TaskSpec(
        token="tok",
        channel=ch.endpoint,
        agent_id="a",
        agent_name="A",
        execution_id="e",
        workflow_id="w",
        fn=agent,
        is_async=False,
        params={},
        inputs={},
        results={},
        progress_interval=3600.0,  # only the first report goes out at once
    )
    result = run_agent_task(spec)
    assert result.ok and result.value == "done"
    assert result.last_progress == (100, None)  # travels with the result
    wait_for(lambda: seen == [1])

    def boom(ctx: Any) -> None:
        raise KeyboardInterrupt

    failed = run_agent_task(dataclasses.replace(spec, fn=boom))
    assert (failed.ok, failed.error_type) == (False, "KeyboardInterrupt")
