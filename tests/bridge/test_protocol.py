"""The bridge's sans-I/O per-connection logic, without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zmqmon_bridge.protocol import (
    ClientMessage,
    ClientMessageError,
    ConnectionState,
    Principal,
    RateLimiter,
    TokenBucket,
    control,
    error_message,
    parse_client_message,
)

from tests.strategies import edgy_ints, encoded, json_values, no_logged_errors, objects


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def conn(principal: Principal | None = None) -> ConnectionState:
    return ConnectionState("c1", principal or Principal(None, True), RateLimiter(10, 10, Clock()))


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"type": "ping"}', ClientMessage("ping")),
        (
            '{"type": "subscribe", "executionId": "e1"}',
            ClientMessage("subscribe", "execution", "e1"),
        ),
        (
            '{"type": "subscribe", "executionId": "e1", "afterSeq": 7}',
            ClientMessage("subscribe", "execution", "e1", 7),
        ),
        ('{"type": "subscribe", "workflowId": "w"}', ClientMessage("subscribe", "workflow", "w")),
        ('{"type": "subscribe", "topic": "exec/"}', ClientMessage("subscribe", "topic", "exec/")),
        (
            '{"type": "unsubscribe", "topic": "exec/x/"}',
            ClientMessage("unsubscribe", "topic", "exec/x/"),
        ),
        (
            b'{"type": "unsubscribe", "executionId": "e"}',
            ClientMessage("unsubscribe", "execution", "e"),
        ),
    ],
)
def test_valid_messages(raw: str, expected: ClientMessage) -> None:
    assert parse_client_message(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("{", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"executionId": "e"}', "invalid_message"),
        ('{"type": 3}', "invalid_message"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "subscribe"}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "e", "topic": "exec/"}', "invalid_message"),
        ('{"type": "subscribe", "executionId": ""}', "invalid_message"),
        ('{"type": "subscribe", "executionId": 5}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "a/b"}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "' + "x" * 300 + '"}', "invalid_message"),
        ('{"type": "subscribe", "topic": "sys/heartbeat"}', "invalid_message"),
        ('{"type": "subscribe", "topic": "exec/\\u0000"}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "e", "afterSeq": -1}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "e", "afterSeq": "3"}', "invalid_message"),
        ('{"type": "subscribe", "executionId": "e", "afterSeq": true}', "invalid_message"),
        # past SQLite's signed 64-bit INTEGER: refused here, not an overflow at the store
        (f'{{"type": "subscribe", "executionId": "e", "afterSeq": {2**63}}}', "invalid_message"),
        ('{"type": "subscribe", "topic": "exec/", "afterSeq": 3}', "invalid_message"),
    ],
)
def test_invalid_messages_name_their_code(raw: str, code: str) -> None:
    with pytest.raises(ClientMessageError) as info:
        parse_client_message(raw)
    assert info.value.code == code
    assert info.value.message


def test_control_and_error_messages_are_json() -> None:
    assert json.loads(control("subscribed", topic="exec/")) == {
        "type": "subscribed",
        "topic": "exec/",
    }
    assert json.loads(error_message("forbidden", "no")) == {
        "type": "error",
        "code": "forbidden",
        "message": "no",
    }


# -- authorization -----------------------------------------------------------------------------


def test_principals_see_their_own_executions_admins_see_all() -> None:
    alice = Principal("alice")
    assert alice.can_see("alice")
    assert not alice.can_see("bob")
    assert not alice.can_see(None)  # an execution nobody owns is not alice's
    assert Principal("root", admin=True).can_see("bob")
    assert Principal("root", admin=True).can_see(None)


# -- rate limiting -----------------------------------------------------------------------------


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.t += 0.5  # one token back
    assert bucket.take() and not bucket.take()
    clock.t += 100  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_strikes_then_close_and_a_good_message_resets() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=2, clock=clock, max_strikes=3)
    assert [limiter.check() for _ in range(4)] == ["ok", "ok", "limited", "limited"]
    clock.t += 1
    assert limiter.check() == "ok"  # strikes reset
    assert [limiter.check() for _ in range(3)] == ["limited", "limited", "close"]


# -- a connection's subscriptions ----------------------------------------------------------------


def test_subscriptions_are_counted_added_and_removed() -> None:
    c = conn()
    c.add("topic", "exec/")
    c.add("workflow", "w")
    c.add("execution", "e")
    assert c.subscription_count == 3
    assert c.holds("topic", "exec/") and c.holds("execution", "e")
    assert c.remove("workflow", "w") and not c.remove("workflow", "w")
    assert c.remove("execution", "e") and not c.holds("execution", "e")
    assert c.subscription_count == 1


def test_route_without_execution_subscription_passes_everything() -> None:
    c = conn()
    c.add("topic", "exec/")
    assert c.route("e", 1, b"p1") == b"p1"


def test_catch_up_buffers_live_events_then_joins_them_none_twice() -> None:
    c = conn()
    sub = c.add("execution", "e")
    assert sub is not None
    sub.delivered = 3  # the snapshot's lastSeq
    # live events arrive while stored ones are fetched
    assert c.route("e", 6, b"6") is None
    assert c.route("e", 7, b"7") is None
    # the store had up to 5: 4, 5 then the buffered 6, 7
    out, missing = c.catch_up("e", [(2, b"2"), (3, b"3"), (4, b"4"), (5, b"5")], reach=0)
    assert out == [b"4", b"5", b"6", b"7"] and missing is None
    assert c.route("e", 7, b"7") is None  # already sent
    assert c.route("e", 8, b"8") == b"8"


def test_catch_up_waits_until_the_store_reaches_the_live_stream() -> None:
    c = conn()
    sub = c.add("execution", "e")
    assert sub is not None
    sub.delivered = 0
    c.route("e", 9, b"9")
    out, missing = c.catch_up("e", [(1, b"1"), (2, b"2")], reach=0)
    assert out == [b"1", b"2"] and missing == 8  # the store lags: 3..8 still to come
    out, missing = c.catch_up(
        "e", [(3, b"3"), (4, b"4"), (5, b"5"), (6, b"6"), (7, b"7"), (8, b"8")], 0
    )
    assert out == [b"3", b"4", b"5", b"6", b"7", b"8", b"9"] and missing is None


def test_catch_up_reaches_what_was_released_before_registration() -> None:
    c = conn()
    sub = c.add("execution", "e")
    assert sub is not None
    sub.delivered = 2
    out, missing = c.catch_up("e", [], reach=4)  # 3, 4 went out before this client came
    assert out == [] and missing == 4
    out, missing = c.catch_up("e", [(3, b"3"), (4, b"4")], reach=4)
    assert out == [b"3", b"4"] and missing is None


def test_catch_up_can_give_up_and_release_the_buffer() -> None:
    c = conn()
    sub = c.add("execution", "e")
    assert sub is not None
    c.route("e", 5, b"5")
    out, missing = c.catch_up("e", [], reach=0, give_up=True)
    assert out == [b"5"] and missing is None


def test_catch_up_of_a_dropped_subscription_is_a_no_op() -> None:
    c = conn()
    assert c.catch_up("gone", [(1, b"1")], reach=0) == ([], None)


# -- property-based: whatever a client sends ---------------------------------------------------

_IDS = st.one_of(st.text(max_size=12), st.just("exec/"), st.text(max_size=3).map("exec/{}".format))
_CLIENT_MESSAGES = objects(
    {
        "type": st.sampled_from(["subscribe", "unsubscribe", "ping", "pong", ""]),
        "executionId": _IDS,
        "workflowId": _IDS,
        "topic": _IDS,
        "afterSeq": edgy_ints,
        "mode": st.sampled_from(["log", "state", "LOG"]),
    }
)


@given(raw=st.one_of(encoded(_CLIENT_MESSAGES), encoded(json_values)), as_text=st.booleans())
def test_any_client_message_parses_or_gets_its_precise_error(raw: bytes, as_text: bool) -> None:
    frame: str | bytes = raw.decode("utf-8", "replace") if as_text else raw
    try:
        with no_logged_errors():
            message = parse_client_message(frame)
    except ClientMessageError as exc:
        assert exc.code in {"invalid_json", "invalid_message", "unknown_type"}
        assert isinstance(exc.message, str) and exc.message
        return
    assert message.type in ("subscribe", "unsubscribe", "ping")
    if message.after_seq is not None:
        assert 0 <= message.after_seq < 2**63 and message.kind == "execution"
