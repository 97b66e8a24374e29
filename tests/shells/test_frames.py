"""read_batch: [topic, payload] messages off a real SUB socket, malformed ones counted whole.

The sockets talk over ``inproc://``: a send there is in the reader's queue when it returns, so
each test reads a queue that holds every message it sent (over TCP only a sleep could say so).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from tests.conftest import wait_for
from zmqmon.shells.frames import read_batch

_names = itertools.count()


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """A PUB and a SUB subscribed to everything, the subscription live, the queue empty."""
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for s in (pub, sub):
        s.setsockopt(zmq.LINGER, 0)
    endpoint = f"inproc://test-frames-{next(_names)}"
    pub.bind(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)

    def live() -> bool:  # a PUB drops until it has seen the subscription: probe until one lands
        pub.send_multipart([b"probe", b"x"])
        return read_batch(sub.recv, 1000).read > 0

    wait_for(live, message="the subscription is live")
    try:
        yield pub, sub
    finally:
        pub.close()
        sub.close()


def test_well_formed_and_malformed_messages_in_order(pair: tuple[Any, Any]) -> None:
    pub, sub = pair
    for frames in (
        [b"exec/a/x", b"1"],
        [b"exec/one-frame"],
        [b"exec/a/x", b"2", b"extra", b"extra"],
        [b"exec/a/x", b"3", b"extra"],
        [b"exec/a/x", b"4"],
    ):
        pub.send_multipart(frames)
    got = read_batch(sub.recv, 100)
    assert got.messages == [(b"exec/a/x", b"1"), (b"exec/a/x", b"4")]
    assert got.malformed == [1, 4, 3]  # each drained whole: the next message reads clean
    assert got.read == 5 and not got.full  # it stopped at the empty queue
    assert read_batch(sub.recv, 100).read == 0


def test_stops_at_the_count_limit_and_at_the_byte_budget(pair: tuple[Any, Any]) -> None:
    pub, sub = pair
    for i in range(6):
        pub.send_multipart([b"t", bytes([65 + i]) * 100])
    first = read_batch(sub.recv, 2)
    assert [p[:1] for _, p in first.messages] == [b"A", b"B"]
    assert first.read == 2 and first.full
    # 150 bytes: the second payload takes the budget past it, and the batch ends there
    second = read_batch(sub.recv, 100, max_bytes=150)
    assert [p[:1] for _, p in second.messages] == [b"C", b"D"] and second.full
    rest = read_batch(sub.recv, 100)
    assert [p[:1] for _, p in rest.messages] == [b"E", b"F"] and not rest.full
