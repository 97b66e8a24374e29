"""The ZeroMQ wire codec: events and heartbeats ⇄ ``[topic, payload]`` frames.

Topics (contract §3):

* ``exec/<executionId>/<type>`` for an execution's events, so the prefix ``exec/<id>/`` selects
  one execution and ``exec/`` selects them all;
* ``sys/heartbeat`` for the publisher's heartbeat.

Payloads are UTF-8 JSON. An encoded event never exceeds :data:`MAX_EVENT_BYTES`: oversized
fields of ``data`` are replaced by a short note and ``data.truncated`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from zmqmon.core.events import (
    EVENT_TYPES,
    EVENT_VALIDATORS,
    MAX_SEQ,
    Event,
    parse_event,
    validation_message,
)
from zmqmon.errors import ProtocolError

__all__ = [
    "EXEC_PREFIX",
    "HEARTBEAT_TOPIC",
    "MAX_EVENT_BYTES",
    "Heartbeat",
    "decode_event",
    "decode_message",
    "dumps",
    "encode_event",
    "encode_heartbeat",
    "event_topic",
    "execution_prefix",
    "loads",
    "topic_route",
    "truncate_data",
]

EXEC_PREFIX: Final = "exec/"
HEARTBEAT_TOPIC: Final = b"sys/heartbeat"
MAX_EVENT_BYTES: Final = 1024 * 1024

_TOPIC_CACHE: dict[tuple[str, str], bytes] = {}


def _fallback(value: Any) -> str:
    # Anything JSON cannot carry is described, never a crash.
    return f"<{type(value).__name__}>"


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes; values JSON cannot carry become ``"<TypeName>"``; NaN/inf → null."""
    return pydantic_core.to_json(obj, fallback=_fallback)


def loads(data: bytes | str) -> Any:
    """Parse JSON bytes or text. Raises :class:`ProtocolError` on invalid JSON."""
    try:
        return pydantic_core.from_json(data)
    except ValueError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None


def execution_prefix(execution_id: str) -> str:
    """The topic prefix selecting one execution's events: ``exec/<id>/``."""
    return f"{EXEC_PREFIX}{execution_id}/"


def event_topic(execution_id: str, event_type: str) -> bytes:
    """The topic frame of one event: ``exec/<id>/<type>``."""
    key = (execution_id, event_type)
    topic = _TOPIC_CACHE.get(key)
    if topic is None:
        if len(_TOPIC_CACHE) > 50_000:  # bounded: executions come and go
            _TOPIC_CACHE.clear()
        topic = _TOPIC_CACHE[key] = f"{EXEC_PREFIX}{execution_id}/{event_type}".encode()
    return topic


def _note(size: int) -> str:
    return f"<truncated: {size} bytes>"


def truncate_data(data: Mapping[str, Any], budget: int) -> dict[str, Any]:
    """``data`` as a dict that fits ``budget`` bytes of JSON: its largest fields (looking one
    level into dicts, so that e.g. one agent's huge entry in ``results`` is cut and the other
    agents' results survive) become ``"<truncated: N bytes>"`` notes, and ``truncated`` is set.

    Shared by the wire codec and the executor, so that the event emitted, the payload sent and
    the row stored agree.
    """
    out = dict(data)
    out["truncated"] = True
    while len(dumps(out)) > budget:
        sizes = {k: len(dumps(v)) for k, v in out.items()}
        key = max(sizes, key=lambda k: sizes[k])
        value = out[key]
        if isinstance(value, dict) and value:
            inner = dict(value)
            inner_sizes = {k: len(dumps(v)) for k, v in inner.items()}
            big = max(inner_sizes, key=lambda k: inner_sizes[k])
            if inner_sizes[big] > 64:
                inner[big] = _note(inner_sizes[big])
                out[key] = inner
                continue
        out[key] = _note(sizes[key])
    return out


def encode_event(event: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Encode an event dict as ``(topic, payload)``, truncating ``data`` if it is over 1 MiB."""
    payload = dumps(event)
    if len(payload) > MAX_EVENT_BYTES:
        envelope = dict(event)
        overhead = len(payload) - len(dumps(event.get("data", {})))
        envelope["data"] = truncate_data(event.get("data", {}), MAX_EVENT_BYTES - overhead - 64)
        payload = dumps(envelope)
    return event_topic(str(event["executionId"]), str(event["type"])), payload


class Heartbeat(BaseModel):
    """``sys/heartbeat``: the publisher's id and last seq of each recent execution."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    publisher_id: str
    timestamp: str
    #: execution id → its last seq; bounded like every seq (a hostile heartbeat would otherwise
    #: send subscribers fetching ranges no store can hold)
    executions: dict[str, Annotated[int, Field(ge=0, le=MAX_SEQ)]] = Field(default_factory=dict)
    #: where subscribers reach the state service owning these executions (contract §3)
    state: Annotated[str, Field(max_length=1024)] | None = None


def encode_heartbeat(
    publisher_id: str,
    timestamp: str,
    executions: Mapping[str, int],
    state: str | None = None,
) -> tuple[bytes, bytes]:
    """Encode a heartbeat as ``(topic, payload)``; ``state``: the owning state service."""
    body: dict[str, object] = {
        "publisherId": publisher_id,
        "timestamp": timestamp,
        "executions": dict(executions),
    }
    if state is not None:
        body["state"] = state
    return HEARTBEAT_TOPIC, dumps(body)


def decode_message(frames: Sequence[bytes]) -> Event | Heartbeat:
    """Decode one ZeroMQ message into an :data:`Event` or a :class:`Heartbeat`.

    Raises :class:`ProtocolError` naming what is wrong: frame count, unknown topic, invalid JSON,
    a schema violation, or a topic that disagrees with the payload.
    """
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames [topic, payload], got {len(frames)}")
    topic, payload = bytes(frames[0]), frames[1]
    if topic == HEARTBEAT_TOPIC:
        try:
            return Heartbeat.model_validate_json(payload)
        except ValidationError as exc:
            raise ProtocolError(f"invalid heartbeat: {validation_message(exc)}") from None
    if not topic.startswith(b"exec/"):
        raise ProtocolError(f"unknown topic {topic[:80]!r}")
    event = parse_event(payload if isinstance(payload, bytes) else bytes(payload))
    if topic != event_topic(event.execution_id, event.type):
        raise ProtocolError(
            f"topic {topic[:120]!r} does not match event {event.execution_id}/{event.type}"
        )
    return event


#: topic → (the execution id it names, its type); bounded like ``_TOPIC_CACHE``
_ROUTES: dict[bytes, tuple[str, str]] = {}


def topic_route(topic: bytes) -> tuple[str, str] | None:
    """What an ``exec/<id>/<type>`` topic names: (execution id, event type), when it is
    well-formed and the type is one of the contract's (else None). Cached per topic."""
    route = _ROUTES.get(topic)
    if route is not None or not topic.startswith(b"exec/"):
        return route
    cut = topic.rfind(b"/")  # a type has no "/", an id may: the last one splits them
    event_type = topic[cut + 1 :].decode("latin-1")
    if cut < 5 or event_type not in EVENT_VALIDATORS:
        return None
    try:
        execution_id = topic[5:cut].decode()
    except UnicodeDecodeError:
        return None
    if len(_ROUTES) > 50_000:
        _ROUTES.clear()
    route = _ROUTES[topic] = (execution_id, event_type)
    return route


def decode_event(topic: bytes, payload: bytes) -> Event | Heartbeat:
    """:func:`decode_message` of ``[topic, payload]``, at its cheapest for an event: the topic
    names the type, so that type's model validates the payload directly (no union to dispatch
    on), and the event's id is compared with the one the topic names instead of rebuilding the
    topic. It accepts exactly what :func:`decode_message` accepts, as the same value; anything
    else (a heartbeat, garbage) goes through :func:`decode_message`, which raises the same
    :class:`ProtocolError` (the fast path's own error is dropped: garbage is rare).
    """
    route = _ROUTES.get(topic) or topic_route(topic)
    if route is not None:
        try:
            event = EVENT_VALIDATORS[route[1]](payload)
        except ValidationError:
            pass
        else:
            if event.execution_id == route[0]:
                return event
    return decode_message((topic, payload))


assert len(EVENT_TYPES) == 9
