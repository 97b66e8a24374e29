"""Answering the repair core's requests from the state service: one mapping for every shell.

The core (:class:`~zmqmon.core.clone.CloneCore`) takes every outcome of a request as a value
(:data:`~zmqmon.core.delivery.Reply`), failures included, and decides what they mean. The shells
only translate: a reply, ``not_found``, or anything else that went wrong (a timeout, a refusal, a
malformed reply) — the same way in the sync and the asyncio face.

Which state service: a request names the ``owner`` a heartbeat named for its execution (many
executors behind one proxy each own theirs), else the one configured. :class:`StateClients` keeps
one client per state service asked (bounded), for either face.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from zmqmon.core import calls
from zmqmon.core.calls import Call
from zmqmon.core.delivery import (
    NOT_FOUND,
    EventsPage,
    FetchEvents,
    Reply,
    Request,
    Unavailable,
)
from zmqmon.core.events import Event
from zmqmon.errors import NotFoundError, ZmqmonError
from zmqmon.shells.client import AsyncStateClient, StateClient

__all__ = ["NO_SERVICE", "StateClients", "answer", "answer_async", "failure"]


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class StateClients(Generic[C]):
    """The state services one subscriber asks: the configured one (``default``, may be None)
    and each that heartbeats name, a client apiece (at most ``max_clients``, least used go)."""

    def __init__(
        self, default: str | None, factory: Callable[[str], C], max_clients: int = 64
    ) -> None:
        self.default = default
        self._factory = factory
        self._max = max_clients
        self._clients: OrderedDict[str, C] = OrderedDict()

    def get(self, owner: str | None) -> C | None:
        """The client for a request's owner (None: the default; None if there is none)."""
        endpoint = owner or self.default
        if endpoint is None:
            return None
        client = self._clients.get(endpoint)
        if client is None:
            client = self._clients[endpoint] = self._factory(endpoint)
            while len(self._clients) > self._max:
                _, old = self._clients.popitem(last=False)
                old.close()
        else:
            self._clients.move_to_end(endpoint)
        return client

    def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()


log = logging.getLogger("zmqmon.subscriber")

#: the answer to every request when no state service is configured
NO_SERVICE: Unavailable = Unavailable("no state service", permanent=True)


def _page(reply: tuple[list[Event], int]) -> EventsPage:
    return EventsPage(*reply)


def _call(request: Request) -> Call[Reply]:
    """The state-service call a repair request is. Never ``fresh``: the core asks again for
    what is not stored yet, and a read must not wait behind a burst's newest events."""
    if isinstance(request, FetchEvents):
        page = calls.events(request.execution_id, request.after_seq, request.limit, fresh=False)
        return Call(page.op, page.fields, lambda r: _page(page.read(r)))
    snap = calls.snapshot(request.execution_id, fresh=False)
    return Call(snap.op, snap.fields, snap.read)


def failure(request: Request, exc: ZmqmonError) -> Reply:
    """What a failed request means to the core."""
    if isinstance(exc, NotFoundError):
        return NOT_FOUND
    log.debug("repair request %s failed: %s", request, exc)
    return Unavailable(f"{type(exc).__name__}: {exc}")


def answer(clients: StateClients[StateClient], request: Request) -> Reply:
    """Make one request with the sync client of its owner."""
    client = clients.get(request.owner)
    if client is None:
        return NO_SERVICE
    try:
        return client.call(_call(request))
    except ZmqmonError as exc:
        return failure(request, exc)


async def answer_async(clients: StateClients[AsyncStateClient], request: Request) -> Reply:
    """Make one request with the asyncio client of its owner."""
    client = clients.get(request.owner)
    if client is None:
        return NO_SERVICE
    try:
        return await client.call(_call(request))
    except ZmqmonError as exc:
        return failure(request, exc)
