from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.strategies import edgy_ints, encoded, json_values, no_logged_errors, objects
from zmqmon.core.events import (
    EVENT_TYPES,
    MAX_SEQ,
    AgentProgress,
    build_event_dict,
    event_to_dict,
    format_timestamp,
    parse_event,
)
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.wire import (
    HEARTBEAT_TOPIC,
    MAX_EVENT_BYTES,
    Heartbeat,
    decode_event,
    decode_message,
    encode_event,
    encode_heartbeat,
    loads,
)
from zmqmon.errors import ProtocolError


def _event(seq: int = 1, **data: object) -> dict:
    body = {"agentId": "a1", "agentName": "Agent", "progress": 5, **data}
    return build_event_dict("agent:progress", "e1", "w1", seq, "2026-11-25T10:00:10.123Z", body)


def test_round_trip_topic_and_payload() -> None:
    topic, payload = encode_event(_event())
    assert topic == b"exec/e1/agent:progress"
    event = decode_message([topic, payload])
    assert event_to_dict(event)["data"]["progress"] == 5  # type: ignore[arg-type]
    assert loads(payload) == {**_event(), "data": {**_event()["data"]}}


def test_timestamp_format() -> None:
    assert format_timestamp(1764064810.123) == "2025-11-25T10:00:10.123Z"
    assert format_timestamp(1764064810.0) == "2025-11-25T10:00:10.000Z"
    assert format_timestamp(1764064811.999) == "2025-11-25T10:00:11.999Z"


def test_oversized_field_is_truncated_and_flagged() -> None:
    big = build_event_dict(
        "agent:completed",
        "e1",
        "w1",
        3,
        "2026-11-25T10:00:10.000Z",
        {"agentId": "a", "agentName": "A", "result": "x" * (2 * MAX_EVENT_BYTES), "durationMs": 1},
    )
    _, payload = encode_event(big)
    assert len(payload) <= MAX_EVENT_BYTES
    event = parse_event(payload)
    assert event.data.model_extra == {"truncated": True}
    assert str(event.data.result).startswith("<truncated:")  # type: ignore[union-attr]
    assert event.data.agent_id == "a"  # type: ignore[union-attr]


def test_truncation_keeps_small_results_of_other_agents() -> None:
    big = build_event_dict(
        "execution:completed",
        "e1",
        "w1",
        9,
        "2026-11-25T10:00:10.000Z",
        {"durationMs": 5, "results": {"huge": "y" * (MAX_EVENT_BYTES + 10), "small": {"n": 1}}},
    )
    _, payload = encode_event(big)
    data = loads(payload)["data"]
    assert data["truncated"] is True
    assert data["results"]["small"] == {"n": 1}
    assert data["results"]["huge"].startswith("<truncated:")


def test_unserialisable_values_are_described_not_crashing() -> None:
    _, payload = encode_event(_event(message=None, extra=object()))
    assert loads(payload)["data"]["extra"] == "<object>"


def test_heartbeat_round_trip() -> None:
    frames = encode_heartbeat("pub-1", "2026-11-25T10:00:10.000Z", {"e1": 4})
    hb = decode_message(list(frames))
    assert isinstance(hb, Heartbeat)
    assert frames[0] == HEARTBEAT_TOPIC
    assert hb.executions == {"e1": 4}


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ([b"exec/e1/agent:progress"], "expected 2 frames"),
        ([b"exec/e1/agent:progress", b"{not json"], "invalid"),
        ([b"weird/topic", b"{}"], "unknown topic"),
        ([b"exec/e1/agent:progress", b'{"type": "agent:progress"}'], "executionId"),
        ([b"exec/OTHER/agent:progress", encode_event(_event())[1]], "does not match"),
        ([HEARTBEAT_TOPIC, b'{"timestamp": 1}'], "invalid heartbeat"),
    ],
)
def test_malformed_messages_raise_protocol_error(frames: list[bytes], fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        decode_message(frames)


# -- property-based: whatever arrives on a SUB socket ------------------------------------------

_TIMESTAMPS = st.one_of(st.just("2026-11-25T10:00:10.123Z"), st.text(max_size=24))
_EVENT_DATA = objects(
    {
        "agentId": st.text(max_size=6),
        "agentName": st.text(max_size=6),
        "progress": edgy_ints,
        "message": st.text(max_size=6),
        "workflowName": st.text(max_size=6),
        "agentCount": edgy_ints,
        "userId": st.text(max_size=6),
        "agents": st.lists(objects({"agentId": st.text(max_size=4),
                                    "agentName": st.text(max_size=4)}), max_size=3),
        "durationMs": edgy_ints,
        "results": st.dictionaries(st.text(max_size=4), json_values, max_size=2),
        "error": st.text(max_size=6),
        "errorType": st.text(max_size=6),
        "reason": st.text(max_size=6),
        "result": json_values,
    }
)  # fmt: skip
_ID = st.sampled_from(["a", "b", "c"])
_GOOD_DATA = {
    "execution:started": st.fixed_dictionaries(
        {"workflowName": st.text(max_size=6), "agentCount": st.integers(0, 3)},
        optional={"userId": st.none() | st.text(max_size=4), "agents": st.lists(
            st.fixed_dictionaries({"agentId": _ID, "agentName": st.text(max_size=4)}),
            max_size=4)},
    ),
    "execution:progress": st.fixed_dictionaries({"progress": edgy_ints}),
    "execution:completed": st.fixed_dictionaries(
        {"durationMs": edgy_ints, "results": st.dictionaries(_ID, json_values, max_size=2)}
    ),
    "execution:failed": st.fixed_dictionaries({"error": st.text(max_size=6)},
                                              optional={"agentId": st.none() | _ID}),
    "execution:cancelled": st.fixed_dictionaries({"reason": st.text(max_size=6)}),
    "agent:started": st.fixed_dictionaries({"agentId": _ID, "agentName": st.text(max_size=4)}),
    "agent:progress": st.fixed_dictionaries(
        {"agentId": _ID, "agentName": st.text(max_size=4), "progress": edgy_ints}
    ),
    "agent:completed": st.fixed_dictionaries(
        {"agentId": _ID, "agentName": st.text(max_size=4), "result": json_values},
        optional={"durationMs": edgy_ints},
    ),
    "agent:failed": st.fixed_dictionaries(
        {"agentId": _ID, "agentName": st.text(max_size=4), "error": st.text(max_size=6)}
    ),
}  # fmt: skip
#: well-formed events of every type, seq and numbers at their edges
_GOOD_EVENTS = st.sampled_from(sorted(_GOOD_DATA)).flatmap(
    lambda kind: st.builds(
        lambda seq, data: {"type": kind, "executionId": "e1", "workflowId": "w1",
                           "timestamp": "2026-11-25T10:00:10.123Z", "seq": seq, "data": data},
        edgy_ints,
        _GOOD_DATA[kind],
    )
)  # fmt: skip
_EVENTS = st.one_of(_GOOD_EVENTS, _GOOD_EVENTS, objects(
    {
        "type": st.sampled_from([*EVENT_TYPES, "agent:exploded"]),
        "executionId": st.text(max_size=8),
        "workflowId": st.text(max_size=8),
        "timestamp": _TIMESTAMPS,
        "seq": edgy_ints,
        "data": _EVENT_DATA,
    }
))  # fmt: skip
_GOOD_HEARTBEATS = st.fixed_dictionaries(
    {
        "publisherId": st.text(max_size=6),
        "timestamp": st.just("2026-11-25T10:00:10.123Z"),
        "executions": st.dictionaries(st.text(max_size=6), edgy_ints, max_size=3),
    },
    optional={"state": st.text(max_size=12)},
)
_HEARTBEATS = st.one_of(_GOOD_HEARTBEATS, _GOOD_HEARTBEATS, objects(
    {
        "publisherId": st.text(max_size=6),
        "timestamp": _TIMESTAMPS,
        "executions": st.dictionaries(st.text(max_size=6), edgy_ints, max_size=3),
        "state": st.text(max_size=12),
    }
))  # fmt: skip


def _topic_of(payload: bytes) -> bytes:
    """The topic a publisher would give this payload (when it can be read at all)."""
    try:
        obj = json.loads(payload)
        return f"exec/{obj['executionId']}/{obj['type']}".encode()
    except Exception:
        return b"exec/x/agent:progress"


_MESSAGES = st.one_of(
    encoded(_EVENTS).map(lambda p: [_topic_of(p), p]),  # topic agrees: the payload is parsed
    encoded(_HEARTBEATS).map(lambda p: [HEARTBEAT_TOPIC, p]),
    st.lists(st.one_of(st.binary(max_size=24), st.sampled_from([HEARTBEAT_TOPIC, b"exec/"])),
             max_size=3),
)  # fmt: skip


@given(frames=_MESSAGES)
def test_any_message_decodes_or_is_a_protocol_error_and_the_reducer_takes_it(
    frames: list[bytes],
) -> None:
    try:
        with no_logged_errors():
            message = decode_message(frames)
    except ProtocolError as exc:
        assert str(exc)
        return
    if isinstance(message, Heartbeat):
        assert all(0 <= seq <= MAX_SEQ for seq in message.executions.values())
        return
    assert 1 <= message.seq <= MAX_SEQ
    # Every event a subscriber accepts off the wire, its reducer can apply: alone, or on top of
    # a running execution's state.
    state = apply_event(None, message)
    assert state.last_seq == message.seq
    started = parse_event(
        build_event_dict("execution:started", message.execution_id, "w", 1,
                         "2026-11-25T10:00:00.000Z", {"workflowName": "W", "agentCount": 1,
                         "agents": [{"agentId": "a", "agentName": "A"}]})
    )  # fmt: skip
    after = apply_event(apply_event(None, started), message)
    assert after.last_seq == max(1, message.seq)
    assert ExecutionState.model_validate(after.to_json_dict()) == after


# -- decode_event: decode_message's fast path for events ----------------------------------------


def _duplicated(payload: bytes, key: str, value: object, first: bool) -> bytes:
    """The payload's object with ``key`` given twice (JSON allows it; parsers pick one)."""
    if not payload.startswith(b"{") or payload == b"{}":
        return payload
    extra = json.dumps({key: value})[1:-1].encode()
    return b"{" + extra + b"," + payload[1:] if first else payload[:-1] + b"," + extra + b"}"


#: events of every type whose seq is in range (their numbers in data are still at the edges),
#: of executions whose ids look like topics' parts: with a slash, not ASCII, empty
_MOSTLY_VALID = st.builds(
    lambda e, eid: json.dumps({**e, "seq": abs(e["seq"]) % MAX_SEQ + 1, "executionId": eid}),
    _GOOD_EVENTS,
    st.sampled_from(["e1", "e1", "e1", "e1/x", "x/e1", "é", "", "exec"]),
)
_DUPLICATED = st.builds(
    _duplicated,
    _MOSTLY_VALID.map(str.encode),
    st.sampled_from(["type", "executionId", "seq", "data", "timestamp"]),
    st.one_of(st.sampled_from([*EVENT_TYPES, "e1", "x"]), json_values),
    st.booleans(),
)
_PAYLOADS = st.one_of(
    _MOSTLY_VALID.map(str.encode),
    _MOSTLY_VALID.map(str.encode),
    _DUPLICATED,
    encoded(_EVENTS),
    encoded(_HEARTBEATS),
)


def _near_topic(payload: bytes, how: str, other: str) -> bytes:
    """A topic for a payload: its own, or one that differs from it a little (``how``)."""
    try:
        obj = json.loads(payload)
        eid, kind = str(obj["executionId"]), str(obj["type"])
    except Exception:
        eid, kind = "e1", "agent:progress"
    eid, kind = {
        "own": (eid, kind),
        "other id": (other, kind),
        "id + suffix": (eid + other, kind),
        "id + path": (f"{eid}/{other}", kind),
        "path + id": (f"{other}/{eid}", kind),
        "other type": (eid, other),
        "type + slash": (eid, kind + "/"),
    }[how]
    return f"exec/{eid}/{kind}".encode(errors="surrogatepass")


#: how a topic differs from the payload's own (see _near_topic), or "raw": one of _RAW_TOPICS
_HOW = st.sampled_from(["own", "own", "own", "other id", "id + suffix", "id + path", "path + id",
                        "other type", "type + slash", "raw", "raw"])  # fmt: skip
_OTHER = st.sampled_from([*EVENT_TYPES, "e1", "x", "", "é"])
#: topics that are not an event's: not UTF-8, a bare or truncated prefix, a heartbeat's, anything
_RAW_TOPICS = st.one_of(
    st.sampled_from([b"exec/e1/", b"exec/", b"exec//agent:progress", b"exec/agent:progress",
                     b"exec/\xff/agent:progress", b"exec/e1/\xff", HEARTBEAT_TOPIC]),
    st.binary(max_size=24),
)  # fmt: skip


def _outcome(decode: Callable[[], object]) -> tuple[object, ...]:
    try:
        msg = decode()
    except ProtocolError as exc:
        return ("refused", str(exc))
    assert isinstance(msg, BaseModel)
    data = getattr(msg, "data", None)
    fields_set = (msg.model_fields_set, getattr(data, "model_fields_set", None))
    return ("accepted", type(msg), msg.model_dump(), fields_set, data.model_extra if data else None)


@settings(max_examples=500)
@given(payload=_PAYLOADS, how=_HOW, other=_OTHER, raw=_RAW_TOPICS)
def test_decode_event_is_decode_message(payload: bytes, how: str, other: str, raw: bytes) -> None:
    """Whatever the frames, the fast path gives what the full decode gives: the same event, or
    the same refusal (the same message: garbage is reported alike either way)."""
    topic = raw if how == "raw" else _near_topic(payload, how, other)
    slow = _outcome(lambda: decode_message([topic, payload]))
    assert _outcome(lambda: decode_event(topic, payload)) == slow
    assert _outcome(lambda: decode_event(topic, payload)) == slow  # its topic cached now


def test_decode_event_takes_the_type_from_the_topic_and_checks_the_id() -> None:
    topic, payload = encode_event(_event())
    event = decode_event(topic, payload)
    assert isinstance(event, AgentProgress) and event.execution_id == "e1"
    assert decode_event(topic, payload) == event  # (the topic's route is cached)
    with pytest.raises(ProtocolError, match="does not match"):
        decode_event(b"exec/e2/agent:progress", payload)
    with pytest.raises(ProtocolError, match="does not match"):
        decode_event(b"exec/e1/agent:started", payload)  # the union's answer, word for word
    heartbeat = encode_heartbeat("p", "2026-11-25T10:00:10.123Z", {"e1": 3})
    assert isinstance(decode_event(*heartbeat), Heartbeat)
