"""Answering the repair core's requests from the state service: one mapping for every shell.

The core (:class:`~zmqmon.core.clone.CloneCore`) takes every outcome of a request as a value
(:data:`~zmqmon.core.delivery.Reply`), failures included, and decides what they mean. The shells
only translate: a reply, ``not_found``, or anything else that went wrong (a timeout, a refusal, a
malformed reply) — the same way in the sync and the asyncio face.
"""

from __future__ import annotations

import logging

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

__all__ = ["NO_SERVICE", "answer", "answer_async", "failure"]

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


def answer(client: StateClient | None, request: Request) -> Reply:
    """Make one request with the sync client."""
    if client is None:
        return NO_SERVICE
    try:
        return client.call(_call(request))
    except ZmqmonError as exc:
        return failure(request, exc)


async def answer_async(client: AsyncStateClient | None, request: Request) -> Reply:
    """Make one request with the asyncio client."""
    if client is None:
        return NO_SERVICE
    try:
        return await client.call(_call(request))
    except ZmqmonError as exc:
        return failure(request, exc)
