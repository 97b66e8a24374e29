"""State-service clients: :class:`StateClient` (sync) and :class:`AsyncStateClient` (asyncio).

Same method names in both faces; the requests and replies are built and read by the pure
:mod:`zmqmon.shells.client_core`. A DEALER socket sends one JSON frame per request with an ``id``;
a reply whose ``id`` is not the one awaited (a late answer to an earlier, timed-out request) is
dropped. After a timeout the socket is replaced, so a late reply can never be taken for the next.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from zmqmon.config import DEFAULT_STATE
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState
from zmqmon.core.workflow import WorkflowDefinition
from zmqmon.errors import ServiceUnavailableError
from zmqmon.shells import client_core as calls
from zmqmon.shells.client_core import Call

__all__ = ["AsyncStateClient", "StateClient"]

T = TypeVar("T")


def _dealer(context: zmq.Context[Any], endpoint: str) -> Any:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


class StateClient:
    """Sync client of the state service (contract §4). Thread-safe (one request at a time).

    Every call raises :class:`~zmqmon.errors.ServiceUnavailableError` after ``timeout`` seconds
    without a reply, and the service's refusals as :class:`~zmqmon.errors.ServiceError` subclasses
    (``NotFoundError``, ``ConflictError``, ``BadRequestError``, ``InternalError``).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_STATE,
        *,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._socket = _dealer(self._context, endpoint)
        self._lock = threading.Lock()
        self._next_id = 0
        self._closed = False

    def _call(self, call: Call[T]) -> T:
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
                    self._socket = _dealer(self._context, self.endpoint)
                    raise ServiceUnavailableError(
                        f"state service {self.endpoint} did not answer {call.op} "
                        f"within {self.timeout}s"
                    )
                reply = self._socket.recv()
                if calls.reply_id(reply) == rid:
                    return call.result(reply)
                # else: a stale reply to an earlier request; drop it.

    def ping(self) -> str:
        """The service's version."""
        return self._call(calls.ping())

    def snapshot(self, execution_id: str) -> ExecutionState:
        """An execution's state; ``NotFoundError`` if unknown."""
        return self._call(calls.snapshot(execution_id))

    def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[Event], int]:
        """(events with seq > ``after_seq``, at most ``limit``; the execution's lastSeq)."""
        return self._call(calls.events(execution_id, after_seq, limit))

    def executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionState]:
        """Execution states, newest first."""
        return self._call(calls.executions(status=status, workflow_id=workflow_id, limit=limit))

    def create_workflow(self, definition: Mapping[str, Any] | WorkflowDefinition) -> str:
        """Store a workflow definition; returns its ``workflowId``."""
        return self._call(calls.create_workflow(definition))

    def workflows(self) -> list[dict[str, Any]]:
        """Stored workflows."""
        return self._call(calls.workflows())

    def execute(
        self,
        workflow_id: str | None = None,
        *,
        workflow: Mapping[str, Any] | WorkflowDefinition | None = None,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> str:
        """Run a stored workflow (or an inline definition); returns the ``executionId``."""
        return self._call(
            calls.execute(workflow_id, workflow=workflow, inputs=inputs, user_id=user_id)
        )

    def cancel(self, execution_id: str, reason: str | None = None) -> None:
        """Cancel a running execution; ``ConflictError`` if it already finished."""
        self._call(calls.cancel(execution_id, reason))

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
    """The asyncio face of :class:`StateClient`: same names, ``async``; one request at a time."""

    def __init__(
        self,
        endpoint: str = DEFAULT_STATE,
        *,
        timeout: float = 5.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        if context is None:
            self._context: zmq.asyncio.Context = zmq.asyncio.Context.instance()
        elif isinstance(context, zmq.asyncio.Context):
            self._context = context
        else:
            self._context = zmq.asyncio.Context.shadow(context)
        self._socket = _dealer(self._context, endpoint)
        self._lock: asyncio.Lock | None = None
        self._next_id = 0
        self._closed = False

    async def _call(self, call: Call[T]) -> T:
        if self._lock is None:  # created lazily: bound to the loop that first uses it
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed:
                raise ServiceUnavailableError("client is closed")
            self._next_id += 1
            rid = self._next_id
            await self._socket.send(call.encode(rid))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._socket.poll(int(remaining * 1000) + 1):
                    if loop.time() < deadline:
                        continue
                    self._socket.close(0)
                    self._socket = _dealer(self._context, self.endpoint)
                    raise ServiceUnavailableError(
                        f"state service {self.endpoint} did not answer {call.op} "
                        f"within {self.timeout}s"
                    )
                reply = await self._socket.recv()
                if calls.reply_id(reply) == rid:
                    return call.result(reply)

    async def ping(self) -> str:
        """The service's version."""
        return await self._call(calls.ping())

    async def snapshot(self, execution_id: str) -> ExecutionState:
        """An execution's state; ``NotFoundError`` if unknown."""
        return await self._call(calls.snapshot(execution_id))

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[Event], int]:
        """(events with seq > ``after_seq``, at most ``limit``; the execution's lastSeq)."""
        return await self._call(calls.events(execution_id, after_seq, limit))

    async def executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        limit: int | None = None,
    ) -> list[ExecutionState]:
        """Execution states, newest first."""
        return await self._call(
            calls.executions(status=status, workflow_id=workflow_id, limit=limit)
        )

    async def create_workflow(self, definition: Mapping[str, Any] | WorkflowDefinition) -> str:
        """Store a workflow definition; returns its ``workflowId``."""
        return await self._call(calls.create_workflow(definition))

    async def workflows(self) -> list[dict[str, Any]]:
        """Stored workflows."""
        return await self._call(calls.workflows())

    async def execute(
        self,
        workflow_id: str | None = None,
        *,
        workflow: Mapping[str, Any] | WorkflowDefinition | None = None,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> str:
        """Run a stored workflow (or an inline definition); returns the ``executionId``."""
        return await self._call(
            calls.execute(workflow_id, workflow=workflow, inputs=inputs, user_id=user_id)
        )

    async def cancel(self, execution_id: str, reason: str | None = None) -> None:
        """Cancel a running execution; ``ConflictError`` if it already finished."""
        await self._call(calls.cancel(execution_id, reason))

    def close(self) -> None:
        """Close the socket."""
        if not self._closed:
            self._closed = True
            self._socket.close(0)

    async def __aenter__(self) -> AsyncStateClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
