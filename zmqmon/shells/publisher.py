"""EventPublisher: the :class:`~zmqmon.core.emitter.EventEmitter` delivering to a ZeroMQ PUB socket.

Each event is encoded once (:func:`~zmqmon.core.wire.encode_event`), sent as ``[topic, payload]``
and handed, with the very same payload bytes, to the store. A PUB socket never blocks: at its
high-water mark it drops, and subscribers repair from the store (contract §3).

The emitter's lock serialises every use of the socket — ``emit_*`` from any thread or asyncio
task, and the heartbeat thread — since a ZeroMQ socket is not thread-safe.

``emit`` is a hot path: no pydantic, no validation, nothing but numbering, one JSON encoding,
two ``send`` calls and a deque append.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import zmq

from zmqmon.config import DEFAULT_EVENTS
from zmqmon.core.emitter import EventEmitter
from zmqmon.core.events import format_timestamp
from zmqmon.core.wire import (
    MAX_EVENT_BYTES,
    dumps,
    encode_event,
    encode_heartbeat,
    event_topic,
    loads,
)
from zmqmon.shells.curve import CurveServer
from zmqmon.shells.store import Store

__all__ = ["EventPublisher"]

log = logging.getLogger(__name__)


class EventPublisher(EventEmitter):
    """Binds a PUB socket; ``emit_*`` numbers, sends and stores events; sends heartbeats.

    An endpoint written ``>tcp://host:port`` is connected to instead of bound (a publisher
    behind a ``zmqmon proxy`` connects to its frontend); ``endpoint`` is then the one connected.
    ``endpoint`` is the endpoint actually bound (a port 0 resolved to the port picked).
    ``heartbeat_interval`` ≤ 0 disables the heartbeat thread (tests of the pure part).
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_EVENTS,
        *,
        store: Store | None = None,
        heartbeat_interval: float = 0.5,
        sndhwm: int = 10_000,
        context: zmq.Context[Any] | None = None,
        publisher_id: str | None = None,
        clock: Callable[[], float] = time.time,
        curve: CurveServer | None = None,
    ) -> None:
        self._context = context or zmq.Context.instance()
        sock = self._context.socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, sndhwm)
        if curve is not None:  # encrypted; only authorized clients (the context's authenticator)
            curve.apply(sock)
        # Small linger: close() may wait a moment for queued frames, never forever.
        sock.setsockopt(zmq.LINGER, 200)
        # ">tcp://host:port" CONNECTS (to a `zmqmon proxy` frontend) instead of binding.
        connect = endpoint.startswith(">")
        try:
            if connect:
                sock.connect(endpoint[1:])
            else:
                sock.bind(endpoint)
        except zmq.ZMQError:
            sock.close(0)
            raise
        self._socket = sock
        self.endpoint: str = (
            endpoint[1:] if connect else sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        )
        self.publisher_id: str = publisher_id or uuid.uuid4().hex
        #: the state service owning what this publishes, named in each heartbeat (set by the
        #: service once it is bound: its endpoint, or the one it advertises)
        self.state_endpoint: str | None = None
        self.store = store
        self._closed = False
        # Bound once: the hot path avoids attribute lookups it can.
        self._send: Callable[..., Any] = sock.send
        self._store_append = store.append if store is not None else None
        super().__init__(self._deliver, clock=clock)
        self._stop = threading.Event()
        self._heartbeat_interval = heartbeat_interval
        self._heartbeat: threading.Thread | None = None
        if heartbeat_interval > 0:
            self._heartbeat = threading.Thread(
                target=self._heartbeat_loop, name="zmqmon-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _deliver(self, event: dict[str, Any]) -> None:
        # Called under the emitter's lock, in seq order. encode_event's fast path, inlined so
        # that an oversized event — truncated by encode_event — is known here: the store must
        # derive state from what was really published.
        payload = dumps(event)
        if len(payload) > MAX_EVENT_BYTES:
            topic, payload = encode_event(event)
            event = loads(payload)
        else:
            topic = event_topic(event["executionId"], event["type"])
        if not self._closed:
            send = self._send
            send(topic, zmq.SNDMORE)
            send(payload)
        append = self._store_append
        if append is not None:
            append(event, payload)

    # -- heartbeats -----------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, int]:
        """Send one ``sys/heartbeat`` now; returns the executions it listed."""
        executions = self.last_seqs()
        topic, payload = encode_heartbeat(
            self.publisher_id, format_timestamp(self.now()), executions, self.state_endpoint
        )
        with self._lock:
            if not self._closed:
                self._send(topic, zmq.SNDMORE)
                self._send(payload)
        return executions

    def _heartbeat_loop(self) -> None:
        while True:
            try:
                self.heartbeat()
            except Exception:  # a failed beat must not end the beating
                log.exception("heartbeat failed")
            if self._stop.wait(self._heartbeat_interval):
                return

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop heartbeats and close the socket. Later events still reach the store."""
        if self._closed:
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        with self._lock:
            self._closed = True
            self._socket.close()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
