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
    Subscription,
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
            ClientMessage("subscribe", Subscription("execution", "e1")),
        ),
        (
            '{"type": "subscribe", "executionId": "e1", "afterSeq": 7}',
            ClientMessage("subscribe", Subscription("execution", "e1"), 7),
        ),
        (
            '{"type": "subscribe", "workflowId": "w", "mode": "state"}',
            ClientMessage("subscribe", Subscription("workflow", "w"), mode="state"),
        ),
        (
            '{"type": "subscribe", "topic": "exec/", "mode": "log"}',
            ClientMessage("subscribe", Subscription("topic", "exec/")),
        ),
        (
            '{"type": "unsubscribe", "topic": "exec/x/"}',
            ClientMessage("unsubscribe", Subscription("topic", "exec/x/")),
        ),
        (
            b'{"type": "unsubscribe", "executionId": "e"}',
            ClientMessage("unsubscribe", Subscription("execution", "e")),
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
        (
            '{"type": "subscribe", "executionId": "e", "afterSeq": 9223372036854775808}',
            "invalid_message",
        ),
        ('{"type": "subscribe", "topic": "exec/", "mode": "fast"}', "invalid_message"),
        ('{"type": "subscribe", "topic": "exec/", "mode": 1}', "invalid_message"),
        ('{"type": "unsubscribe", "topic": "exec/", "mode": "log"}', "invalid_message"),
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


def test_subscriptions_are_counted_with_their_mode_and_set_the_policy() -> None:
    c = conn()
    topic, wf, ex = (
        Subscription("topic", "exec/"),
        Subscription("workflow", "w"),
        Subscription("execution", "e"),
    )
    c.add(topic, "state")
    c.add(wf, "state")
    assert c.subscription_count == 2 and not c.log_policy  # state only: never closed for slow
    c.add(ex, "log")
    assert c.log_policy and c.holds(ex) == "log" and c.holds(topic) == "state"
    c.add(ex, "state")  # the same subscription in another mode replaces it
    assert c.subscription_count == 3 and not c.log_policy
    assert c.remove(wf) == "state" and c.remove(wf) is None
    assert sorted(s.kind for s, _ in c.clear()) == ["execution", "topic"]
    assert c.subscription_count == 0


def test_a_subscription_names_its_upstream_prefix_and_message_key() -> None:
    assert Subscription("execution", "x").upstream_prefix == "exec/x/"
    assert Subscription("workflow", "w").upstream_prefix == "exec/"
    assert Subscription("topic", "exec/ab").upstream_prefix == "exec/ab"
    assert Subscription("workflow", "w").key == {"workflowId": "w"}
    assert Subscription("execution", "x").key == {"executionId": "x"}


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
        assert (
            0 <= message.after_seq < 2**63
            and message.subscription is not None
            and message.subscription.kind == "execution"
        )
