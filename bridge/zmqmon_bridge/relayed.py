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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zmqmon.core.events import (
    TERMINAL_TYPES,
    Event,
    ExecutionStarted,
    parse_event,
    parse_timestamp,
)
from zmqmon.core.state import ExecutionState
from zmqmon.core.strict import STRICT_DECODERS, STRICT_REFUSED
from zmqmon.core.wire import Heartbeat, decode_event, dumps, topic_route
from zmqmon_bridge.protocol import text_frame

__all__ = ["Relayed", "decode", "from_stored", "snapshot_frame"]


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
                return Relayed(
                    execution_id,
                    ev.workflow_id,
                    ev.seq,
                    event_type,
                    event_type in TERMINAL_TYPES,
                    text_frame(payload),
                    ev.timestamp,
                    event_type == "execution:started",
                    ev.user_id,
                )
    msg = decode_event(topic, payload)
    if isinstance(msg, Heartbeat):
        return msg
    return Relayed.of(msg, payload)


def from_stored(item: Mapping[str, Any]) -> Relayed:
    """An event from the store's ``events`` reply (validated; encoded once)."""
    return Relayed.of(parse_event(item), dumps(item))


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
