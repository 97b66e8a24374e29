from __future__ import annotations

import pytest

from zmqmon.core.events import build_event_dict, event_to_dict, format_timestamp, parse_event
from zmqmon.core.wire import (
    HEARTBEAT_TOPIC,
    MAX_EVENT_BYTES,
    Heartbeat,
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
