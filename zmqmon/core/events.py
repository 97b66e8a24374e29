"""Event models: the nine execution events of the contract, as typed pydantic v2 models.

On the wire an event is camelCase JSON (``executionId``, ``agentName`` …); in Python the same
fields are snake_case attributes (``event.execution_id``, ``event.data.agent_name``). ``data``
is typed per event type and allows extra keys, as the contract does.

Publishing is a hot path, so the publisher builds plain dicts (:func:`build_event_dict`) and never
goes through these models; receivers validate with :func:`parse_event`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final, Literal, TypeAlias, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from zmqmon.errors import ProtocolError

__all__ = [
    "EVENT_TYPES",
    "EVENT_VALIDATORS",
    "MAX_SEQ",
    "TERMINAL_TYPES",
    "AgentCompleted",
    "AgentCompletedData",
    "AgentFailed",
    "AgentFailedData",
    "AgentInfo",
    "AgentProgress",
    "AgentProgressData",
    "AgentStarted",
    "AgentStartedData",
    "Event",
    "EventType",
    "ExecutionCancelled",
    "ExecutionCancelledData",
    "ExecutionCompleted",
    "ExecutionCompletedData",
    "ExecutionFailed",
    "ExecutionFailedData",
    "ExecutionProgress",
    "ExecutionProgressData",
    "ExecutionStarted",
    "ExecutionStartedData",
    "build_event_dict",
    "event_to_dict",
    "format_timestamp",
    "parse_timestamp",
    "parse_event",
    "validation_message",
]

EventType: TypeAlias = Literal[
    "execution:started",
    "execution:progress",
    "execution:completed",
    "execution:failed",
    "execution:cancelled",
    "agent:started",
    "agent:progress",
    "agent:completed",
    "agent:failed",
]

EVENT_TYPES: Final[tuple[str, ...]] = (
    "execution:started",
    "execution:progress",
    "execution:completed",
    "execution:failed",
    "execution:cancelled",
    "agent:started",
    "agent:progress",
    "agent:completed",
    "agent:failed",
)

#: The largest ``seq`` (and ``afterSeq``): the store keeps it in an SQLite INTEGER, a signed 64-bit
#: integer, so anything above is refused where it comes in rather than overflowing there.
MAX_SEQ: Final = 2**63 - 1

TERMINAL_TYPES: Final[frozenset[str]] = frozenset(
    {"execution:completed", "execution:failed", "execution:cancelled"}
)

#: ASCII digits only: a Unicode ``\d`` (the Rust regex's) would let another script's digits
#: through, which no timestamp parser reads back (and the bridge's strict decoder refuses)
_TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"

Percent = Annotated[int, Field(ge=0, le=100)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="allow"
    )


# --- data, one model per event type ---------------------------------------------------------


class AgentInfo(_Model):
    """An agent as announced in ``execution:started`` (zmqmon's addition to the contract)."""

    agent_id: str
    agent_name: str
    depends_on: list[str] = Field(default_factory=list)


class ExecutionStartedData(_Model):
    """``execution:started``: the workflow's name, its agent count and the user who ran it."""

    workflow_name: str
    agent_count: NonNegativeInt
    user_id: str | None = None
    agents: list[AgentInfo] | None = None


class ExecutionProgressData(_Model):
    """``execution:progress``: overall progress and the agent currently reporting."""

    progress: Percent
    current_agent: str | None = None


class ExecutionCompletedData(_Model):
    """``execution:completed``: wall time and every agent's result (agent id → result)."""

    duration_ms: NonNegativeInt
    results: dict[str, Any] = Field(default_factory=dict)


class ExecutionFailedData(_Model):
    """``execution:failed``: the error, its type, and the agent at fault (None if none)."""

    error: str
    error_type: str = "Exception"
    agent_id: str | None = None
    duration_ms: NonNegativeInt | None = None


class ExecutionCancelledData(_Model):
    """``execution:cancelled``: why it was cancelled."""

    reason: str = ""


class AgentStartedData(_Model):
    """``agent:started``."""

    agent_id: str
    agent_name: str


class AgentProgressData(_Model):
    """``agent:progress``: an agent's own progress and an optional message."""

    agent_id: str
    agent_name: str
    progress: Percent
    message: str | None = None


class AgentCompletedData(_Model):
    """``agent:completed``: the agent's (JSON-safe) result and its duration."""

    agent_id: str
    agent_name: str
    result: Any = None
    duration_ms: NonNegativeInt | None = None


class AgentFailedData(_Model):
    """``agent:failed``: the error message and its type (exception class name)."""

    agent_id: str
    agent_name: str
    error: str
    error_type: str = "Exception"
    duration_ms: NonNegativeInt | None = None


# --- events -----------------------------------------------------------------------------------


class _EventBase(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )

    execution_id: Annotated[str, Field(min_length=1)]
    workflow_id: str
    timestamp: Annotated[str, Field(pattern=_TIMESTAMP_PATTERN)]
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]

    @property
    def time(self) -> datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.strptime(self.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)

    #: True for ``execution:completed|failed|cancelled`` (a class attribute, not a property:
    #: the repair core reads it for every event delivered)
    is_terminal: ClassVar[bool] = False


class ExecutionStarted(_EventBase):
    """An execution began."""

    type: Literal["execution:started"]
    data: ExecutionStartedData


class ExecutionProgress(_EventBase):
    """An execution's overall progress moved."""

    type: Literal["execution:progress"]
    data: ExecutionProgressData


class ExecutionCompleted(_EventBase):
    """An execution completed (terminal)."""

    type: Literal["execution:completed"]
    data: ExecutionCompletedData
    is_terminal: ClassVar[bool] = True


class ExecutionFailed(_EventBase):
    """An execution failed (terminal)."""

    type: Literal["execution:failed"]
    data: ExecutionFailedData
    is_terminal: ClassVar[bool] = True


class ExecutionCancelled(_EventBase):
    """An execution was cancelled (terminal)."""

    type: Literal["execution:cancelled"]
    data: ExecutionCancelledData
    is_terminal: ClassVar[bool] = True


class AgentStarted(_EventBase):
    """An agent began."""

    type: Literal["agent:started"]
    data: AgentStartedData


class AgentProgress(_EventBase):
    """An agent reported progress."""

    type: Literal["agent:progress"]
    data: AgentProgressData


class AgentCompleted(_EventBase):
    """An agent returned."""

    type: Literal["agent:completed"]
    data: AgentCompletedData


class AgentFailed(_EventBase):
    """An agent raised or timed out."""

    type: Literal["agent:failed"]
    data: AgentFailedData


Event: TypeAlias = Annotated[
    Union[
        ExecutionStarted,
        ExecutionProgress,
        ExecutionCompleted,
        ExecutionFailed,
        ExecutionCancelled,
        AgentStarted,
        AgentProgress,
        AgentCompleted,
        AgentFailed,
    ],
    Field(discriminator="type"),
]

#: each event type's own validator (JSON bytes → that event): a receiver that knows the type
#: already (from the topic) skips the union's dispatch (see :func:`zmqmon.core.wire.decode_event`)
EVENT_VALIDATORS: Final[Mapping[str, Callable[[bytes], Event]]] = {
    get_args(model.model_fields["type"].annotation)[0]: model.__pydantic_validator__.validate_json
    for model in get_args(get_args(Event)[0])  # Annotated[Union[models…], …]
}

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
# The adapter's own validator, called directly: every received event passes here, and the
# TypeAdapter wrapper adds ~15 % to it.
_validate_json: Callable[[bytes | bytearray | str], Event] = _EVENT_ADAPTER.validator.validate_json


def validation_message(exc: ValidationError, *, tagged: bool = False) -> str:
    """A one-line message naming each bad field of a pydantic error, e.g. ``data.progress: …``.

    ``tagged``: the error comes from a discriminated union, whose tag pydantic puts first in
    each location; it is dropped.
    """
    parts = []
    for err in exc.errors(include_url=False):
        loc_parts = err["loc"][1:] if tagged and len(err["loc"]) > 1 else err["loc"]
        loc = ".".join(str(p) for p in loc_parts) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_event(payload: bytes | str | Mapping[str, Any]) -> Event:
    """Validate one event from its JSON (bytes or str) or an already-decoded mapping.

    Raises :class:`~zmqmon.errors.ProtocolError` naming the bad field, e.g.
    ``invalid event: data.progress: Input should be less than or equal to 100``.
    """
    try:
        if isinstance(payload, (bytes, bytearray, memoryview, str)):
            return _validate_json(
                payload if not isinstance(payload, memoryview) else bytes(payload)
            )
        return _EVENT_ADAPTER.validate_python(payload)
    except ValidationError as exc:
        raise ProtocolError(f"invalid event: {validation_message(exc, tagged=True)}") from None


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as its wire dict (camelCase keys, JSON-safe values)."""
    return event.model_dump(by_alias=True, mode="json", exclude_unset=False)


#: the last second's text and the last millisecond's, each ``(number, text)``; each replaced
#: by one assignment, so a thread never pairs one second's number with another's text
_ts_cache: list[tuple[int, str]] = [(-1, ""), (-1, "")]
#: ``.000Z`` … ``.999Z``: a lookup instead of a format per event
_MILLIS_SUFFIX: Final = tuple(f".{m:03d}Z" for m in range(1000))
_epoch_cache: dict[str, float] = {}


def parse_timestamp(timestamp: str) -> float:
    """Epoch seconds of a contract timestamp (``2026-11-25T10:00:10.000Z``); NaN if malformed.

    Called per received event in ``state`` mode (to judge how late it is), so the per-second
    prefix is cached.
    """
    prefix = timestamp[:19]
    whole = _epoch_cache.get(prefix)
    if whole is None:
        try:
            whole = datetime.strptime(prefix, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return float("nan")
        if len(_epoch_cache) > 4096:
            _epoch_cache.clear()
        _epoch_cache[prefix] = whole
    try:
        return whole + int(timestamp[20:23]) / 1000
    except ValueError:
        return float("nan")


def format_timestamp(epoch_seconds: float) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``: ``2026-11-25T10:00:10.000Z``.

    Called once per published event (a burst has many in one millisecond), so the last
    millisecond's text and the last second's prefix are cached.
    """
    total = round(epoch_seconds * 1000)
    cache = _ts_cache
    last = cache[1]
    if last[0] == total:
        return last[1]
    whole, millis = divmod(total, 1000)
    second = cache[0]
    if second[0] != whole:
        second = cache[0] = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    text = second[1] + _MILLIS_SUFFIX[millis]
    cache[1] = (total, text)
    return text


def build_event_dict(
    event_type: str,
    execution_id: str,
    workflow_id: str,
    seq: int,
    timestamp: str,
    data: dict[str, Any],
) -> dict[str, Any]:
    """An event's wire dict, built without validation (the publisher's hot path)."""
    return {
        "type": event_type,
        "executionId": execution_id,
        "workflowId": workflow_id,
        "timestamp": timestamp,
        "seq": seq,
        "data": data,
    }
