"""The bridge's ZeroMQ side: one SUB socket with refcounted prefixes, and the state service.

:class:`Upstream` holds a ZMQ subscription to a prefix only while some client wants it (the
first :meth:`Upstream.acquire` subscribes, the last :meth:`Upstream.release` unsubscribes), plus
``sys/heartbeat`` always, so that liveness and lost tails are noticed.

:class:`StateSource` is what the bridge asks of the state service (snapshot, stored events,
recent executions), as plain wire dicts; :class:`DealerStateSource` speaks the contract's
request/reply codec over a ``zmq.asyncio`` DEALER (REQ-compatible envelope).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq
import zmq.asyncio

from zmqmon.core.requests import encode_request, parse_reply
from zmqmon.core.wire import HEARTBEAT_TOPIC, loads
from zmqmon.errors import ProtocolError, ServiceUnavailableError, ZmqmonError

__all__ = ["DealerStateSource", "StateSource", "Upstream"]

OnMessage = Callable[[bytes, bytes], None]


class StateSource(Protocol):
    """The state-service operations the bridge needs, answering wire dicts."""

    async def snapshot(self, execution_id: str) -> dict[str, Any]:
        """The execution's state; :class:`~zmqmon.errors.NotFoundError` if unknown."""
        ...

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int]:
        """Stored events with seq > ``after_seq`` and the stored ``lastSeq``."""
        ...

    async def executions(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent execution states, newest first."""
        ...

    def close(self) -> None:
        """Release sockets."""
        ...


class DealerStateSource:
    """:class:`StateSource` over a DEALER; many requests in flight, matched by request id."""

    def __init__(
        self, endpoint: str, context: zmq.asyncio.Context, *, timeout: float = 5.0
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._socket = context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            try:
                rid = loads(frames[-1]).get("id")
                fut = self._waiting.pop(int(rid), None)
            except (ZmqmonError, AttributeError, TypeError, ValueError):
                continue  # not a reply of ours: nobody waits for it
            if fut is None or fut.done():
                continue
            try:
                fut.set_result(parse_reply(frames[-1]))
            except ZmqmonError as exc:  # ``ok: false``: the waiter gets the ServiceError
                fut.set_exception(exc)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request, await its reply (errors raised as :class:`ServiceError`)."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        rid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        # An empty delimiter frame first: the envelope a REQ socket would send.
        await self._socket.send_multipart([b"", encode_request(op, rid, **fields)])
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise ServiceUnavailableError(
                f"state service {self.endpoint} did not answer {op} within {self.timeout}s"
            ) from None
        finally:
            self._waiting.pop(rid, None)

    async def snapshot(self, execution_id: str) -> dict[str, Any]:
        reply = await self.request("snapshot", executionId=execution_id)
        state = reply.get("execution")
        if not isinstance(state, dict):
            raise ProtocolError("snapshot reply without execution")
        return state

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int]:
        reply = await self.request(
            "events", executionId=execution_id, afterSeq=after_seq, limit=limit
        )
        return list(reply.get("events") or []), int(reply.get("lastSeq") or 0)

    async def executions(self, limit: int = 100) -> list[dict[str, Any]]:
        reply = await self.request("executions", limit=limit)
        return list(reply.get("executions") or [])

    def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        self._socket.close(0)


class Upstream:
    """One SUB socket; ``on_message(topic, payload)`` is called for every message received."""

    def __init__(self, endpoint: str, context: zmq.asyncio.Context, on_message: OnMessage) -> None:
        self.endpoint = endpoint
        self._on_message = on_message
        self._socket = context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)  # drop nothing here; repair handles the PUB side
        self._socket.connect(endpoint)
        self._socket.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC)
        self._refs: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.last_heartbeat: float | None = None  # monotonic time of the last heartbeat

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

    def alive(self, within: float = 3.0) -> bool:
        """A heartbeat was seen in the last ``within`` seconds."""
        seen = self.last_heartbeat
        return seen is not None and time.monotonic() - seen < within

    def start(self) -> None:
        """Start the reader task on the running loop."""
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        sock = self._socket
        sync: zmq.Socket[bytes] = zmq.Socket.shadow(
            sock.underlying
        )  # plain non-blocking reads of the same socket
        handle = self._on_message
        while True:
            frames = await sock.recv_multipart(copy=True)
            if len(frames) != 2:
                continue
            if frames[0] == HEARTBEAT_TOPIC:
                self.last_heartbeat = time.monotonic()
            handle(frames[0], frames[1])
            # Drain what is already queued without yielding per message (cheaper), but give
            # the loop a turn every batch so clients' messages are served too.
            budget = 256 * 1024  # bytes per turn: writes to clients get the loop between batches
            for _ in range(256):
                try:
                    frames = sync.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) != 2:
                    continue
                budget -= len(frames[1])
                if frames[0] == HEARTBEAT_TOPIC:
                    self.last_heartbeat = time.monotonic()
                handle(frames[0], frames[1])
                if budget <= 0:
                    break

    async def close(self) -> None:
        """Stop reading and close the socket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._socket.close(0)
