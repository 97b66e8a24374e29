"""What the bridge relays: validated events kept as the WebSocket frame of their published bytes.

An event is validated once (the contract's model, :func:`zmqmon.core.wire.decode_event`) and
then travels through the lanes, the connections' cores and the send queues as a :class:`Relayed`
record: the fields routing and repair read, and one unmasked WebSocket text frame carrying the
bytes exactly as published (server frames are never masked, so the same bytes go to every
client). Events fetched from the store are encoded once, likewise.
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
from zmqmon.core.wire import Heartbeat, decode_event, dumps
from zmqmon_bridge.protocol import text_frame

__all__ = ["Relayed", "decode", "from_stored", "snapshot_frame"]


@dataclass(frozen=True, slots=True)
class Relayed:
    """One event as relayed. ``started``: it is ``execution:started``, whose ``user_id`` (maybe
    None) names the execution's owner."""

    execution_id: str
    workflow_id: str
    seq: int
    type: str
    is_terminal: bool
    frame: bytes
    published: float = 0.0  # its timestamp, as epoch seconds (how late it comes, in state mode)
    started: bool = False
    user_id: str | None = None

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
            parse_timestamp(event.timestamp),
            started,
            event.data.user_id if isinstance(event, ExecutionStarted) else None,
        )


def decode(topic: bytes, payload: bytes) -> Relayed | Heartbeat:
    """A message off the stream; raises :class:`~zmqmon.errors.ProtocolError` like
    :func:`~zmqmon.core.wire.decode_message` (through its typed fast path,
    :func:`~zmqmon.core.wire.decode_event`: the topic names the type to validate)."""
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
