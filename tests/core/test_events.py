from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import reducer_fixtures
from zmqmon.core.events import (
    EVENT_TYPES,
    EVENT_VALIDATORS,
    TERMINAL_TYPES,
    event_to_dict,
    parse_event,
)
from zmqmon.errors import ProtocolError

ALL_EVENTS = [e for f in reducer_fixtures() for e in f["events"]]


def test_fixtures_cover_every_event_type() -> None:
    assert {e["type"] for e in ALL_EVENTS} == set(EVENT_TYPES)


@pytest.mark.parametrize("raw", ALL_EVENTS, ids=lambda e: f"{e['executionId']}-{e['seq']}")
def test_parse_then_dump_is_identity_on_wire_dicts(raw: dict) -> None:
    event = parse_event(raw)
    dumped = event_to_dict(event)
    for key in ("type", "executionId", "workflowId", "timestamp", "seq"):
        assert dumped[key] == raw[key]
    assert parse_event(dumped) == event
    for key, value in raw["data"].items():
        if key != "agents":  # agents gain their default dependsOn: []
            assert dumped["data"][key] == value


@pytest.mark.parametrize("raw", ALL_EVENTS, ids=lambda e: f"{e['executionId']}-{e['seq']}")
def test_each_type_has_its_own_validator_and_only_takes_its_type(raw: dict) -> None:
    payload = json.dumps(raw).encode()
    assert set(EVENT_VALIDATORS) == set(EVENT_TYPES)
    assert EVENT_VALIDATORS[raw["type"]](payload) == parse_event(payload)
    assert parse_event(payload).is_terminal == (raw["type"] in TERMINAL_TYPES)
    other = next(t for t in EVENT_TYPES if t != raw["type"])
    with pytest.raises(ValueError):  # (a pydantic ValidationError)
        EVENT_VALIDATORS[other](payload)


def test_snake_case_attributes() -> None:
    event = parse_event(next(e for e in ALL_EVENTS if e["type"] == "agent:completed"))
    assert event.data.agent_name  # type: ignore[union-attr]
    assert event.execution_id.startswith("exec-")


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"type": "agent:exploded"}, "does not match any of the expected tags"),
        ({"seq": 0}, "seq: Input should be greater than or equal to 1"),
        ({"timestamp": "2026-11-25 10:00:00"}, "timestamp: String should match pattern"),
        ({"timestamp": "٢٠٢٦-11-25T10:00:00.000Z"}, "timestamp: String should match pattern"),
        ({"executionId": ""}, "executionId: String should have at least 1 character"),
        ({"data": {"agentId": "a", "agentName": "A", "progress": 101}}, "data.progress"),
        ({"data": {"agentName": "A", "progress": 1}}, "data.agentId: Field required"),
    ],
)
def test_invalid_events_name_the_field(patch: dict, fragment: str) -> None:
    raw = dict(next(e for e in ALL_EVENTS if e["type"] == "agent:progress"), **patch)
    with pytest.raises(ProtocolError, match=fragment.replace("(", r"\(")):
        parse_event(raw)


def test_extra_data_keys_are_kept() -> None:
    raw = next(e for e in ALL_EVENTS if e["type"] == "agent:started")
    event = parse_event({**raw, "data": {**raw["data"], "host": "n1"}})
    assert event_to_dict(event)["data"]["host"] == "n1"


def test_parse_timestamp_is_the_inverse_of_format_timestamp() -> None:
    import math

    from zmqmon.core.events import format_timestamp, parse_timestamp

    for t in (0.0, 1_764_000_000.123, 1_764_000_059.999, 2_000_000_000.5):
        assert abs(parse_timestamp(format_timestamp(t)) - t) < 0.001
    assert math.isnan(parse_timestamp("yesterday"))
    assert math.isnan(parse_timestamp("2026-11-25T10:00:00.xyzZ"))


@given(st.lists(st.floats(min_value=0, max_value=4_000_000_000), min_size=1, max_size=20))
def test_format_timestamp_matches_datetime_whatever_came_before(times: list[float]) -> None:
    # The per-second and per-millisecond caches never hand out another instant's text.
    from datetime import UTC, datetime

    from zmqmon.core.events import format_timestamp

    for t in times + times[::-1]:
        ms = round(t * 1000)
        expected = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        assert format_timestamp(t) == f"{expected}.{ms % 1000:03d}Z"
