"""AsyncSubscriber: the asyncio face of :class:`~zmqmon.shells.subscriber.Subscriber`.

Same names and behaviour, ``async`` where I/O happens (``subscribe_execution``, ``recv``,
``async for``), over ``zmq.asyncio`` and :class:`~zmqmon.shells.client.AsyncStateClient`, as
pyzmq layers ``zmq.asyncio`` over ``zmq``. The repair logic is the same pure
:class:`~zmqmon.core.clone.CloneCore`, driven the same way; the requests one poll asks for are
made concurrently (one slow fetch does not hold back another execution's).

The filter methods (``subscribe_workflow``, ``subscribe_topic`` and every ``unsubscribe_*``) are
plain calls that may be made from any task of the loop at any time, also while another task is
awaiting :meth:`AsyncSubscriber.recv`; the events an unsubscribe removes are never delivered
after it returns. One task at a time should iterate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import zmq
import zmq.asyncio

from zmqmon.config import DEFAULT_EVENTS, DEFAULT_STATE
from zmqmon.core.delivery import Delivery, Mode, Request
from zmqmon.core.state import ExecutionState
from zmqmon.shells.client import AsyncStateClient
from zmqmon.shells.curve import CurveClient
from zmqmon.shells.repair import StateClients, answer_async
from zmqmon.shells.subscriber import RCVHWM, STATE_RCVBUF, SubscriberBase, sub_socket

__all__ = ["AsyncSubscriber"]


class AsyncSubscriber(SubscriberBase):
    """asyncio subscriber: ``await recv()`` / ``async for`` yield repaired deliveries.

    Parameters as :class:`~zmqmon.shells.subscriber.Subscriber`; ``context`` may be a
    ``zmq.asyncio.Context`` or a plain one (shadowed).
    """

    def __init__(
        self,
        events: str = DEFAULT_EVENTS,
        state: str | None = DEFAULT_STATE,
        *,
        mode: Mode = "log",
        heartbeat_timeout: float = 3.0,
        context: zmq.Context[Any] | None = None,
        on_publisher_change: Callable[[bool], None] | None = None,
        request_timeout: float = 2.0,
        join_history: int = 1000,
        rcvhwm: int = RCVHWM,
        rcvbuf: int | None = None,
        keep_states: bool = True,
        max_lag: int = 1000,
        max_states: int = 10_000,
        curve: CurveClient | None = None,
    ) -> None:
        super().__init__(
            mode=mode,
            heartbeat_timeout=heartbeat_timeout,
            on_publisher_change=on_publisher_change,
            join_history=join_history,
            keep_states=keep_states,
            max_lag=max_lag,
            max_states=max_states,
        )
        self.events_endpoint = events
        self.state_endpoint = state
        if context is None:
            ctx: zmq.asyncio.Context = zmq.asyncio.Context.instance()
        elif isinstance(context, zmq.asyncio.Context):
            ctx = context
        else:
            ctx = zmq.asyncio.Context.shadow(context)
        if rcvbuf is None and mode == "state":
            rcvbuf = STATE_RCVBUF
        self._asocket: Any = sub_socket(ctx, events, rcvhwm, rcvbuf, curve)
        # Non-blocking reads through a sync shadow of the same socket: no future per message.
        # (Never closed itself: closing the asyncio socket closes the one underlying socket.)
        self._socket = zmq.Socket.shadow(self._asocket.underlying)
        self._clients: StateClients[AsyncStateClient] = StateClients(
            state or None,
            lambda endpoint: AsyncStateClient(
                endpoint, timeout=request_timeout, context=ctx, curve=curve
            ),
        )
        self._wakeup = asyncio.Event()

    async def subscribe_execution(
        self, execution_id: str, after_seq: int | None = None
    ) -> ExecutionState | None:
        """Follow one execution (see :meth:`Subscriber.subscribe_execution`)."""
        if self._core.is_subscribed(execution_id):
            return self._core.states.get(execution_id)
        request = self._core.subscribe_execution(execution_id, after_seq)
        self._sync_subscriptions()  # subscribe FIRST, then ask for the snapshot
        if request is None:
            self._wakeup.set()
            return None
        reply = await answer_async(self._clients, request)
        state = self._subscribed_answer(execution_id, reply, request)
        self._wakeup.set()  # a waiting recv() may have events to hand out now
        return state

    async def recv(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery (see :meth:`Subscriber.recv`)."""
        core = self._core
        if core.ready:  # what the last pump read ahead: nearly every call
            return core.ready.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = core.take_ready()
            if item is not None or self._closed:
                return item
            now = time.monotonic()
            await self._serve(now)
            self._report_liveness()
            item = core.take_ready()
            if item is not None or self._closed:
                return item
            if self._pump(now):
                continue
            if deadline is not None and now >= deadline:
                return None
            wait = self._wait_time(now, deadline)
            if wait > 0:
                await self._wait(wait)

    async def _wait(self, seconds: float) -> None:
        # Wake on a message, on a subscribe that produced events, or after `seconds`.
        self._wakeup.clear()
        poll = asyncio.ensure_future(self._asocket.poll(int(seconds * 1000) + 1, zmq.POLLIN))
        woken = asyncio.ensure_future(self._wakeup.wait())
        try:
            await asyncio.wait({poll, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (poll, woken):
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()  # retrieved: a poll on a socket closed meanwhile is fine

    async def _serve(self, now: float) -> None:
        self._traffic_waiting(now)
        requests = self._core.poll(now, self._room())
        if not requests:
            return
        replies = await asyncio.gather(*(self._ask(r) for r in requests))
        for request, reply in zip(requests, replies, strict=True):
            self._core.on_reply(request, reply, time.monotonic())

    async def _ask(self, request: Request) -> Any:
        return await answer_async(self._clients, request)

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Delivery]:
        while not self._closed:
            item = await self.recv()
            if item is not None:
                yield item

    def close(self) -> None:
        """Close the sockets (idempotent); a waiting ``recv`` returns None."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._asocket.close(0)
        self._clients.close()

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
