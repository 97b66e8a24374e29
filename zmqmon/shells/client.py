"""State-service clients: :class:`StateClient` (sync) and :class:`AsyncStateClient` (asyncio).

Same method names in both faces; each request is a pure :class:`~zmqmon.core.calls.Call` (what to
send, how to read the reply), so the faces only move frames. A DEALER socket sends one JSON frame
per request carrying an ``id``; replies are matched by it, so a late answer to an earlier,
timed-out request is never taken for another.

* :class:`StateClient` is thread-safe and makes one request at a time (a lock); after a timeout
  its socket is replaced, so nothing queued for a dead peer is sent later.
* :class:`AsyncStateClient` keeps many requests in flight on one socket (as a relay needs: one
  slow fetch must not hold back others); a reader task hands each reply to its waiter.

``curve``: the service's CURVE public key and this client's key pair
(:class:`~zmqmon.shells.curve.CurveClient`), when the service requires them.

Every call raises :class:`~zmqmon.errors.ServiceUnavailableError` after ``timeout`` seconds without
a reply, and the service's refusals as :class:`~zmqmon.errors.ServiceError` subclasses
(``NotFoundError``, ``ConflictError``, ``BadRequestError``, ``InternalError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from zmqmon.config import DEFAULT_STATE
from zmqmon.core import calls
from zmqmon.core.calls import Call
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState
from zmqmon.core.workflow import WorkflowDefinition
from zmqmon.errors import ServiceUnavailableError
from zmqmon.shells.curve import CurveClient

__all__ = ["AsyncStateClient", "StateClient"]

T = TypeVar("T")


def _dealer(context: zmq.Context[Any], endpoint: str, curve: CurveClient | None) -> Any:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    sock.connect(endpoint)
    return sock


def _unanswered(endpoint: str, op: str, timeout: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"state service {endpoint} did not answer {op} within {timeout}s"
    )


class StateClient:
    """Sync client of the state service (contract §4). Thread-safe (one request at a time)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_STATE,
        *,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.curve = curve
        self._context = context or zmq.Context.instance()
        self._socket = _dealer(self._context, endpoint, curve)
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False

    def call(self, call: Call[T]) -> T:
        """Make one request and read its reply."""
        with self._lock:
            if self._closed:
                raise ServiceUnavailableError("client is closed")
            self._next_id += 1
            rid = self._next_id
            self._socket.send(call.encode(rid))
            deadline = time.monotonic() + self.timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._socket.poll(int(remaining * 1000) + 1):
                    if time.monotonic() < deadline:
                        continue
                    self._socket.close(0)
                    self._socket = _dealer(self._context, self.endpoint, self.curve)
                    raise _unanswered(self.endpoint, call.op, self.timeout)
                reply = self._socket.recv()
                if calls.reply_id(reply) == rid:
                    return call.result(reply)
                # else: a stale reply to an earlier request; drop it.

    def ping(self) -> str:
        """The service's version."""
        return self.call(calls.ping())

    def snapshot(self, execution_id: str) -> ExecutionState:
        """An execution's state; ``NotFoundError`` if unknown."""
        return self.call(calls.snapshot(execution_id))

    def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[Event], int]:
        """(events with seq > ``after_seq``, at most ``limit``; the execution's lastSeq)."""
        return self.call(calls.events(execution_id, after_seq, limit))

    def executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionState]:
        """Execution states, newest first (``user_id``: one user's; ``before``: older than that
        execution, for the next page)."""
        return self.call(
            calls.executions(
                status=status,
                workflow_id=workflow_id,
                user_id=user_id,
                before=before,
                limit=limit,
            )
        )

    def create_workflow(self, definition: Mapping[str, Any] | WorkflowDefinition) -> str:
        """Store a workflow definition; returns its ``workflowId``."""
        return self.call(calls.create_workflow(definition))

    def workflows(self) -> list[dict[str, Any]]:
        """Stored workflows."""
        return self.call(calls.workflows())

    def execute(
        self,
        workflow_id: str | None = None,
        *,
        workflow: Mapping[str, Any] | WorkflowDefinition | None = None,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> str:
        """Run a stored workflow (or an inline definition); returns the ``executionId``."""
        return self.call(
            calls.execute(workflow_id, workflow=workflow, inputs=inputs, user_id=user_id)
        )

    def cancel(self, execution_id: str, reason: str | None = None) -> None:
        """Cancel a running execution; ``ConflictError`` if it already finished."""
        self.call(calls.cancel(execution_id, reason))

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._socket.close(0)

    def __enter__(self) -> StateClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStateClient:
    """The asyncio face of :class:`StateClient`: same names, ``async``; many requests in flight.

    Bound to the event loop that makes its first request.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_STATE,
        *,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        if context is None:
            self._context: zmq.asyncio.Context = zmq.asyncio.Context.instance()
        elif isinstance(context, zmq.asyncio.Context):
            self._context = context
        else:
            self._context = zmq.asyncio.Context.shadow(context)
        self._socket = _dealer(self._context, endpoint, curve)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Requests awaiting their reply."""
        return len(self._waiting)

    async def _read(self) -> None:
        while True:
            frames = await self._socket.recv_multipart()
            fut = self._waiting.get(_as_id(calls.reply_id(frames[-1])))
            if fut is not None and not fut.done():
                fut.set_result(frames[-1])
            # else: a stale reply (its waiter timed out) or not one of ours: dropped

    async def call(self, call: Call[T]) -> T:
        """Make one request and read its reply (other requests may be in flight meanwhile)."""
        if self._closed:
            raise ServiceUnavailableError("client is closed")
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read())
        rid = next(self._ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await self._socket.send(call.encode(rid))
            reply = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise _unanswered(self.endpoint, call.op, self.timeout) from None
        except zmq.ZMQError as exc:
            raise ServiceUnavailableError(f"state service {self.endpoint}: {exc}") from exc
        finally:
            self._waiting.pop(rid, None)
        return call.result(reply)

    async def ping(self) -> str:
        """The service's version."""
        return await self.call(calls.ping())

    async def snapshot(self, execution_id: str) -> ExecutionState:
        """An execution's state; ``NotFoundError`` if unknown."""
        return await self.call(calls.snapshot(execution_id))

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[Event], int]:
        """(events with seq > ``after_seq``, at most ``limit``; the execution's lastSeq)."""
        return await self.call(calls.events(execution_id, after_seq, limit))

    async def executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionState]:
        """Execution states, newest first (``user_id``: one user's; ``before``: older than that
        execution, for the next page)."""
        return await self.call(
            calls.executions(
                status=status,
                workflow_id=workflow_id,
                user_id=user_id,
                before=before,
                limit=limit,
            )
        )

    async def create_workflow(self, definition: Mapping[str, Any] | WorkflowDefinition) -> str:
        """Store a workflow definition; returns its ``workflowId``."""
        return await self.call(calls.create_workflow(definition))

    async def workflows(self) -> list[dict[str, Any]]:
        """Stored workflows."""
        return await self.call(calls.workflows())

    async def execute(
        self,
        workflow_id: str | None = None,
        *,
        workflow: Mapping[str, Any] | WorkflowDefinition | None = None,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> str:
        """Run a stored workflow (or an inline definition); returns the ``executionId``."""
        return await self.call(
            calls.execute(workflow_id, workflow=workflow, inputs=inputs, user_id=user_id)
        )

    async def cancel(self, execution_id: str, reason: str | None = None) -> None:
        """Cancel a running execution; ``ConflictError`` if it already finished."""
        await self.call(calls.cancel(execution_id, reason))

    def close(self) -> None:
        """Close the socket; requests in flight fail with ``ServiceUnavailableError``."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ServiceUnavailableError("client is closed"))
        with contextlib.suppress(zmq.ZMQError):
            self._socket.close(0)

    async def __aenter__(self) -> AsyncStateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _as_id(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
