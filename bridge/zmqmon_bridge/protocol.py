"""The bridge's per-connection logic, sans I/O (contract §5).

Nothing here touches a socket, a clock it is not handed, or asyncio: the websockets shell
(:mod:`zmqmon_bridge.server`) feeds it client messages and upstream events and acts on what it
answers. It holds:

* parsing and validation of client messages, with the contract's error codes;
* what a principal (the token's user) may see;
* a token bucket per connection and the strike rule that turns "over the limit" into a close;
* the subscriptions a connection holds (:class:`Subscription` values, each with its delivery mode)
  and the congestion policy that follows from them.

Order, duplicates, gaps, catch-up from the store and state-mode snapshots are decided by the
project's one repair logic, :class:`zmqmon.core.clone.CloneCore`: once for the whole bridge per
delivery mode (the hub's lanes) and once per connection for its execution subscriptions.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from zmqmon.core.delivery import MODES, Mode
from zmqmon.core.wire import EXEC_PREFIX, dumps, execution_prefix, loads
from zmqmon.errors import ProtocolError

__all__ = [
    "CLOSE_POLICY",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN",
    "ERROR_CODES",
    "MAX_ID_LENGTH",
    "ClientMessage",
    "ClientMessageError",
    "MAX_SEQ",
    "ConnectionState",
    "Kind",
    "Principal",
    "RateLimiter",
    "Subscription",
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
    "unavailable",
)
MAX_ID_LENGTH: Final = 256

Kind: TypeAlias = Literal["execution", "workflow", "topic"]
_KEYS: Final[dict[str, Kind]] = {
    "executionId": "execution",
    "workflowId": "workflow",
    "topic": "topic",
}
_NAMES: Final[dict[Kind, str]] = {kind: name for name, kind in _KEYS.items()}
MAX_SEQ: Final = 2**63 - 1  # SQLite's integers: a larger afterSeq names nothing


class ClientMessageError(ProtocolError):
    """A client message the bridge refuses; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a subscription selects: an execution, a workflow, or a raw topic prefix."""

    kind: Kind
    value: str

    @property
    def upstream_prefix(self) -> str:
        """The ZMQ prefix it needs (topics carry no workflow id: a workflow needs ``exec/``)."""
        if self.kind == "execution":
            return execution_prefix(self.value)
        return EXEC_PREFIX if self.kind == "workflow" else self.value

    @property
    def key(self) -> dict[str, str]:
        """How messages name it: ``{"executionId": …}``, ``{"workflowId": …}``, ``{"topic": …}``."""
        return {_NAMES[self.kind]: self.value}


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One validated client message: ``subscribe``, ``unsubscribe`` or ``ping``."""

    type: Literal["subscribe", "unsubscribe", "ping"]
    subscription: Subscription | None = None
    after_seq: int | None = None
    mode: Mode = "log"


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
        if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_SEQ:
            raise ClientMessageError(
                "invalid_message", f"afterSeq must be an integer from 0 to {MAX_SEQ}"
            )
    mode = obj.get("mode")
    if mode is None:
        mode = "log"
    elif kind_of_msg != "subscribe":
        raise ClientMessageError("invalid_message", "mode goes with subscribe")
    elif mode not in MODES:
        raise ClientMessageError("invalid_message", "mode must be 'log' or 'state'")
    return ClientMessage(
        kind_of_msg,  # type: ignore[arg-type]
        Subscription(kind, value),
        after,
        mode,  # type: ignore[arg-type]
    )


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


class ConnectionState:
    """What one WebSocket connection holds: who it is, its subscriptions (each with its delivery
    mode), its rate limiter."""

    def __init__(self, connection_id: str, principal: Principal, limiter: RateLimiter) -> None:
        self.id = connection_id
        self.principal = principal
        self.limiter = limiter
        self.subscriptions: dict[Subscription, Mode] = {}
        self._log_count = 0  # subscriptions in log mode

    @property
    def subscription_count(self) -> int:
        """How many subscriptions of any kind it holds."""
        return len(self.subscriptions)

    @property
    def log_policy(self) -> bool:
        """True while it holds a ``log``-mode subscription: a client too slow for it is closed
        (1013) rather than skipped; with only ``state``-mode ones it is never closed for that."""
        return self._log_count > 0

    def holds(self, sub: Subscription) -> Mode | None:
        """The mode it holds a subscription in, or None."""
        return self.subscriptions.get(sub)

    def add(self, sub: Subscription, mode: Mode) -> None:
        """Record a subscription (replacing one of another mode)."""
        self.remove(sub)
        self.subscriptions[sub] = mode
        if mode == "log":
            self._log_count += 1

    def remove(self, sub: Subscription) -> Mode | None:
        """Drop a subscription; returns the mode it was held in (None if it was not)."""
        mode = self.subscriptions.pop(sub, None)
        if mode == "log":
            self._log_count -= 1
        return mode

    def clear(self) -> list[tuple[Subscription, Mode]]:
        """Drop every subscription; returns what was held."""
        held = list(self.subscriptions.items())
        self.subscriptions.clear()
        self._log_count = 0
        return held
