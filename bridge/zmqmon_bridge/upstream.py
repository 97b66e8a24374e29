"""The bridge's ZeroMQ side: one SUB socket with refcounted prefixes and a bounded queue.

:class:`Upstream` holds a ZMQ subscription to a prefix only while some client wants it (the
first :meth:`Upstream.acquire` subscribes, the last :meth:`Upstream.release` unsubscribes), plus
``sys/heartbeat`` always, so that liveness and lost tails are noticed.

Its receive queue is bounded (``rcvhwm`` messages, and ``rcvbuf`` bytes of the kernel's buffer,
which would otherwise autotune to tens of MB): under a burst faster than the bridge relays,
the publisher drops past it and the store fills the gaps, so the bridge's memory does not grow
with the burst. Messages are read in batches bounded in count and bytes; the loop gets a turn
between batches (pings, health, clients' writes are served during any flood).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

import zmq
import zmq.asyncio

from zmqmon.core.wire import HEARTBEAT_TOPIC
from zmqmon.shells.curve import CurveClient
from zmqmon.shells.frames import read_batch

__all__ = ["RCVHWM", "Upstream"]

#: called with each batch read (``[(topic, payload), …]``, maybe empty) and the time it was read
OnBatch = Callable[[list[tuple[bytes, bytes]], float], None]
RCVHWM: Final = 10_000  # messages queued in the bridge before the publisher drops (then repaired)
RCVBUF: Final = 1024 * 1024  # the kernel's share of that queue (bytes): well under a second
_BATCH: Final = 256  # messages per loop turn ...
_BATCH_BYTES: Final = 256 * 1024  # ... or bytes, whichever comes first


class Upstream:
    """One SUB socket; ``on_batch(messages, now)`` is called with each batch of messages read
    (bounded: ``_BATCH`` messages or ``_BATCH_BYTES``): any batch proves the publisher alive."""

    def __init__(
        self,
        endpoint: str,
        context: zmq.asyncio.Context,
        on_batch: OnBatch,
        *,
        rcvhwm: int = RCVHWM,
        rcvbuf: int = RCVBUF,
        curve: CurveClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._on_batch = on_batch
        self._socket = context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        if rcvbuf > 0:  # 0: the system's (which autotunes to tens of MB on loopback)
            self._socket.setsockopt(zmq.RCVBUF, rcvbuf)
        if curve is not None:
            curve.apply(self._socket)
        self._socket.connect(endpoint)
        self._socket.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
        self._refs: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.last_traffic: float | None = None  # monotonic time of the last message
        self.messages = 0
        self.malformed = 0  # messages that were not two frames: never relayed

    @property
    def refcounts(self) -> dict[str, int]:
        """Prefix → number of holders (what the SUB socket is subscribed to, heartbeat aside)."""
        return dict(self._refs)

    def acquire(self, prefix: str) -> None:
        """Hold a prefix; the first holder subscribes the SUB socket."""
        count = self._refs.get(prefix, 0)
        if count == 0:
            self._socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._refs[prefix] = count + 1

    def release(self, prefix: str) -> None:
        """Drop one hold; the last holder unsubscribes."""
        count = self._refs.get(prefix, 0)
        if count <= 1:
            if count == 1:
                del self._refs[prefix]
                self._socket.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
            return
        self._refs[prefix] = count - 1

    def start(self) -> None:
        """Start the reader task on the running loop."""
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        sock = self._socket
        sync: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)  # non-blocking reads
        recv = sync.recv
        on_batch = self._on_batch
        while True:
            await sock.poll()  # (for POLLIN: a message waits)
            # Drain what is already queued without yielding per message (cheaper), but give
            # the loop a turn every batch so that clients' messages and writes are served too.
            batch = read_batch(recv, _BATCH, _BATCH_BYTES)
            self.malformed += len(batch.malformed)  # not [topic, payload]: never relayed
            self.messages += batch.read
            now = time.monotonic()
            self.last_traffic = now
            on_batch(batch.messages, now)
            if batch.full:
                await asyncio.sleep(0)  # a full batch: let the rest of the loop run

    async def close(self) -> None:
        """Stop reading and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._socket.close(0)
