"""What the bridge relays: its decode is the contract's models' decode, only faster.

``relayed.decode`` takes the strict msgspec path first (zmqmon.core.strict) and falls back to
``decode_event`` (pydantic). For every input, it must give what the pydantic path alone gives:
the same record, or the same refusal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zmqmon_bridge import relayed
from zmqmon_bridge.relayed import Relayed, decode, decode_stored, page_payloads

from tests.core.test_wire import _GOOD_EVENTS, _HOW, _OTHER, _PAYLOADS, _RAW_TOPICS, _near_topic
from zmqmon.core.events import EVENT_TYPES, MAX_SEQ, build_event_dict, parse_event
from zmqmon.core.requests import encode_error, encode_ok
from zmqmon.core.wire import Heartbeat, decode_event, encode_event
from zmqmon.errors import ProtocolError


def _pydantic_path(topic: bytes, payload: bytes) -> Relayed | Heartbeat:
    msg = decode_event(topic, payload)
    return msg if isinstance(msg, Heartbeat) else Relayed.of(msg, payload)


def _outcome(decode: Callable[[], object]) -> tuple[object, ...]:
    try:
        return ("accepted", decode())
    except ProtocolError as exc:
        return ("refused", str(exc))


def _lax(event: dict[str, Any], where: str, how: str) -> bytes:
    """A well-formed event with one value in a form the models accept and a strict check does
    not (or should not): a number as a string or a float, a bool, a snake_case key, a timestamp
    with other digits or a trailing newline."""
    doc = json.loads(json.dumps(event))
    target = doc if where in ("seq", "executionId", "timestamp") else doc["data"]
    key = where
    if key not in target:
        target[key] = 1
    value = target[key]
    if how == "string":
        target[key] = str(value)
    elif how == "float":
        target[key] = float(value) if isinstance(value, int) and abs(value) < 2**60 else 1.0
    elif how == "bool":
        target[key] = True
    elif how == "snake":
        snake = "".join("_" + c.lower() if c.isupper() else c for c in key)
        target[snake] = target.pop(key)
    elif how == "digits" and isinstance(value, str):
        target[key] = value.replace("1", "\u0661")  # ARABIC-INDIC DIGIT ONE
    elif how == "newline" and isinstance(value, str):
        target[key] = value + "\n"
    return json.dumps(doc).encode()


def _in_range(event: dict[str, Any]) -> dict[str, Any]:
    """A generated event with its numbers brought into range: valid, so that the one change
    ``_lax`` makes is what decides."""
    data = dict(event["data"])
    for key, bound in (("progress", 101), ("agentCount", 1000), ("durationMs", 1000)):
        if isinstance(data.get(key), int):
            data[key] = abs(data[key]) % bound
    return {**event, "seq": abs(event["seq"]) % MAX_SEQ + 1, "data": data}


_LAX = st.builds(
    _lax,
    _GOOD_EVENTS.map(_in_range),
    st.sampled_from(["seq", "executionId", "timestamp", "progress", "agentCount", "durationMs",
                     "agentId", "userId", "workflowName"]),
    st.sampled_from(["string", "float", "bool", "snake", "digits", "newline"]),
)  # fmt: skip


@settings(max_examples=500)
@given(payload=_PAYLOADS, how=_HOW, other=_OTHER, raw=_RAW_TOPICS)
def test_decode_is_the_models_decode(payload: bytes, how: str, other: str, raw: bytes) -> None:
    """Whatever the frames, the bridge's decode gives what the models give: the same record
    (ids, seq, type, owner, timestamp, frame), or the same refusal, word for word."""
    topic = raw if how == "raw" else _near_topic(payload, how, other)
    assert _outcome(lambda: decode(topic, payload)) == _outcome(
        lambda: _pydantic_path(topic, payload)
    )


@settings(max_examples=300)
@given(payload=_LAX)
def test_nearly_strict_forms_decode_as_the_models_decode(payload: bytes) -> None:
    """Each value in a form at the edge of strictness (under its own topic, so the strict path
    is tried): the same outcome as the models'."""
    doc = json.loads(payload)
    topic = f"exec/{doc.get('executionId', 'e1')}/{doc['type']}".encode()
    assert _outcome(lambda: decode(topic, payload)) == _outcome(
        lambda: _pydantic_path(topic, payload)
    )


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_well_formed_events_take_the_strict_path(
    event_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path is the one taken for what publishers send (not a check that always
    defers): every type, as the publisher builds it, is decoded without the models."""
    data: dict[str, Any] = {
        "execution:started": {"workflowName": "W", "agentCount": 1, "userId": "bob",
                              "agents": [{"agentId": "a", "agentName": "A", "dependsOn": []}]},
        "execution:progress": {"progress": 50, "currentAgent": "a"},
        "execution:completed": {"durationMs": 12, "results": {"a": [1, {"x": None}]}},
        "execution:failed": {"error": "boom", "errorType": "ValueError", "agentId": None},
        "execution:cancelled": {"reason": "user"},
        "agent:started": {"agentId": "a", "agentName": "A"},
        "agent:progress": {"agentId": "a", "agentName": "A", "progress": 7, "message": None},
        "agent:completed": {"agentId": "a", "agentName": "A", "result": 3, "durationMs": 1},
        "agent:failed": {"agentId": "a", "agentName": "A", "error": "x", "errorType": "E"},
    }[event_type]  # fmt: skip
    topic, payload = encode_event(
        build_event_dict(event_type, "e1", "w1", 3, "2026-11-25T10:00:10.123Z", data)
    )
    expected = _pydantic_path(topic, payload)

    def refuse(*args: object) -> None:
        raise AssertionError("the models were asked")

    monkeypatch.setattr(relayed, "decode_event", refuse)
    got = decode(topic, payload)
    assert got == expected
    assert isinstance(got, Relayed) and got.user_id == (
        "bob" if event_type == "execution:started" else None
    )
    assert got.is_terminal == (event_type in {"execution:completed", "execution:failed",
                                              "execution:cancelled"})  # fmt: skip


def test_lax_forms_are_left_to_the_models() -> None:
    """A form only the models accept ("progress": "5") is accepted as they accept it; one they
    refuse is refused with their message."""
    event = build_event_dict(
        "agent:progress", "e1", "w1", 2, "2026-11-25T10:00:10.123Z",
        {"agentId": "a", "agentName": "A", "progress": 5},
    )  # fmt: skip
    topic, _ = encode_event(event)
    as_string = json.dumps({**event, "data": {**event["data"], "progress": "5"}}).encode()
    got = decode(topic, as_string)
    assert isinstance(got, Relayed) and got.seq == 2 and got.frame.endswith(as_string)
    too_big = json.dumps({**event, "data": {**event["data"], "progress": 101}}).encode()
    with pytest.raises(ProtocolError, match="progress"):
        decode(topic, too_big)


# -- events fetched from the store: cut out of the reply as stored, checked like live ones -------


@settings(max_examples=400)
@given(payload=st.one_of(_PAYLOADS, _LAX))
def test_decode_stored_is_the_models_decode(payload: bytes) -> None:
    """A stored event (any bytes a reply may hold) gives what the models give: the same record
    with the stored bytes as its frame, or the same refusal."""
    assert _outcome(lambda: decode_stored(payload)) == _outcome(
        lambda: Relayed.of(parse_event(payload), payload)
    )


def _spliced(payloads: list[bytes], last: int) -> bytes:
    """An ``events`` reply as the state service writes it: the stored bytes spliced in."""
    return b'{"ok":true,"id":7,"events":[' + b",".join(payloads) + b'],"lastSeq":%d}' % last


def test_a_page_is_cut_into_the_stored_bytes_unparsed() -> None:
    stored = [
        json.dumps(build_event_dict("agent:progress", "e1", "w1", seq, "2026-11-25T10:00:10.123Z",
                                    {"agentId": "a", "agentName": "A", "progress": seq}),
                   separators=(",", ":")).encode()
        for seq in (4, 5)
    ] + [b'{"type": "agent:progress",  "spaced": [1, 2]}', b"17"]  # fmt: skip
    assert page_payloads(_spliced(stored, 9)) == (stored, 9)
    assert page_payloads(_spliced([], 0)) == ([], 0)
    got = decode_stored(stored[0])
    assert got.seq == 4 and got.frame.endswith(stored[0])  # the bytes as stored, not re-encoded
    for bad in stored[2:]:  # kept as they are; refused one by one, like any stored garbage
        with pytest.raises(ProtocolError):
            decode_stored(bad)


def test_a_reply_that_is_not_a_plain_page_is_left_to_the_usual_reading() -> None:
    assert page_payloads(encode_error("not_found", "no execution 'x'", 7)) is None
    assert page_payloads(encode_ok(7, events=[], lastSeq=1.5)) is None  # read (and refused) there
    assert page_payloads(b'{"ok":true,"events":[1,') is None
    assert page_payloads(b"not json") is None
