"""The bridge's per-connection logic, sans I/O (contract §5).

Nothing here touches a socket, a clock it is not handed, or asyncio: the websockets shell
(:mod:`zmqmon_bridge.server`) feeds it client messages and upstream events and acts on what it
answers. It holds:

* parsing and validation of client messages, with the contract's error codes;
* what a principal (the token's user) may see;
* a token bucket per connection and the strike rule that turns "over the limit" into a close;
* the subscriptions a connection holds, and for each execution subscription the delivery cursor
  (``delivered``) that makes "in order, none twice" true across snapshot, resume and live events.

The upstream stream itself (order, duplicates, gaps, lost tails, joins) is repaired once for the
whole bridge by the project's one repair logic, :class:`zmqmon.core.clone.CloneCore`, which the
hub (:mod:`zmqmon_bridge.hub`) drives.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from zmqmon.core.wire import dumps, loads
from zmqmon.errors import ProtocolError

__all__ = [
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN",
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "ClientMessage",
    "ClientMessageError",
    "ConnectionState",
    "ExecSub",
    "Kind",
    "Principal",
    "RateLimiter",
    "TokenBucket",
    "control",
    "error_message",
    "parse_client_message",
    "text_frame",
]

#: close codes (RFC 6455): policy violation (rate), message too big, try again later (slow)
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN: Final = 1013

ERROR_CODES: Final = (
    "invalid_json",
    "invalid_message",
    "unknown_type",
    "not_found",
    "forbidden",
    "rate_limited",
    "unauthorized",
)
MAX_ID_LENGTH: Final = 256

Kind: TypeAlias = Literal["execution", "workflow", "topic"]
_KEYS: Final[dict[str, Kind]] = {
    "executionId": "execution",
    "workflowId": "workflow",
    "topic": "topic",
}


class ClientMessageError(ProtocolError):
    """A client message the bridge refuses; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ClientMessage:
    """One validated client message: ``subscribe``, ``unsubscribe`` or ``ping``."""

    type: Literal["subscribe", "unsubscribe", "ping"]
    kind: Kind | None = None
    value: str = ""
    after_seq: int | None = None


def _check_id(kind: Kind, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ClientMessageError("invalid_message", f"{kind} must be a non-empty string")
    if len(value) > MAX_ID_LENGTH:
        raise ClientMessageError("invalid_message", f"{kind} longer than {MAX_ID_LENGTH}")
    if any(ord(c) < 32 for c in value):
        raise ClientMessageError("invalid_message", f"{kind} contains control characters")
    if kind == "topic" and not value.startswith("exec/"):
        # Only execution topics are relayed; sys/ and anything else are the bridge's own.
        raise ClientMessageError("invalid_message", "topic must start with 'exec/'")
    if kind != "topic" and "/" in value:
        raise ClientMessageError("invalid_message", f"{kind} must not contain '/'")
    return value


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Validate one client message. Raises :class:`ClientMessageError` with the error code."""
    try:
        obj = loads(raw)
    except ProtocolError:
        raise ClientMessageError("invalid_json", "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ClientMessageError("invalid_message", "message must be a JSON object")
    kind_of_msg = obj.get("type")
    if not isinstance(kind_of_msg, str):
        raise ClientMessageError("invalid_message", "message needs a string 'type'")
    if kind_of_msg == "ping":
        return ClientMessage("ping")
    if kind_of_msg not in ("subscribe", "unsubscribe"):
        raise ClientMessageError("unknown_type", f"unknown message type {kind_of_msg[:64]!r}")
    present = [k for k in _KEYS if k in obj]
    if len(present) != 1:
        raise ClientMessageError(
            "invalid_message", f"{kind_of_msg} needs exactly one of executionId, workflowId, topic"
        )
    kind = _KEYS[present[0]]
    value = _check_id(kind, obj[present[0]])
    after: int | None = None
    if "afterSeq" in obj and obj["afterSeq"] is not None:
        after = obj["afterSeq"]
        if kind != "execution" or kind_of_msg != "subscribe":
            raise ClientMessageError("invalid_message", "afterSeq goes with subscribe executionId")
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after < 2**63:
            raise ClientMessageError("invalid_message", "afterSeq must be an integer 0..2**63-1")
    return ClientMessage(kind_of_msg, kind, value, after)  # type: ignore[arg-type]


def control(type_: str, **fields: Any) -> bytes:
    """A server → client control message (``connected``, ``subscribed``, ``pong`` …) as JSON."""
    return dumps({"type": type_, **fields})


def error_message(code: str, message: str, **fields: Any) -> bytes:
    """An ``error`` message; ``fields`` (e.g. ``executionId``) tell what it is about."""
    return dumps({"type": "error", "code": code, "message": message, **fields})


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked WebSocket text frame (RFC 6455 §5.2) carrying ``payload``.

    A server's frames are never masked, so one event's frame is the same bytes for every client:
    the bridge encodes it once and writes it to each connection.
    """
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


# --- authorization -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who a connection is: the token's ``sub`` and whether its roles hold ``admin``.

    Without auth configured every connection is the anonymous admin (sees everything).
    ``expires`` is the token's ``exp`` (epoch seconds), if it has one: the connection ends then.
    """

    user: str | None
    admin: bool = False
    expires: float | None = None

    def can_see(self, owner: str | None) -> bool:
        """May this principal see an execution whose ``userId`` is ``owner``?"""
        return self.admin or (self.user is not None and owner == self.user)


# --- rate limiting -----------------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; the clock is handed in."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are; False (nothing taken) if not."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


class RateLimiter:
    """A token bucket plus strikes: ``max_strikes`` refused messages in a row → close (1008)."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], max_strikes: int = 20
    ) -> None:
        self.bucket = TokenBucket(rate, burst, clock)
        self.max_strikes = max_strikes
        self.strikes = 0

    def check(self) -> Literal["ok", "limited", "close"]:
        """Account for one incoming message."""
        if self.bucket.take():
            self.strikes = 0
            return "ok"
        self.strikes += 1
        return "close" if self.strikes >= self.max_strikes else "limited"


# --- a connection's subscriptions ----------------------------------------------------------------


@dataclass
class ExecSub:
    """A connection's subscription to one execution.

    ``delivered`` is the last seq sent to the client. While ``catching_up`` (the snapshot or the
    stored events are being fetched), live events wait in ``buffer``.
    """

    delivered: int = 0
    catching_up: bool = True
    buffer: list[tuple[int, bytes]] = field(default_factory=list)


class ConnectionState:
    """What one WebSocket connection holds: who it is, its subscriptions, its rate limiter."""

    def __init__(self, connection_id: str, principal: Principal, limiter: RateLimiter) -> None:
        self.id = connection_id
        self.principal = principal
        self.limiter = limiter
        self.executions: dict[str, ExecSub] = {}
        self.workflows: set[str] = set()
        self.topics: set[str] = set()

    @property
    def subscription_count(self) -> int:
        """How many subscriptions of any kind it holds."""
        return len(self.executions) + len(self.workflows) + len(self.topics)

    def holds(self, kind: Kind, value: str) -> bool:
        """Whether it already holds that subscription."""
        if kind == "execution":
            return value in self.executions
        return value in (self.workflows if kind == "workflow" else self.topics)

    def add(self, kind: Kind, value: str) -> ExecSub | None:
        """Record a subscription; for an execution, returns its (catching-up) cursor."""
        if kind == "execution":
            sub = self.executions[value] = ExecSub()
            return sub
        (self.workflows if kind == "workflow" else self.topics).add(value)
        return None

    def remove(self, kind: Kind, value: str) -> bool:
        """Drop a subscription; False if it was not held."""
        if kind == "execution":
            return self.executions.pop(value, None) is not None
        target = self.workflows if kind == "workflow" else self.topics
        if value in target:
            target.remove(value)
            return True
        return False

    def route(self, execution_id: str, seq: int, payload: bytes) -> bytes | None:
        """An upstream event the shell found this connection wants (and may see).

        Returns the payload to send now, or None (buffered during a catch-up, or already sent).
        """
        sub = self.executions.get(execution_id)
        if sub is None:
            return payload
        if sub.catching_up:
            sub.buffer.append((seq, payload))
            return None
        if seq <= sub.delivered:
            return None
        sub.delivered = seq
        return payload

    def catch_up(
        self, execution_id: str, events: list[tuple[int, bytes]], reach: int, give_up: bool = False
    ) -> tuple[list[bytes], int | None]:
        """Feed stored events (ascending) to a catching-up subscription.

        ``reach`` is the last seq the upstream had already released when the subscription was
        registered (those events will not come live again). Returns the payloads to send, in
        order, and the seq the catch-up must still reach — or None: the catch-up is over (the
        stored events joined the buffered live ones, or ``give_up``), the buffer was released.
        """
        sub = self.executions.get(execution_id)
        if sub is None:
            return [], None
        out: list[bytes] = []
        for seq, payload in events:
            if seq > sub.delivered:
                sub.delivered = seq
                out.append(payload)
        target = sub.buffer[0][0] - 1 if sub.buffer else reach
        if not give_up and target > sub.delivered:
            return out, target
        for seq, payload in sub.buffer:
            if seq > sub.delivered:
                sub.delivered = seq
                out.append(payload)
        sub.buffer.clear()
        sub.catching_up = False
        return out, None
