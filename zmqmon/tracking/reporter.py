"""The reporter: a thread that sends one tracked execution's events to a state service.

The watched code only calls :meth:`Reporter.add`, which puts the event in the outbox
(:class:`~zmqmon.core.outbox.Outbox`: bounded, progress coalesced) under a lock and returns — it
never blocks on the network and never raises. The thread sends numbered ``report`` requests on a
DEALER socket (contract §4 plus zmqmon's ``report`` op) and waits for each reply:

* a reply: the batch is done; ``closed: true`` (the execution was cancelled, or given up by the
  service) ends the reporting — :attr:`Reporter.closed` is set and nothing more is sent;
* no reply within ``timeout``: the service is away. The socket is replaced and the same batch is
  sent again after a backoff (0.1 s, doubling to 2 s) for as long as it takes — the events wait in
  the bounded outbox meanwhile;
* a refusal (``conflict``, ``not_found``, ``bad_request``): the service will not take this
  execution's events (e.g. it restarted and closed the execution as interrupted); the rest is
  dropped and counted, and a warning is logged once.

While the execution runs and nothing else is sent, an empty report every ``keepalive`` seconds
(1 s) tells the service the reporter is alive (it gives up on a silent one after a minute) and
brings back a cancellation.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from typing import Any, Final

import zmq

from zmqmon.core.outbox import Item, Outbox
from zmqmon.core.requests import encode_request
from zmqmon.core.wire import dumps, loads
from zmqmon.errors import ProtocolError

__all__ = ["Reporter"]

log = logging.getLogger("zmqmon.track")

_GATHER: Final = 0.02  # seconds to let a few more events join a batch before sending it
_MAX_BACKOFF: Final = 2.0


class Reporter:
    """Sends the events of execution ``execution_id`` (of ``workflow_id``) to ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        execution_id: str,
        workflow_id: str,
        *,
        capacity: int = 10_000,
        timeout: float = 2.0,
        keepalive: float = 1.0,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.keepalive = keepalive
        self.key = secrets.token_urlsafe(24)  # who opened the execution: only this reporter
        self.outbox = Outbox(capacity, size=lambda item: len(dumps(item)))
        self._context = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        #: set once the service has the execution (its first report was answered)
        self.opened = threading.Event()
        #: the service closed the execution (cancelled it, or gave up on it)
        self.closed = False
        #: why the service refused this execution's events, if it did
        self.refused: str | None = None
        #: events given up on (outbox full, or refused by the service)
        self.lost = 0
        #: the service's event stream, learned from its first reply
        self.events_endpoint: str | None = None
        self.last_seq = 0
        self._thread = threading.Thread(
            target=self._run, name=f"zmqmon-track-{execution_id[:8]}", daemon=True
        )
        self._thread.start()

    # -- the watched code's side ---------------------------------------------------------------

    def add(self, item: Item) -> None:
        """Queue one event (any thread); never blocks on the network, never raises."""
        try:
            with self._lock:
                self.outbox.add(item)
            self._wake.set()
        except Exception:  # pragma: no cover - nothing the watched code did may fail here
            log.exception("zmqmon.track: could not queue an event")

    @property
    def dropped(self) -> int:
        """Events that will never reach the service."""
        with self._lock:
            return self.outbox.dropped + self.lost

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added was acknowledged (or given up on); False on timeout."""
        self._wake.set()
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        """Has the reporting ended (everything through the terminal event sent, or refused)?"""
        return self._done.is_set()

    # -- the thread ------------------------------------------------------------------------------

    def _socket(self) -> Any:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        return sock

    def _run(self) -> None:
        sock = self._socket()
        backoff = 0.1
        last_sent = time.monotonic()
        try:
            while True:
                with self._lock:
                    batch = self.outbox.take()
                    ended, idle = self.outbox.ended, self.outbox.idle
                    if (
                        batch is None
                        and not ended
                        and time.monotonic() - last_sent > self.keepalive
                    ):
                        batch = self.outbox.keepalive()
                if batch is None:
                    if ended and idle:
                        return
                    self._wake.wait(self.keepalive / 2)
                    self._wake.clear()
                    time.sleep(_GATHER)  # a few more events join the batch
                    continue
                number, items = batch
                reply = self._send(sock, number, items)
                last_sent = time.monotonic()
                if reply is None:  # the service is away: same batch again, later
                    sock.close(0)
                    sock = self._socket()
                    self._wake.wait(backoff)
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                backoff = 0.1
                if not self._on_reply(number, reply):
                    return
        except Exception:  # the reporter dies quietly, never the watched program
            log.exception("zmqmon.track: the reporter of %s stopped", self.execution_id)
        finally:
            sock.close(0)
            self._done.set()

    def _send(self, sock: Any, number: int, items: list[Item]) -> dict[str, Any] | None:
        request = encode_request(
            "report",
            number,
            executionId=self.execution_id,
            workflowId=self.workflow_id,
            key=self.key,
            batch=number,
            events=items,
        )
        sock.send(request)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                return None
            try:
                reply = loads(sock.recv())
            except ProtocolError:
                continue
            if isinstance(reply, dict) and reply.get("id") == number:
                return reply

    def _on_reply(self, number: int, reply: dict[str, Any]) -> bool:
        """Take a reply; False when reporting is over."""
        if reply.get("ok") is not True:
            error = reply.get("error") or {}
            with self._lock:
                self.refused = f"{error.get('code')}: {error.get('message')}"
                self.lost += self.outbox.abandon()
            log.warning(
                "zmqmon.track: the service refused the events of execution %s (%s); "
                "the program goes on unwatched",
                self.execution_id,
                self.refused,
            )
            return False
        self.opened.set()
        with self._lock:
            self.outbox.acked(number)
            self.events_endpoint = reply.get("events") or self.events_endpoint
            self.last_seq = int(reply.get("lastSeq") or self.last_seq)
            if reply.get("closed"):  # cancelled, or given up on, by the service
                self.closed = True
                self.outbox.abandon()  # closed by someone else: nothing more is wanted
                return False
            return not (self.outbox.ended and self.outbox.idle)
