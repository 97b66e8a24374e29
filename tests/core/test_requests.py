from __future__ import annotations

import pytest
from hypothesis import given

from tests.strategies import REQUESTS, encoded, no_logged_errors
from zmqmon.core.events import MAX_SEQ
from zmqmon.core.requests import (
    OPS,
    EventsRequest,
    ExecuteRequest,
    encode_error,
    encode_ok,
    parse_reply,
    parse_request,
    request_id_of,
)
from zmqmon.errors import BadRequestError, ConflictError, NotFoundError


def test_defaults_and_echoed_id() -> None:
    req = parse_request(b'{"op": "events", "executionId": "e1", "id": 4}')
    assert isinstance(req, EventsRequest)
    assert (req.after_seq, req.limit, req.id) == (0, 1000, 4)
    assert parse_reply(encode_ok(req.id, lastSeq=3)) == {"ok": True, "lastSeq": 3, "id": 4}


def test_execute_takes_exactly_one_source() -> None:
    assert isinstance(parse_request(b'{"op": "execute", "workflowId": "w"}'), ExecuteRequest)
    with pytest.raises(BadRequestError, match="exactly one of workflowId and workflow"):
        parse_request(b'{"op": "execute", "workflowId": "w", "workflow": {}}')


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"executionId": "e"}', "missing 'op'"),
        (b'{"op": "launch"}', "unknown op 'launch'"),
        (b'{"op": "snapshot"}', "executionId: Field required"),
        (b'{"op": "events", "executionId": "e", "afterSeq": -1}', "afterSeq"),
        (b'{"op": "events", "executionId": "e", "afterSeq": 9223372036854775808}', "afterSeq"),
        (b'{"op": "events", "executionId": "e", "limit": "lots"}', "limit"),
        (b'{"op": "executions", "status": "sleeping"}', "status"),
        (b'{"op": "ping", "extra": 1}', "extra: Extra inputs are not permitted"),
    ],
)
def test_malformed_requests_are_bad_requests(raw: bytes, fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        parse_request(raw)


def test_error_replies_raise_matching_errors() -> None:
    with pytest.raises(NotFoundError, match="no execution x"):
        parse_reply(encode_error("not_found", "no execution x"))
    with pytest.raises(ConflictError):
        parse_reply(encode_error("conflict", "finished", 3))
    assert request_id_of(b'{"op": "nope", "id": "r1"}') == "r1"
    assert request_id_of(b"garbage") is None


# -- property-based: whatever a client sends ---------------------------------------------------


@given(raw=encoded(REQUESTS))
def test_any_request_parses_or_is_a_bad_request(raw: bytes) -> None:
    try:
        with no_logged_errors():
            request_id_of(raw)  # best effort: never raises
            request = parse_request(raw)
    except BadRequestError as exc:
        assert exc.code == "bad_request" and exc.message
        return
    assert request.op in OPS
    if isinstance(request, EventsRequest):
        assert 0 <= request.after_seq <= MAX_SEQ and 1 <= request.limit <= 10_000
