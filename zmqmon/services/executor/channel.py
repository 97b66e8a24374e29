"""The ZeroMQ channel between a service and the Dask workers running its agents.

Why ZeroMQ and not Dask's own events — measured on this 2-core machine, in one run, with
``python -m bench dask`` (two worker processes, four tasks flooding updates; two runs):

* progress reaching the service: 24–58k updates/s through this channel against 21–42k/s through
  ``Worker.log_event`` + ``Client.subscribe_topic`` (1.15–1.4×);
* a cancel reaching a running task: ~1.0 ms median against ~1.8–2.3 ms for ``Client.run`` on its
  worker (an ``Event`` polled by the task would cost a scheduler round trip per look);
* what the rest of the cluster pays: no-op tasks submitted during such a flood took 0.7× as long
  with the updates on this channel as with them on ``log_event``, whose every message passes the
  scheduler — the one process every task already waits on — and is kept in its event log.

(``distributed.Pub``/``Sub`` are gone from recent releases.) So the channel wins on each count,
most where it matters at scale: it keeps progress off the scheduler. Its price: the workers must
reach the service's channel port (``--dask-channel``, ``--dask-advertise``).

Frames, worker → service (a DEALER per worker process, :mod:`.dask_task`):

* ``[b"h", worker_address]`` — hello, on connect;
* ``[b"p", token, json [percent, message]]`` — one coalesced progress update of the attempt
  ``token`` (the task's Dask key: random, so a stranger on the port cannot aim at an agent).

Service → worker: ``[b"c", token]`` — cancel that attempt (its ``ctx.cancelled`` turns true; an
async agent is cancelled at its next ``await``). Cancels go to every worker that said hello (they
are rare), and the latest are replayed to a worker that says hello later, so a task that starts
after its cancel was sent still sees it. Nothing here blocks: a full queue drops progress (the
last value of an agent travels with its result) and a cancel to a vanished worker is lost with it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from typing import Any, Final

import zmq
import zmq.asyncio

from zmqmon.services.executor.outcomes import Report

__all__ = ["CANCEL", "HELLO", "PROGRESS", "AgentChannel", "decode_progress", "encode_progress"]

log = logging.getLogger(__name__)

HELLO: Final = b"h"
PROGRESS: Final = b"p"
CANCEL: Final = b"c"
#: cancels remembered for workers that connect later
RECENT_CANCELS: Final = 1024
#: messages handled per loop turn, at most
_BATCH: Final = 500


def encode_progress(value: int, message: str | None) -> bytes:
    """The payload of one progress frame."""
    return json.dumps([value, message]).encode()


def decode_progress(payload: bytes) -> tuple[int, str | None] | None:
    """``(percent 0–100, message)`` from a progress frame, or None if it is not one."""
    try:
        value, message = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if type(value) is not int or not 0 <= value <= 100:
        return None
    if message is not None and not isinstance(message, str):
        return None
    return value, message


class AgentChannel:
    """The service's end: a ROUTER on the engine's loop. See the module docstring.

    ``bind`` is the endpoint to bind (port 0: a free one); ``advertise`` what workers connect to
    (default: the bound endpoint). :attr:`endpoint` is that address once started.
    """

    def __init__(self, bind: str, advertise: str | None = None) -> None:
        self._bind = bind
        self._advertise = advertise
        self.endpoint = ""
        self._context: zmq.asyncio.Context | None = None
        self._router: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: dict[bytes, Report] = {}
        self._peers: dict[bytes, str] = {}
        self._recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        #: progress frames received, and dropped (unknown token, malformed)
        self.received = 0
        self.dropped = 0

    async def start(self) -> None:
        """Bind, on the engine's loop."""
        self._loop = asyncio.get_running_loop()
        self._context = zmq.asyncio.Context()
        router = self._router = self._context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.SNDHWM, 10_000)
        router.setsockopt(zmq.RCVHWM, 100_000)
        try:
            router.bind(self._bind)
        except zmq.ZMQError:
            router.close(0)
            self._context.term()
            raise
        bound = str(router.getsockopt_string(zmq.LAST_ENDPOINT))
        self.endpoint = self._advertise or bound
        self._reader = asyncio.create_task(self._read(), name="zmqmon-dask-channel")

    def expect(self, token: str, report: Report) -> None:
        """Deliver the progress of attempt ``token`` to ``report`` (on the engine's loop)."""
        self._reports[token.encode()] = report

    def forget(self, token: str) -> None:
        """Drop whatever ``token`` still sends."""
        self._reports.pop(token.encode(), None)

    def cancel(self, token: str) -> None:
        """Tell the workers to stop attempt ``token``; from any thread."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs any more
            loop.call_soon_threadsafe(self._cancel_now, token.encode())

    def _cancel_now(self, token: bytes) -> None:
        self._recent[token] = None
        while len(self._recent) > RECENT_CANCELS:
            self._recent.popitem(last=False)
        for peer in list(self._peers):
            self._send(peer, token)

    def _send(self, peer: bytes, token: bytes) -> None:
        router = self._router
        if router is None:
            return
        with contextlib.suppress(zmq.ZMQError):  # full or gone: never block the engine's loop
            router.send_multipart([peer, CANCEL, token], flags=zmq.NOBLOCK)

    async def _read(self) -> None:
        router = self._router
        while True:
            try:
                frames = await router.recv_multipart()
            except (zmq.ZMQError, asyncio.CancelledError):
                return
            self._safely(frames)
            # Drain what is queued without a loop turn per message (a turn costs more than the
            # message: measured), a bounded batch so that the loop still gets its turns.
            for _ in range(_BATCH):
                try:
                    frames = router.recv_multipart(flags=zmq.NOBLOCK).result()
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    return
                self._safely(frames)

    def _safely(self, frames: list[bytes]) -> None:
        try:
            self._handle(frames)
        except Exception:  # a bug or a stranger's bytes must not stop the channel
            log.exception("dask channel: could not handle a message")

    def _handle(self, frames: list[bytes]) -> None:
        if len(frames) < 2:
            self.dropped += 1
            return
        peer, kind = frames[0], frames[1]
        if kind == PROGRESS and len(frames) == 4:
            report = self._reports.get(frames[2])
            update = decode_progress(frames[3])
            if report is None or update is None:
                self.dropped += 1
                return
            self.received += 1
            report(*update)
        elif kind == HELLO:
            self._peers[peer] = frames[2].decode(errors="replace") if len(frames) > 2 else ""
            for token in self._recent:
                self._send(peer, token)
        else:
            self.dropped += 1

    def forget_worker(self, address: str) -> None:
        """A worker left the cluster: stop sending to it."""
        for peer, worker in list(self._peers.items()):
            if worker == address:
                del self._peers[peer]

    async def aclose(self) -> None:
        """Stop reading and unbind."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._router is not None:
            self._router.close(0)
            self._router = None
        if self._context is not None:
            self._context.term()
            self._context = None
