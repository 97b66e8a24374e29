"""Reading ``[topic, payload]`` messages off a SUB socket, a batch at a time, without blocking.

Shared by the :class:`~zmqmon.shells.subscriber.Subscriber` and the bridge's upstream reader:
both take what is queued in batches (bounded in count, and for the bridge in bytes), then decode
the batch in a pass of its own (each pass keeps its own code and data in the CPU caches).

Frames, not ``recv_multipart``: a frame says whether more follow. Counted by cachegrind with
pyzmq 27, each ``getsockopt(RCVMORE)`` that ``recv_multipart`` makes costs ~8.5k instructions
(it builds its option enum), a Frame ~5.5k, a copying ``recv`` ~0.9k; but a copying ``recv``
cannot tell where a message ends, and a rogue one-frame message would then swallow the next
publisher's event. A message of any other frame count than two is counted, drained whole and
never returned.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import zmq

__all__ = ["Batch", "read_batch"]

_NOBLOCK: Final = int(zmq.NOBLOCK)  # (a plain int: no enum built per call)


@dataclass(slots=True)
class Batch:
    """What one :func:`read_batch` took off the socket."""

    #: the well-formed messages, ``(topic, payload)``, in the order they came
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: messages taken off the socket, well-formed or not
    read: int = 0
    #: the frame count of each malformed message (1, or 3 and more)
    malformed: list[int] = field(default_factory=list)
    #: it stopped at a limit, not at an empty queue: more may be waiting
    full: bool = False


def read_batch(recv: Callable[..., Any], limit: int, max_bytes: int = sys.maxsize) -> Batch:
    """Up to ``limit`` messages, and no more once their payloads reach ``max_bytes``, from
    ``recv`` (a sync socket's ``recv``, or a shadow's: it is called with ``NOBLOCK``)."""
    batch = Batch()
    messages, budget, n = batch.messages, max_bytes, 0
    while n < limit and budget > 0:
        try:
            first = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            break
        n += 1
        if not first.more:
            batch.malformed.append(1)
            continue
        second = recv(_NOBLOCK, copy=False)
        if second.more:  # more than [topic, payload]: drained whole, not of the contract
            frames = 3
            while recv(_NOBLOCK, copy=False).more:
                frames += 1
            batch.malformed.append(frames)
            continue
        payload = second.bytes
        budget -= len(payload)
        messages.append((first.bytes, payload))
    batch.read = n
    batch.full = n >= limit or budget <= 0
    return batch
