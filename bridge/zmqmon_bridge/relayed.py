"""What the bridge relays: validated events kept as the WebSocket frame of their published bytes.

An event is validated once and then travels through the lanes, the connections' cores and the
send queues as a :class:`Relayed` record: the fields routing and repair read, and one unmasked
WebSocket text frame carrying the bytes exactly as published (server frames are never masked,
so the same bytes go to every client). Events fetched from the store are encoded once, likewise.

Validation takes the strict fast path first (:mod:`zmqmon.core.strict`: msgspec, no pydantic
model built), and whatever that refuses goes to the contract's models
(:func:`zmqmon.core.wire.decode_event`), which accept the lax forms or raise the precise error.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from zmqmon.core.events import (
    TERMINAL_TYPES,
    Event,
    ExecutionStarted,
    parse_event,
    parse_timestamp,
)
from zmqmon.core.state import ExecutionState
from zmqmon.core.strict import STRICT_DECODERS, STRICT_REFUSED, StrictEvent
from zmqmon.core.wire import Heartbeat, decode_event, dumps, topic_route
from zmqmon_bridge.protocol import text_frame

__all__ = ["Relayed", "decode", "decode_stored", "page_payloads", "snapshot_frame"]


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs ~1 µs more per event)
class Relayed:
    """One event as relayed (never changed once made). ``started``: it is
    ``execution:started``, whose ``user_id`` (maybe None) names the execution's owner."""

    execution_id: str
    workflow_id: str
    seq: int
    type: str
    is_terminal: bool
    frame: bytes
    timestamp: str = ""
    started: bool = False
    user_id: str | None = None

    @property
    def published(self) -> float:
        """Its timestamp as epoch seconds (how late it comes, in state mode)."""
        return parse_timestamp(self.timestamp)

    @classmethod
    def of(cls, event: Event, payload: bytes) -> Relayed:
        """The record of an event validated from ``payload``."""
        started = isinstance(event, ExecutionStarted)
        return cls(
            event.execution_id,
            event.workflow_id,
            event.seq,
            event.type,
            event.type in TERMINAL_TYPES,
            text_frame(payload),
            event.timestamp,
            started,
            event.data.user_id if isinstance(event, ExecutionStarted) else None,
        )


def _strict(ev: StrictEvent, payload: bytes) -> Relayed:
    return Relayed(
        ev.execution_id,
        ev.workflow_id,
        ev.seq,
        ev.type,
        ev.type in TERMINAL_TYPES,
        text_frame(payload),
        ev.timestamp,
        ev.type == "execution:started",
        ev.user_id,
    )


def decode(topic: bytes, payload: bytes) -> Relayed | Heartbeat:
    """A message off the stream; raises :class:`~zmqmon.errors.ProtocolError` like
    :func:`~zmqmon.core.wire.decode_message`. The topic names the type; that type's strict
    decoder checks the payload, and anything it refuses is decided by
    :func:`~zmqmon.core.wire.decode_event` (the same answer, or the precise error)."""
    route = topic_route(topic)
    if route is not None:
        execution_id, event_type = route
        try:
            ev = STRICT_DECODERS[event_type](payload)
        except STRICT_REFUSED:
            pass
        else:
            if ev.execution_id == execution_id:
                return _strict(ev, payload)
    msg = decode_event(topic, payload)
    if isinstance(msg, Heartbeat):
        return msg
    return Relayed.of(msg, payload)


def decode_stored(payload: bytes) -> Relayed:
    """An event of a store's ``events`` reply, kept as the bytes stored; raises
    :class:`~zmqmon.errors.ProtocolError` like :func:`~zmqmon.core.events.parse_event`.
    Publishers write ``"type"`` first: its strict decoder checks the rest, and anything it
    refuses (or any other shape) is decided by the models."""
    if payload.startswith(b'{"type":"'):
        end = payload.find(b'"', 9)
        strict = STRICT_DECODERS.get(payload[9:end].decode("latin-1"))
        if strict is not None:
            try:
                return _strict(strict(payload), payload)
            except STRICT_REFUSED:
                pass
    return Relayed.of(parse_event(payload), payload)


class _Page(msgspec.Struct):
    ok: bool
    events: list[msgspec.Raw]
    lastSeq: int


_read_page = msgspec.json.Decoder(_Page).decode


def page_payloads(reply: bytes) -> tuple[list[bytes], int] | None:
    """An ``events`` reply cut into each event's bytes, none of them parsed (None: not a plain
    successful page — the client's usual reading decides). See
    :func:`zmqmon.core.calls.events_payloads`."""
    try:
        page = _read_page(reply)
    except STRICT_REFUSED:
        return None
    if not page.ok:
        return None
    return [bytes(raw) for raw in page.events], page.lastSeq


def snapshot_frame(state: ExecutionState) -> bytes:
    """The ``snapshot`` message for a state, as a frame."""
    return text_frame(
        dumps(
            {
                "type": "snapshot",
                "executionId": state.execution_id,
                "execution": state.to_json_dict(),
            }
        )
    )
