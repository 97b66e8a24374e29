"""Strict mirrors of the event models, for a relay's fast acceptance check (msgspec).

A relay (the bridge) forwards an event's bytes as they were published and reads only a few of
its fields; it need not build the pydantic models of :mod:`zmqmon.core.events`, which cost five
times as much to validate as a msgspec ``Struct`` decoded straight from the bytes (measured:
1.5 against 7.9 µs for an ``agent:progress``, on the bench machine).

Each ``Struct`` here mirrors one model, field for field, constraint for constraint, but
**strictly**: no coercion ("5" is not 5, 5.0 is not 5), and a timestamp of ASCII digits only.
So a :data:`STRICT_DECODERS` decoder accepts a subset of what :func:`zmqmon.core.events.parse_event`
accepts, with the same values (a property test holds it to that); everything it refuses goes
to the models, which accept the lax forms or give the precise error. It is a fast path, never a
second opinion.

msgspec comes with the ``bridge`` extra, the one face that relays without building models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from zmqmon.core.events import EVENT_TYPES, MAX_SEQ

__all__ = ["STRICT_DECODERS", "STRICT_REFUSED", "StrictEvent"]

_TIMESTAMP: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z"
_Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class _Data(msgspec.Struct, rename="camel"):
    """Unknown keys are accepted and ignored, as the models' ``extra="allow"`` accepts them."""


class _AgentInfo(_Data):
    agent_id: str
    agent_name: str
    depends_on: list[str] = msgspec.field(default_factory=list)


class _ExecutionStartedData(_Data):
    workflow_name: str
    agent_count: _NonNegative
    user_id: str | None = None
    agents: list[_AgentInfo] | None = None


class _ExecutionProgressData(_Data):
    progress: _Percent
    current_agent: str | None = None


class _ExecutionCompletedData(_Data):
    duration_ms: _NonNegative
    results: dict[str, Any] = msgspec.field(default_factory=dict)


class _ExecutionFailedData(_Data):
    error: str
    error_type: str = "Exception"
    agent_id: str | None = None
    duration_ms: _NonNegative | None = None


class _ExecutionCancelledData(_Data):
    reason: str = ""


class _AgentStartedData(_Data):
    agent_id: str
    agent_name: str


class _AgentProgressData(_Data):
    agent_id: str
    agent_name: str
    progress: _Percent
    message: str | None = None


class _AgentCompletedData(_Data):
    agent_id: str
    agent_name: str
    result: Any = None
    duration_ms: _NonNegative | None = None


class _AgentFailedData(_Data):
    agent_id: str
    agent_name: str
    error: str
    error_type: str = "Exception"
    duration_ms: _NonNegative | None = None


class StrictEvent(msgspec.Struct, rename="camel"):
    """The fields every event has (``data`` is typed per event type in the subclasses)."""

    execution_id: Annotated[str, msgspec.Meta(min_length=1)]
    workflow_id: str
    timestamp: Annotated[str, msgspec.Meta(pattern=_TIMESTAMP)]
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    type: str
    data: Any

    @property
    def user_id(self) -> str | None:
        """``execution:started``'s owner (None for other types, or when it has none)."""
        return getattr(self.data, "user_id", None)


def _event(event_type: str, data: type[_Data]) -> type[StrictEvent]:
    # A subclass per type: its `type` is that literal, its `data` that type's Struct.
    annotations = {"type": Literal[event_type], "data": data}
    return type(event_type.replace(":", "_"), (StrictEvent,), {"__annotations__": annotations})


_DATA: Final[dict[str, type[_Data]]] = {
    "execution:started": _ExecutionStartedData,
    "execution:progress": _ExecutionProgressData,
    "execution:completed": _ExecutionCompletedData,
    "execution:failed": _ExecutionFailedData,
    "execution:cancelled": _ExecutionCancelledData,
    "agent:started": _AgentStartedData,
    "agent:progress": _AgentProgressData,
    "agent:completed": _AgentCompletedData,
    "agent:failed": _AgentFailedData,
}
assert tuple(_DATA) == EVENT_TYPES

#: event type → its strict decoder (JSON bytes → that type's :class:`StrictEvent`); each raises
#: one of :data:`STRICT_REFUSED` on anything it does not accept
STRICT_DECODERS: Final[Mapping[str, Callable[[bytes], StrictEvent]]] = {
    event_type: msgspec.json.Decoder(_event(event_type, data)).decode
    for event_type, data in _DATA.items()
}

STRICT_REFUSED: Final = (msgspec.ValidationError, msgspec.DecodeError)
