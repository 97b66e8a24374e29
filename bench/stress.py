"""Burst stress tool for the WebSocket bridge: ``python -m bench.stress``.

It measures what the issue "under overload: memory bounded, never silent, nothing lost" is about:
a burst of events faster than the bridge can relay, to many WebSocket clients that each follow one
execution. Everything runs as real, separate processes, on loopback and free ports:

* the **burst service** (``python -m bench.stress service --db PATH``): a real
  :class:`zmqmon.services.server.Server` (event stream, state service, SQLite store). On command
  it starts E executions (``execution:started`` and ``agent:started``), then, from a thread,
  publishes ``agent:progress`` round-robin across them as fast as it can (or at ``--rate``) for S
  seconds, then completes each execution. It samples every execution's last seq every 10 ms
  (``time.monotonic()``, system-wide on Linux), the timeline staleness is computed from;
* the **bridge**: the real command ``zmqmon bridge --events … --state … --port 0``;
* **clients** (in this process): N raw RFC 6455 clients (asyncio protocols, no library), client i
  subscribed to ``{"type":"subscribe","topic":"exec/<execution i mod E>/","mode":MODE}``. They find
  each event's ``"seq":N`` in the bytes (no JSON parsing in log mode); in state mode they keep an
  exact state with the project's reducer (``apply_event``; consecutive ``agent:progress`` of a
  running agent are coalesced, which the reducer makes exact) and accept a ``snapshot`` at any
  time. A client closed by the bridge (e.g. 1013, too slow) reconnects and resumes, as the
  contract says (log: ``executionId`` + ``afterSeq``; state: ``executionId``, i.e. a snapshot);
* a **probe** process (``python -m bench.stress probe …``): one more WebSocket client sending
  ``{"type":"ping"}`` every 50 ms, ``GET /api/ws/health`` every 100 ms, and the RSS and CPU time
  of the bridge, the service and this process (``/proc``) every 50 ms.

Before the burst, the clients are connected and subscribed, and warm-up events are published until
every client has seen its execution's events (the bridge's upstream subscription is live) and is
caught up; in state mode each client then starts from the state service's snapshot. Each run ends
when every client has received its execution's terminal event, or at the hard deadline
(``--deadline`` seconds after the burst ended), whichever is first; clients not done by then are
reported incomplete.

Usage::

    python -m bench.stress [--seconds 1,3,10] [--mode log,state] [--clients 100]
        [--executions 100] [--agents 1] [--rate 0] [--deadline 90] [--sigterm]
        [--no-reconnect] [--json] [--dump FILE]

``--seconds`` and ``--mode`` take comma-separated lists: one run (fresh processes) per burst
length × mode. ``--rate`` caps the publish rate (events/s; 0 = as fast as possible).
``--executions`` below ``--clients`` makes several clients follow each execution (fan-out).
``--sigterm`` sends SIGTERM to the bridge halfway through the burst and measures how long it
takes to exit (killed after ``--sigterm-timeout`` s). ``--json`` prints the results as JSON
instead of the table. ``--dump FILE`` writes the series behind the figures (every ping and
health round trip, RSS and CPU samples, each client's progress every 100 ms, the publisher's seq
timeline), in seconds from the burst's start, to see *when* things happen.

Columns of the table (times are from the start of the burst unless said otherwise):

* ``burst``, ``mode``: burst seconds and subscription mode;
* ``events``, ``rate/s``: events published by the service in the run (flood + completions), and
  the flood's publish rate;
* ``bridge MB``: the bridge's RSS just before the burst → its peak during the run;
  ``svc MB``: the service's peak RSS;
* ``catch-up``: seconds from the end of the burst (last terminal event published) until every
  client had its terminal event, or ``n/m incomplete`` at the deadline;
* ``deliv/s``: events delivered to all clients from the burst's start until the last one
  completed (or the deadline), per second (it cannot exceed what was published per second);
* ``catch-up deliv/s``: events delivered after the burst ended / time from the burst's end until
  the last client completed (or the deadline): how fast the backlog left at the burst's end was
  drained, the bridge's own relay rate whatever the publisher's; ``-`` when there was no backlog
  (under 100 events owed: the bridge kept up). In state mode a snapshot may stand for much of
  the backlog, so this rate can be low there without anything being slow;
* ``silence``: the longest time any client went without receiving an event while it was still
  owed events (from the burst's start until its terminal event, or the deadline);
* ``stale p99/max``: every 50 ms, per client, the age of the oldest event published for its
  execution that it has not yet seen (0 when caught up), from the burst's start until all are
  complete or the deadline: the 99th percentile and the maximum over all clients and samples;
* ``ping p50/p99/max``: round trips of ``ping`` → ``pong`` sent during the run (a ping still
  unanswered at the end counts with its age then, a lower bound); ``ping unans/refused``: pings
  never answered (a closed connection's outstanding pings included; the pinger reconnects), and
  pings answered with an ``error`` instead of ``pong`` (e.g. ``rate_limited``);
* ``health p99``: round trip of ``GET /api/ws/health`` (unanswered ones count as above);
* ``correctness``: log mode: events lost (skipped: a seq jump never filled), duplicated and
  reordered, over every client; state mode: clients whose final state equals the state service's
  snapshot of their execution; ``reconn``: reconnections after the bridge closed a client;
* ``SIGTERM``: with ``--sigterm``, seconds from SIGTERM (mid-burst) to the bridge's exit.

Under the table, per run: CPU used by the bridge, the service and this process (the clients)
during the run, as a share of one core — if the clients' share nears 100 %, this tool, not the
bridge, was the bottleneck — and any notes (bridge exit codes, close codes, errors).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import bisect
import contextlib
import itertools
import json
import os
import re
import signal
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 0.01  # the service's seq timeline resolution (s)
BUCKET = 0.01  # the clients' arrival timeline resolution (s)
STALENESS_STEP = 0.05  # staleness sample period (s)
PING_EVERY = 0.05
HEALTH_EVERY = 0.1
RSS_EVERY = 0.05
_MIN_BACKLOG = 100  # deliveries owed when the burst ended, below which there is no catch-up rate
GRACE = 5.0  # after the run, how long the probe waits for late pongs and health answers
WS_PATH = "/api/ws"

# --- the burst service -----------------------------------------------------------------------


def _service_main(db: str) -> int:
    """``python -m bench.stress service --db PATH``: a real Server; commands on stdin.

    Line 1 of stdout: the endpoints (JSON). Commands, each answered by one JSON line:
    ``create E A`` (E executions with A agents each: started, agents started), ``warm`` (one
    ``agent:progress`` per execution), ``burst SECONDS RATE`` (answered when the burst is over,
    with its report), ``quit``.
    """
    from zmqmon.services.server import SWITCH_INTERVAL, Server

    sys.setswitchinterval(SWITCH_INTERVAL)  # as `zmqmon serve` runs
    server = Server(events="tcp://127.0.0.1:0", state="tcp://127.0.0.1:0", db=db).start()
    out = threading.Lock()

    def reply(obj: Any) -> None:
        with out:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    reply(server.endpoints)
    pub = server.publisher
    workflow_id = uuid.uuid4().hex
    executions: list[str] = []
    agents: list[tuple[str, str]] = []
    burst: threading.Thread | None = None
    try:
        for line in sys.stdin:
            cmd = line.split()
            if not cmd:
                continue
            if cmd[0] == "create":
                n, a = int(cmd[1]), int(cmd[2])
                agents = [(f"agent-{k + 1}", f"Worker{k + 1}") for k in range(a)]
                infos: list[Mapping[str, Any]] = [
                    {"agentId": i, "agentName": nm, "dependsOn": []} for i, nm in agents
                ]
                for _ in range(n):
                    eid = uuid.uuid4().hex
                    executions.append(eid)
                    pub.emit_execution_started(
                        eid, workflow_id, workflow_name="stress", agent_count=a, agents=infos
                    )
                    for aid, name in agents:
                        pub.emit_agent_started(eid, workflow_id, aid, name)
                server.store.flush()
                reply(
                    {
                        "executions": executions,
                        "workflowId": workflow_id,
                        "lastSeqs": {e: pub.last_seq(e) for e in executions},
                    }
                )
            elif cmd[0] == "warm":
                aid, name = agents[0]
                for eid in executions:
                    pub.emit_agent_progress(eid, workflow_id, aid, name, 0, "warm-up")
                reply({"lastSeqs": {e: pub.last_seq(e) for e in executions}})
            elif cmd[0] == "burst":
                seconds, rate = float(cmd[1]), float(cmd[2])
                burst = threading.Thread(
                    target=_burst,
                    args=(pub, executions, workflow_id, agents, seconds, rate, reply),
                    daemon=True,
                )
                burst.start()
            elif cmd[0] == "quit":
                break
    finally:
        if burst is not None:
            burst.join()
        server.stop()
    return 0


def _burst(
    pub: Any,
    executions: list[str],
    workflow_id: str,
    agents: list[tuple[str, str]],
    seconds: float,
    rate: float,
    reply: Any,
) -> None:
    """Round-robin ``agent:progress`` for ``seconds``, then complete every execution."""
    emit = pub.emit_agent_progress
    last_seq = pub.last_seq
    n = len(executions)
    times = array.array("d")
    seqs = {e: array.array("q") for e in executions}

    def sample(t: float) -> None:
        times.append(t)
        for e in executions:
            seqs[e].append(last_seq(e))

    first = {e: last_seq(e) for e in executions}
    t0 = time.monotonic()
    sample(t0)
    end, next_sample = t0 + seconds, t0 + SAMPLE
    flood = rounds = 0
    while True:
        aid, name = agents[rounds % len(agents)]
        progress = rounds % 100
        for eid in executions:
            emit(eid, workflow_id, aid, name, progress, "burst")
        flood += n
        rounds += 1
        now = time.monotonic()
        if now >= next_sample:
            sample(now)
            next_sample = now + SAMPLE
        if now >= end:
            break
        if rate > 0:  # paced: sleep until the next round's slot (no busy wait: 2 cores)
            ahead = t0 + flood / rate - now
            if ahead > 0.001:
                time.sleep(ahead)
    t_flood = time.monotonic()
    sample(t_flood)
    duration_ms = round(1000 * (t_flood - t0))
    for eid in executions:
        for aid, name in agents:
            pub.emit_agent_completed(
                eid, workflow_id, aid, name, result={"rounds": rounds}, duration_ms=duration_ms
            )
        pub.emit_execution_completed(
            eid,
            workflow_id,
            duration_ms=duration_ms,
            results={a: {"rounds": rounds} for a, _ in agents},
        )
    t_end = time.monotonic()
    sample(t_end)
    last = {e: last_seq(e) for e in executions}
    reply(
        {
            "t0": t0,
            "tFloodEnd": t_flood,
            "tEnd": t_end,
            "flood": flood,
            "published": sum(last[e] - first[e] for e in executions),
            "rate": flood / max(t_flood - t0, 1e-9),
            "firstSeqs": first,
            "lastSeqs": last,
            "timeline": {"t": list(times), "seqs": {e: list(s) for e, s in seqs.items()}},
        }
    )


# --- WebSocket bits ---------------------------------------------------------------------------


def _masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (RFC 6455 §5.3)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + body


def _handshake(host: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete frames in ``buf`` as (opcode, payload), and what is left (unmasked frames)."""
    out: list[tuple[int, bytes]] = []
    i, size = 0, len(buf)
    while size - i >= 2:
        n, h = buf[i + 1] & 0x7F, 2
        if n == 126:
            if size - i < 4:
                break
            n, h = (buf[i + 2] << 8) | buf[i + 3], 4
        elif n == 127:
            if size - i < 10:
                break
            n, h = int.from_bytes(buf[i + 2 : i + 10], "big"), 10
        if size - i < h + n:
            break
        out.append((buf[i] & 0x0F, buf[i + h : i + h + n]))
        i += h + n
    return out, buf[i:]


# --- the stress clients ----------------------------------------------------------------------

_SEQ = re.compile(rb'"seq":(\d+)')
_PROGRESS_HEAD = b'{"type":"agent:progress"'
_EXEC_TYPE = b'"type":"execution:'
_TERMINAL = (
    b'"type":"execution:completed"',
    b'"type":"execution:failed"',
    b'"type":"execution:cancelled"',
)


class Client(asyncio.Protocol):
    """One WebSocket client following one execution; counts cheaply, parses only when needed."""

    def __init__(self, run: Run, index: int, execution_id: str) -> None:
        self.run = run
        self.index = index
        self.execution_id = execution_id
        self.log_mode = run.cfg.mode == "log"
        self.transport: asyncio.Transport | None = None
        self._open = False
        self._head = b""
        self._buf = b""
        self._waiter: asyncio.Future[None] | None = None
        self._close_code: int | None = None
        self._aborted = False
        # accounting
        self.nxt = 0  # next seq expected (0: none seen yet)
        self.first_seq = 0
        self.missing: list[list[int]] = []  # [first, last] seqs skipped, ascending
        self.deliveries = 0
        self.dups = 0
        self.reorders = 0
        self.covered = 0  # seqs skipped by a snapshot from the bridge
        self.snapshots = 0
        self.complete_at: float | None = None
        self.owed_since: float | None = None
        self.last_arrival = 0.0
        self.max_silence = 0.0
        self.first_after: float | None = None  # first event received after the burst began
        self.tl_t = array.array("d")
        self.tl_s = array.array("q")
        self.tl_d = array.array("q")
        self._bucket = -1.0
        self.closes: list[int | None] = []
        self.reconnects = 0
        self.resuming = False
        self.errors: list[str] = []
        self.pre_burst: dict[str, int] = {}
        # state mode
        self.state: Any = None
        self.pending: dict[bytes, tuple[int, bytes]] = {}
        self._running: set[bytes] = set()

    # -- connection ----------------------------------------------------------------------------

    async def connect(self, message: dict[str, Any], timeout: float = 30.0) -> None:
        """Open, handshake, send ``message`` and wait for its ``subscribed`` answer."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._open, self._head, self._buf, self._close_code = False, b"", b"", None
        self._aborted = False
        await loop.create_connection(lambda: self, self.run.host, self.run.port)
        await asyncio.wait_for(self._waiter, timeout)  # the handshake
        self._waiter = loop.create_future()
        self.send(message)
        await asyncio.wait_for(self._waiter, timeout)  # subscribed

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(_masked(json.dumps(message).encode()))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(_handshake(self.run.host, self.run.port))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._open = False
        if not self._aborted:
            self.closes.append(self._close_code)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"closed ({self._close_code})"))
        self.run.lost(self)

    def abort(self) -> None:
        self._aborted = True
        if self.transport is not None:
            self.transport.abort()

    def resume_message(self) -> dict[str, Any]:
        """What a client sends to resume after the bridge closed it (contract §5)."""
        if self.log_mode:
            return {
                "type": "subscribe",
                "executionId": self.execution_id,
                "afterSeq": max(0, self.nxt - 1),
                "mode": "log",
            }
        return {"type": "subscribe", "executionId": self.execution_id, "mode": "state"}

    # -- input ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self._open:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self._head[:end], self._head[end + 4 :]
            self._head = b""
            if not head.startswith(b"HTTP/1.1 101"):
                self.errors.append(head[:80].decode(errors="replace"))
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(ConnectionError(head[:80].decode(errors="replace")))
                if self.transport is not None:
                    self.transport.close()
                return
            self._open = True
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        size, i, got = len(buf), 0, 0
        log = self.log_mode
        search = _SEQ.search
        while size - i >= 2:
            b0, n = buf[i], buf[i + 1] & 0x7F
            if n < 126:
                p = i + 2
            elif n == 126:
                if size - i < 4:
                    break
                n, p = (buf[i + 2] << 8) | buf[i + 3], i + 4
            else:
                if size - i < 10:
                    break
                n, p = int.from_bytes(buf[i + 2 : i + 10], "big"), i + 10
            end = p + n
            if end > size:
                break
            i = end
            if b0 & 0x0F != 1:
                self._other(b0 & 0x0F, buf[p:end])
                continue
            m = search(buf, p, end)
            if m is None:
                self._control(buf[p:end], now)
                continue
            seq = int(m.group(1))
            got += 1
            if log and seq == self.nxt:
                self.nxt = seq + 1
            else:
                self._event(seq, buf, p, end)
            if not buf.startswith(_PROGRESS_HEAD, p) and buf.find(_EXEC_TYPE, p, end) >= 0:
                self._execution_event(buf[p:end], now)
        self._buf = buf[i:] if i < size else b""
        if got:
            self._arrived(got, now)

    def _arrived(self, got: int, now: float) -> None:
        """Events arrived (or a snapshot: ``got`` 0): the silence before it ends."""
        self.deliveries += got
        owed = self.owed_since
        done = self.complete_at
        if owed is not None and (done is None or done >= now):  # owed until this chunk
            gap = now - (self.last_arrival if self.last_arrival > owed else owed)
            if gap > self.max_silence:
                self.max_silence = gap
        if self.first_after is None and owed is not None:
            self.first_after = now
        self.last_arrival = now
        self._record(now)

    def _record(self, now: float) -> None:
        seen = self.seen()
        if now - self._bucket >= BUCKET:
            self.tl_t.append(now)
            self.tl_s.append(seen)
            self.tl_d.append(self.deliveries)
            self._bucket = now
        else:
            self.tl_t[-1] = now
            self.tl_s[-1] = seen
            self.tl_d[-1] = self.deliveries

    def seen(self) -> int:
        """The client has every event up to this seq (or a snapshot covering it)."""
        return self.missing[0][0] - 1 if self.missing else max(0, self.nxt - 1)

    def _event(self, seq: int, buf: bytes, p: int, end: int) -> None:
        """An event off the fast path: the first, a jump, a late or repeated one; state mode."""
        nxt = self.nxt
        if nxt == 0:
            self.first_seq, self.nxt = seq, seq + 1
        elif seq == nxt:
            self.nxt = seq + 1
        elif seq > nxt:
            self.missing.append([nxt, seq - 1])
            self.nxt = seq + 1
        elif self._fill(seq):
            self.reorders += 1
        else:
            self.dups += 1
            return
        if not self.log_mode:
            self._reduce(seq, buf[p:end])

    def _fill(self, seq: int) -> bool:
        """A seq below ``nxt``: True if it was missing (now filled), False if a duplicate."""
        ranges = self.missing
        k = bisect.bisect_right(ranges, [seq, sys.maxsize]) - 1
        if k < 0 or not ranges[k][0] <= seq <= ranges[k][1]:
            return False
        first, last = ranges[k]
        pieces = [r for r in ([first, seq - 1], [seq + 1, last]) if r[0] <= r[1]]
        ranges[k : k + 1] = pieces
        return True

    def _execution_event(self, payload: bytes, now: float) -> None:
        if self.complete_at is None and any(t in payload for t in _TERMINAL):
            self.complete_at = now

    def _other(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9 and self.transport is not None:  # ping → pong
            self.transport.write(_masked(payload, 0xA))
        elif opcode == 0x8:  # close
            self._close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if self.transport is not None:
                self.transport.write(_masked(payload[:2], 0x8))
                self.transport.close()

    def _control(self, payload: bytes, now: float) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            self.errors.append("invalid JSON from the bridge")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "subscribed":
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
        elif kind == "snapshot":
            self._snapshot(msg.get("execution") or {}, now, from_bridge=True)
        elif kind == "error":
            self.errors.append(f"{msg.get('code')}: {msg.get('message')}")
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(ConnectionError(str(msg.get("message"))))

    # -- state mode ----------------------------------------------------------------------------

    def _snapshot(self, execution: dict[str, Any], now: float, *, from_bridge: bool) -> None:
        """A snapshot: the state at its lastSeq; events after it follow."""
        last = int(execution.get("lastSeq") or 0)
        if from_bridge:
            self.snapshots += 1
            self.covered += max(0, last - max(0, self.nxt - 1))
        self.missing = [
            [max(a, last + 1), b] for a, b in self.missing if b > last
        ]  # what the snapshot covers was not lost
        if self.nxt == 0:
            self.first_seq = last + 1
        self.nxt = last + 1
        if not self.log_mode:
            from zmqmon.core.state import ExecutionState

            self.state = ExecutionState.model_validate(execution)
            self.pending = {a: v for a, v in self.pending.items() if v[0] > last}
            self._note_running()
        if from_bridge:
            self._arrived(0, now)  # a snapshot is news too: the silence before it ends here
        if self.state is not None and self.state.is_terminal and self.complete_at is None:
            self.complete_at = now
        self._record(now)

    def _reduce(self, seq: int, payload: bytes) -> None:
        """Apply one event; a running agent's progress is held until something else comes
        (only its last progress and the seq matter to the reducer then)."""
        st = self.state
        if (
            st is not None
            and st.status == "running"
            and (payload.startswith(_PROGRESS_HEAD) or b'"type":"agent:progress"' in payload)
        ):
            a = payload.find(b'"agentId":"') + 11
            agent = payload[a : payload.find(b'"', a)]
            if agent in self._running:
                self.pending[agent] = (seq, payload)
                return
        self.flush_state()
        self._apply(payload)

    def _apply(self, payload: bytes) -> None:
        from zmqmon.core.events import parse_event
        from zmqmon.core.state import apply_event

        try:
            self.state = apply_event(self.state, parse_event(payload))
        except Exception as exc:  # a malformed event is the bridge's fault: report it
            self.errors.append(f"event not applied: {exc}")
        self._note_running()

    def _note_running(self) -> None:
        st = self.state
        self._running = (
            {r.agent_id.encode() for r in st.agents if r.status == "running"}
            if st is not None
            else set()
        )

    def flush_state(self) -> None:
        """Apply the held progress events, in seq order."""
        if self.pending:
            held = sorted(self.pending.values())
            self.pending = {}
            for _, payload in held:
                self._apply(payload)

    def bootstrap(self, execution: dict[str, Any]) -> None:
        """Start from the state service's snapshot, taken while nothing was being published."""
        self._snapshot(execution, time.monotonic(), from_bridge=False)

    def begin_burst(self, t: float) -> None:
        """The burst starts: what happened before it is kept aside; the client is owed events."""
        self.pre_burst = {
            "deliveries": self.deliveries,
            "dups": self.dups,
            "reorders": self.reorders,
            "missing": sum(b - a + 1 for a, b in self.missing),
            "snapshots": self.snapshots,
            "firstSeq": self.first_seq,
        }
        self.deliveries = self.dups = self.reorders = self.covered = self.snapshots = 0
        self.missing = []
        self.owed_since = t
        self._record(t)


# --- the probe process -----------------------------------------------------------------------


def _proc_sample(pid: int) -> tuple[float, float] | None:
    """(RSS MB, CPU seconds) of a process, from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = next((int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS:")), 0.0)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return rss, (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, StopIteration, IndexError, ValueError):
        return None


async def _probe(host: str, port: int, pids: dict[str, int]) -> dict[str, Any]:
    """Ping, health and RSS/CPU sampling until a line (or EOF) arrives on stdin.

    The pinger answers the bridge's pings and close frames like any client; a ping answered
    with an ``error`` (e.g. ``rate_limited``: a stalled bridge reads a backlog of pings at once)
    is counted as refused; if the bridge closes the pinger, it reconnects and goes on.
    """
    pings: list[list[Any]] = []  # [sent, rtt or None, refused]
    health: list[list[float | None]] = []
    closes: list[list[Any]] = []  # [time, close code] of the pinger's connection
    samples: dict[str, list[list[float]]] = {name: [] for name in pids}
    outstanding: deque[int] = deque()
    stopping = asyncio.Event()
    ready = asyncio.Event()

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_handshake(host, port))
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(head[:80].decode(errors="replace"))
            ready.set()
            code: list[int | None] = [None]

            async def send_pings() -> None:
                msg = _masked(b'{"type":"ping"}')
                while not stopping.is_set():
                    pings.append([time.monotonic(), None, False])
                    outstanding.append(len(pings) - 1)
                    writer.write(msg)
                    await asyncio.sleep(PING_EVERY)

            sender = asyncio.create_task(send_pings())
            buf = b""
            try:
                while True:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        return
                    now = time.monotonic()
                    frames, buf = _frames(buf + chunk)
                    for op, payload in frames:
                        if op == 0x9:
                            writer.write(_masked(payload, 0xA))
                        elif op == 0x8:  # answer the close, as a client must
                            code[0] = struct.unpack("!H", payload[:2])[0] if payload else None
                            writer.write(_masked(payload[:2], 0x8))
                            return
                        elif (
                            op == 0x1
                            and outstanding
                            and (b'"pong"' in payload or b'"error"' in payload)
                        ):
                            row = pings[outstanding.popleft()]
                            row[1] = now - row[0]
                            row[2] = b'"error"' in payload
            finally:
                sender.cancel()
                outstanding.clear()  # what was not answered on this connection never will be
                closes.append([time.monotonic(), code[0]])
        finally:
            writer.close()

    async def ping_loop() -> None:
        while not stopping.is_set():
            with contextlib.suppress(OSError, ConnectionError, asyncio.IncompleteReadError):
                await one_connection()
            await asyncio.sleep(0.2)

    async def one_health(k: int) -> None:
        try:
            r, w = await asyncio.open_connection(host, port)
            w.write(
                f"GET /api/ws/health HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = await r.read()  # until the server closes
            sent = health[k][0]
            if answer.startswith(b"HTTP/1.1 200") and sent is not None:
                health[k][1] = time.monotonic() - sent
            w.close()
        except OSError:
            pass

    tasks: set[asyncio.Task[None]] = set()

    async def health_loop() -> None:
        while True:
            health.append([time.monotonic(), None])
            if len(tasks) < 50:  # a stalled bridge: don't pile up connections
                t = asyncio.create_task(one_health(len(health) - 1))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
            await asyncio.sleep(HEALTH_EVERY)

    async def sample_loop() -> None:
        alive = dict(pids)
        while True:
            now = time.monotonic()
            for name, pid in list(alive.items()):
                got = _proc_sample(pid)
                if got is None:
                    del alive[name]
                else:
                    samples[name].append([now, got[0], got[1]])
            await asyncio.sleep(RSS_EVERY)

    pinging = asyncio.create_task(ping_loop())
    await asyncio.wait_for(ready.wait(), 30)
    loops = [asyncio.create_task(c) for c in (health_loop(), sample_loop())]
    await asyncio.sleep(0.1)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    stopped = time.monotonic()
    stopping.set()
    for t in loops:
        t.cancel()
    # A grace period: what was sent before the stop may still be answered.
    grace = stopped + GRACE
    while (outstanding or tasks) and time.monotonic() < grace:
        await asyncio.sleep(0.01)
    ended = time.monotonic()
    for t in [pinging, *loops, *tasks]:
        t.cancel()
    for t in [pinging, *loops, *tasks]:
        with contextlib.suppress(BaseException):
            await t
    return {
        "stopped": stopped,
        "ended": ended,
        "pings": pings,
        "health": health,
        "samples": samples,
        "pingCloses": closes,
    }


def _probe_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stress probe")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", action="append", default=[], metavar="NAME=PID")
    a = p.parse_args(argv)
    pids = {k: int(v) for k, v in (s.split("=", 1) for s in a.pid)}
    result = asyncio.run(_probe(a.host, a.port, pids))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# --- one run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One run's parameters."""

    seconds: float = 3.0
    mode: str = "log"
    clients: int = 100
    executions: int = 100
    agents: int = 1
    rate: float = 0.0
    deadline: float = 90.0
    sigterm: bool = False
    sigterm_timeout: float = 15.0
    reconnect: bool = True


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def _line(stream: asyncio.StreamReader | None, timeout: float, what: str) -> str:
    assert stream is not None
    try:
        line = await asyncio.wait_for(stream.readline(), timeout)
    except TimeoutError:
        raise RuntimeError(f"{what}: no answer within {timeout:.0f} s") from None
    if not line:
        raise RuntimeError(f"{what}: process ended")
    return line.decode()


async def _stop(proc: asyncio.subprocess.Process, sig: int, timeout: float) -> float | None:
    """Send ``sig``; seconds until the process exited, or None (then it is killed)."""
    if proc.returncode is not None:
        return 0.0
    t = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        return time.monotonic() - t
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return None


class Run:
    """Processes, clients and the measurements of one burst."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.host = "127.0.0.1"
        self.port = 0
        self.active = False
        self.clients: list[Client] = []
        self.notes: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.raw: dict[str, Any] = {}

    # A client lost its connection: resume it, as a real one would (backing off).
    def lost(self, client: Client) -> None:
        cfg = self.cfg
        if client.resuming or not (
            self.active and cfg.reconnect and not cfg.sigterm and client.complete_at is None
        ):
            return
        task = asyncio.get_running_loop().create_task(self._resume(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, client: Client) -> None:
        client.resuming = True
        delay = 0.1
        try:
            while self.active and client.transport is None:
                await asyncio.sleep(delay)
                try:
                    await client.connect(client.resume_message(), timeout=10.0)
                    client.reconnects += 1
                    return
                except (OSError, ConnectionError, TimeoutError):
                    client.abort()
                    delay = min(2 * delay, 1.0)
        finally:
            client.resuming = False

    async def execute(self) -> dict[str, Any]:
        with (
            tempfile.TemporaryDirectory(prefix="zmqmon-stress-") as tmp,
            open(f"{tmp}/service.err", "wb") as service_err,
            open(f"{tmp}/bridge.err", "wb") as bridge_err,
        ):
            service = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.stress", "service", "--db", f"{tmp}/stress.sqlite3",
                cwd=ROOT, env=_env(), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=service_err, limit=1 << 30,
            )  # fmt: skip
            bridge: asyncio.subprocess.Process | None = None
            try:
                endpoints = json.loads(await _line(service.stdout, 60, "service"))
                bridge = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "zmqmon.cli", "bridge", "--events", endpoints["events"],
                    "--state", endpoints["state"], "--host", "127.0.0.1", "--port", "0",
                    cwd=ROOT, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=bridge_err,
                )  # fmt: skip
                ws = json.loads(await _line(bridge.stdout, 60, "bridge"))["ws"]
                self.port = int(ws.rsplit(":", 1)[1].split("/", 1)[0])
                return await self._measure(service, bridge, endpoints, tmp)
            finally:
                self.active = False
                for c in self.clients:
                    c.abort()
                if bridge is not None and bridge.returncode is None:
                    await _stop(bridge, signal.SIGKILL, 10)
                if service.returncode is None:
                    assert service.stdin is not None
                    with contextlib.suppress(OSError):
                        service.stdin.write(b"quit\n")
                        await service.stdin.drain()
                    try:
                        await asyncio.wait_for(service.wait(), 60)
                    except TimeoutError:
                        service.kill()
                        await service.wait()

    async def _command(self, service: asyncio.subprocess.Process, line: str) -> None:
        assert service.stdin is not None
        service.stdin.write(line.encode() + b"\n")
        await service.stdin.drain()

    async def _measure(
        self,
        service: asyncio.subprocess.Process,
        bridge: asyncio.subprocess.Process,
        endpoints: dict[str, str],
        tmp: str,
    ) -> dict[str, Any]:
        cfg = self.cfg
        await self._command(service, f"create {cfg.executions} {cfg.agents}")
        created = json.loads(await _line(service.stdout, 60, "service create"))
        executions: list[str] = created["executions"]

        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.stress", "probe", "--host", self.host,
            "--port", str(self.port), "--pid", f"bridge={bridge.pid}",
            "--pid", f"service={service.pid}", "--pid", f"clients={os.getpid()}",
            cwd=ROOT, env=_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=1 << 30,
        )  # fmt: skip
        try:
            await _line(probe.stdout, 30, "probe")
            return await self._burst(service, bridge, probe, endpoints, executions, tmp)
        finally:
            if probe.returncode is None:
                probe.kill()
                await probe.wait()

    async def _burst(
        self,
        service: asyncio.subprocess.Process,
        bridge: asyncio.subprocess.Process,
        probe: asyncio.subprocess.Process,
        endpoints: dict[str, str],
        executions: list[str],
        tmp: str,
    ) -> dict[str, Any]:
        cfg = self.cfg
        self.clients = [
            Client(self, i, executions[i % len(executions)]) for i in range(cfg.clients)
        ]
        for k in range(0, len(self.clients), 50):  # connect in waves: a listen backlog is finite
            await asyncio.gather(
                *(
                    c.connect(
                        {
                            "type": "subscribe",
                            "topic": f"exec/{c.execution_id}/",
                            "mode": cfg.mode,
                        }
                    )
                    for c in self.clients[k : k + 50]
                )
            )
        self.active = True
        # Warm-up: publish until every client has seen its execution's events (the bridge's
        # upstream subscription is live), then until every one is caught up.
        last_seqs: dict[str, int] = {}
        until = time.monotonic() + 30
        while time.monotonic() < until:
            await self._command(service, "warm")
            last_seqs = json.loads(await _line(service.stdout, 30, "service warm"))["lastSeqs"]
            wait_until = time.monotonic() + 0.3
            while time.monotonic() < wait_until and not all(c.nxt for c in self.clients):
                await asyncio.sleep(0.01)
            if all(c.nxt for c in self.clients):
                break
        until = time.monotonic() + 15
        while time.monotonic() < until and not all(
            c.nxt > last_seqs.get(c.execution_id, 0) for c in self.clients
        ):
            await asyncio.sleep(0.01)
        behind = sum(c.nxt <= last_seqs.get(c.execution_id, 0) for c in self.clients)
        if behind:
            self.notes.append(f"{behind} client(s) not caught up before the burst")
        if cfg.mode == "state":
            from zmqmon.shells.client import StateClient

            def snapshots() -> dict[str, dict[str, Any]]:
                with StateClient(endpoints["state"], timeout=30) as sc:
                    return {e: sc.snapshot(e).to_json_dict() for e in executions}

            snaps = await asyncio.to_thread(snapshots)
            for c in self.clients:
                c.bootstrap(snaps[c.execution_id])

        await asyncio.sleep(0.5)  # a quiet baseline for the RSS and the pings
        t_burst = time.monotonic()
        for c in self.clients:
            c.begin_burst(t_burst)
        cpu0 = time.process_time()
        await self._command(service, f"burst {cfg.seconds} {cfg.rate}")
        report_task = asyncio.create_task(_line(service.stdout, cfg.seconds + 600, "burst"))
        sigterm_task: asyncio.Task[float | None] | None = None
        t_sigterm: float | None = None
        if cfg.sigterm:
            await asyncio.sleep(cfg.seconds / 2)
            t_sigterm = time.monotonic()
            sigterm_task = asyncio.create_task(_stop(bridge, signal.SIGTERM, cfg.sigterm_timeout))

        report: dict[str, Any] | None = None
        hard = t_burst + cfg.seconds + cfg.deadline + 60  # should the service never report
        while True:
            now = time.monotonic()
            if report is None and report_task.done():
                report = json.loads(report_task.result())
                hard = report["tEnd"] + cfg.deadline
            if report is not None and all(c.complete_at is not None for c in self.clients):
                break
            if now >= hard:
                break
            if sigterm_task is not None and sigterm_task.done():
                break
            if sigterm_task is None and bridge.returncode is not None:
                self.notes.append(f"bridge exited by itself with code {bridge.returncode}")
                break
            await asyncio.sleep(0.05)
        t_final = time.monotonic()
        cpu_clients = time.process_time() - cpu0
        if report is None:
            try:
                report = json.loads(await asyncio.wait_for(report_task, 30))
            except (TimeoutError, RuntimeError, ValueError):
                report_task.cancel()
                raise RuntimeError("the service never reported its burst") from None
        sigterm_s = await sigterm_task if sigterm_task is not None else None
        self.active = False

        assert probe.stdin is not None
        probe.stdin.write(b"stop\n")
        await probe.stdin.drain()
        probed = json.loads(await _line(probe.stdout, 60, "probe result"))
        for c in self.clients:
            c.abort()

        states_equal: int | None = None
        mismatches: list[str] = []
        if cfg.mode == "state" and not cfg.sigterm:
            from zmqmon.shells.client import StateClient

            def finals() -> dict[str, dict[str, Any]]:
                with StateClient(endpoints["state"], timeout=60) as sc:
                    return {e: sc.snapshot(e).to_json_dict() for e in executions}

            truth = await asyncio.to_thread(finals)
            states_equal = 0
            for c in self.clients:
                c.flush_state()
                mine = c.state.to_json_dict() if c.state is not None else None
                if mine == truth[c.execution_id]:
                    states_equal += 1
                elif len(mismatches) < 3:
                    diff = sorted(
                        k
                        for k in truth[c.execution_id]
                        if (mine or {}).get(k) != truth[c.execution_id][k]
                    )
                    mismatches.append(f"client {c.index}: {', '.join(diff)} differ")
        stop_s: float | None = None
        if bridge.returncode is None:
            stop_s = await _stop(bridge, signal.SIGTERM, 10)
            if stop_s is None:
                self.notes.append("bridge did not stop within 10 s of SIGTERM after the run")
        errs = Path(tmp, "bridge.err").read_text(errors="replace").strip().splitlines()
        if errs:
            self.notes.append(f"bridge stderr ({len(errs)} lines), last: {errs[-1][:160]}")
        return self._summary(
            report,
            probed,
            t_burst=t_burst,
            t_final=t_final,
            cpu_clients=cpu_clients,
            t_sigterm=t_sigterm,
            sigterm_s=sigterm_s,
            stop_s=stop_s,
            bridge_code=bridge.returncode,
            states_equal=states_equal,
            mismatches=mismatches,
        )

    # -- figures ---------------------------------------------------------------------------------

    def _summary(
        self,
        report: dict[str, Any],
        probed: dict[str, Any],
        *,
        t_burst: float,
        t_final: float,
        cpu_clients: float,
        t_sigterm: float | None,
        sigterm_s: float | None,
        stop_s: float | None,
        bridge_code: int | None,
        states_equal: int | None,
        mismatches: list[str],
    ) -> dict[str, Any]:
        cfg, clients = self.cfg, self.clients
        t0, t_end = float(report["t0"]), float(report["tEnd"])
        complete = [c for c in clients if c.complete_at is not None]
        all_done = len(complete) == len(clients)
        t_last = max(c.complete_at or 0.0 for c in complete) if all_done else t_final
        deliveries = sum(c.deliveries for c in clients)
        silence = max(
            (
                max(
                    c.max_silence,
                    (t_final - max(c.last_arrival, t0)) if c.complete_at is None else 0,
                )
                for c in clients
            ),
            default=0.0,
        )
        stale = _staleness(clients, report, t0, t_last)
        # The backlog when the burst ended (events published, not yet seen), and how fast it
        # was drained: the bridge's own relay rate, whatever the publisher's.
        backlog = drained = 0
        for c in clients:
            k = bisect.bisect_right(c.tl_t, t_end) - 1
            seen_then = c.tl_s[k] if k >= 0 else 0
            backlog += max(0, int(report["lastSeqs"][c.execution_id]) - seen_then)
            drained += c.deliveries - (c.tl_d[k] if k >= 0 else 0)
        samples = probed["samples"]
        rss_b = [(t, r) for t, r, _ in samples.get("bridge", [])]
        rss_s = [(t, r) for t, r, _ in samples.get("service", [])]
        base = [r for t, r in rss_b if t_burst - 1.0 <= t < t_burst]
        peak_b = max((r for t, r in rss_b if t >= t_burst), default=float("nan"))
        peak_s = max((r for t, r in rss_s if t >= t_burst), default=float("nan"))
        ended = float(probed["ended"])
        pings = _rtts(probed["pings"], t_burst, t_final, ended)
        health = _rtts(probed["health"], t_burst, t_final, ended)
        span = max(t_final - t_burst, 1e-9)
        cpu = {
            name: _cpu_share(samples.get(name, []), t_burst, t_final)
            for name in ("bridge", "service")
        }
        cpu["clients"] = cpu_clients / span
        closes: dict[str, int] = {}
        for c in clients:
            for code in c.closes:
                closes[str(code)] = closes.get(str(code), 0) + 1
        errors = [e for c in clients for e in c.errors]
        notes = list(self.notes)
        if closes:
            notes.append(
                "connections closed by the bridge: "
                + ", ".join(f"{n}× code {k}" for k, n in sorted(closes.items()))
            )
        if errors:
            notes.append(f"{len(errors)} error(s) from the bridge, e.g. {errors[0][:120]}")
        notes.extend(mismatches)
        ping_closes = [code for t, code in probed["pingCloses"] if t <= t_final]
        if ping_closes and not cfg.sigterm:
            notes.append(f"the bridge closed the pinger: codes {ping_closes}")
        pre = {
            k: sum(c.pre_burst.get(k, 0) for c in clients) for k in ("dups", "reorders", "missing")
        }
        if any(pre.values()):
            notes.append(f"before the burst: {pre}")
        self.raw = _raw_series(clients, report, probed, t0, t_final)
        return {
            "config": asdict(cfg),
            "published": int(report["published"]),
            "flood": int(report["flood"]),
            "publishRate": float(report["rate"]),
            "burstSeconds": float(report["tFloodEnd"]) - t0,
            "bridgeRssBaseMB": sorted(base)[len(base) // 2] if base else float("nan"),
            "bridgeRssPeakMB": peak_b,
            "serviceRssPeakMB": peak_s,
            "clients": len(clients),
            "complete": len(complete),
            "catchUpS": (t_last - t_end) if all_done else None,
            "deliveries": deliveries,
            "deliveriesPerS": deliveries / max(t_last - t0, 1e-9),
            "backlogAtEnd": backlog,
            "catchUpDeliveriesPerS": (
                drained / (t_last - t_end) if backlog >= _MIN_BACKLOG and t_last > t_end else None
            ),
            "longestSilenceS": silence,
            "stalenessP99S": _pct(stale, 0.99),
            "stalenessMaxS": max(stale, default=float("nan")),
            "pingP50Ms": 1000 * _pct(pings[0], 0.5),
            "pingP99Ms": 1000 * _pct(pings[0], 0.99),
            "pingMaxMs": 1000 * max(pings[0], default=float("nan")),
            "pingsSent": len(pings[0]),
            "pingsUnanswered": pings[1],
            "pingsRefused": sum(
                1 for sent, _, refused in probed["pings"] if refused and t_burst <= sent <= t_final
            ),
            "healthP99Ms": 1000 * _pct(health[0], 0.99),
            "healthUnanswered": health[1],
            "lost": sum(b - a + 1 for c in clients for a, b in c.missing),
            "duplicated": sum(c.dups for c in clients),
            "reordered": sum(c.reorders for c in clients),
            "skippedBySnapshot": sum(c.covered for c in clients),
            "snapshots": sum(c.snapshots for c in clients),
            "undelivered": sum(
                max(0, int(report["lastSeqs"][c.execution_id]) - max(0, c.nxt - 1)) for c in clients
            ),
            "statesEqual": states_equal,
            "reconnects": sum(c.reconnects for c in clients),
            "closes": closes,
            "sigtermExitS": sigterm_s if t_sigterm is not None else None,
            "sigtermKilled": t_sigterm is not None and sigterm_s is None,
            "bridgeStopAfterRunS": stop_s,
            "bridgeExitCode": bridge_code,
            "cpuShare": cpu,
            "runSeconds": t_final - t_burst,
            "firstDeliveryS": _spread([c.first_after - t0 for c in clients if c.first_after]),
            "completeS": _spread([c.complete_at - t0 for c in clients if c.complete_at]),
            "notes": notes,
        }


def _raw_series(
    clients: list[Client], report: dict[str, Any], probed: dict[str, Any], t0: float, t1: float
) -> dict[str, Any]:
    """The series behind the figures, times in seconds from the burst's start (``--dump``)."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 4)

    step = 0.1
    grid = [t0 + k * step for k in range(int((t1 - t0) / step) + 1)]
    seen = []
    for c in clients:
        row = []
        for t in grid:
            k = bisect.bisect_right(c.tl_t, t) - 1
            row.append(c.tl_s[k] if k >= 0 else 0)
        seen.append(row)
    times = report["timeline"]["t"]
    return {
        "t0": t0,
        "burstEnd": rel(float(report["tEnd"])),
        "pings": [[rel(sent), rtt, refused] for sent, rtt, refused in probed["pings"]],
        "pingCloses": [[rel(t), code] for t, code in probed["pingCloses"]],
        "health": [[rel(sent), rtt] for sent, rtt in probed["health"]],
        "processes": {
            name: [[rel(t), rss, cpu] for t, rss, cpu in rows]
            for name, rows in probed["samples"].items()
        },
        "published": {
            "t": [rel(t) for t in times],
            "seqs": report["timeline"]["seqs"],
        },
        "clients": {
            "execution": [c.execution_id for c in clients],
            "firstDelivery": [rel(c.first_after) for c in clients],
            "complete": [rel(c.complete_at) for c in clients],
            "longestSilence": [c.max_silence for c in clients],
            "closes": [c.closes for c in clients],
            "seenEvery100ms": seen,
        },
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    """min / median / max of per-client times (seconds from the burst's start)."""
    if not values:
        return None
    return {"min": min(values), "median": _pct(values, 0.5), "max": max(values)}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _rtts(
    rows: list[list[float | None]], t_from: float, t_to: float, ended: float
) -> tuple[list[float], int]:
    """Round trips of what was sent from ``t_from`` to ``t_to``; unanswered ones (by ``ended``)
    count with their age then."""
    out: list[float] = []
    missing = 0
    for sent, rtt, *_ in rows:
        if sent is None or not t_from <= sent <= t_to:
            continue
        if rtt is None:
            missing += 1
            out.append(ended - sent)
        else:
            out.append(rtt)
    return out, missing


def _cpu_share(rows: list[list[float]], t_from: float, t_to: float) -> float:
    inside = [(t, cpu) for t, _, cpu in rows if t_from <= t <= t_to]
    if len(inside) < 2:
        return float("nan")
    (ta, ca), (tb, cb) = inside[0], inside[-1]
    return (cb - ca) / max(tb - ta, 1e-9)


def _staleness(clients: list[Client], report: dict[str, Any], t0: float, t1: float) -> list[float]:
    """Every STALENESS_STEP from t0 to t1, per client: age of its oldest unseen event."""
    times: list[float] = report["timeline"]["t"]
    seqs: dict[str, list[int]] = report["timeline"]["seqs"]
    out: list[float] = []
    steps = max(1, int((t1 - t0) / STALENESS_STEP) + 1)
    grid = [t0 + k * STALENESS_STEP for k in range(steps)]
    for c in clients:
        pub = seqs[c.execution_id]
        tl_t, tl_s = c.tl_t, c.tl_s
        for t in grid:
            j = bisect.bisect_right(times, t) - 1
            published = pub[j] if j >= 0 else pub[0]
            k = bisect.bisect_right(tl_t, t) - 1
            seen = tl_s[k] if k >= 0 else 0
            if seen >= published:
                out.append(0.0)
                continue
            first_unseen = bisect.bisect_left(pub, seen + 1)
            out.append(max(0.0, t - times[min(first_unseen, len(times) - 1)]))
    return out


async def run_once(cfg: Config) -> dict[str, Any]:
    """One burst with fresh processes; the figures as a dict (see the module doc)."""
    return await Run(cfg).execute()


def run_many(
    configs: list[Config], progress: bool = True, dump: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Run each configuration in turn (fresh processes each); ``dump`` gets the raw series."""
    results = []
    for cfg in configs:
        if progress:
            print(
                f"# burst {cfg.seconds:g} s, {cfg.mode}, {cfg.clients} clients"
                + (", SIGTERM" if cfg.sigterm else "")
                + " …",
                file=sys.stderr,
                flush=True,
            )
        run = Run(cfg)
        results.append(asyncio.run(run.execute()))
        if dump is not None:
            dump.append({"config": asdict(cfg), **run.raw})
    return results


# --- output ----------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 1) -> str:
    if x is None or x != x:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _row(r: dict[str, Any]) -> list[str]:
    cfg = r["config"]
    n = r["clients"]
    catch = (
        _f(r["catchUpS"]) + " s"
        if r["catchUpS"] is not None
        else f"{n - r['complete']}/{n} incomplete"
    )
    if cfg["mode"] == "log":
        correct = f"lost {r['lost']}, dup {r['duplicated']}, reord {r['reordered']}"
        if r["skippedBySnapshot"]:
            correct += f", snapshot-skipped {r['skippedBySnapshot']}"
    elif r["statesEqual"] is None:
        correct = "-"
    else:
        correct = f"equal {r['statesEqual']}/{n}"
        if r["lost"] or r["duplicated"]:
            correct += f" (lost {r['lost']}, dup {r['duplicated']})"
    if r["sigtermExitS"] is not None:
        sig = _f(r["sigtermExitS"], 2) + " s"
    elif r["sigtermKilled"]:
        sig = f">{cfg['sigterm_timeout']:g} s, killed"
    else:
        sig = "-"
    return [
        f"{cfg['seconds']:g}",
        cfg["mode"],
        f"{r['published']:,}",
        f"{r['publishRate']:,.0f}",
        f"{_f(r['bridgeRssBaseMB'], 0)}→{_f(r['bridgeRssPeakMB'], 0)}",
        _f(r["serviceRssPeakMB"], 0),
        catch,
        f"{r['deliveriesPerS']:,.0f}",
        "-" if r["catchUpDeliveriesPerS"] is None else f"{r['catchUpDeliveriesPerS']:,.0f}",
        _f(r["longestSilenceS"], 2),
        f"{_f(r['stalenessP99S'], 2)}/{_f(r['stalenessMaxS'], 2)}",
        f"{_f(r['pingP50Ms'], 0)}/{_f(r['pingP99Ms'], 0)}/{_f(r['pingMaxMs'], 0)}",
        f"{r['pingsUnanswered']}/{r['pingsRefused']}",
        _f(r["healthP99Ms"], 0),
        correct,
        str(r["reconnects"]),
        sig,
    ]


HEADER = [
    "burst s",
    "mode",
    "events",
    "rate/s",
    "bridge MB",
    "svc MB",
    "catch-up",
    "deliv/s",
    "catch-up deliv/s",
    "silence s",
    "stale p99/max s",
    "ping p50/p99/max ms",
    "ping unans/refused",
    "health p99 ms",
    "correctness",
    "reconn",
    "SIGTERM→exit",
]


def format_results(results: list[dict[str, Any]]) -> str:
    """The table, then per run the CPU shares and notes."""
    body = [_row(r) for r in results]
    widths = [max(len(row[k]) for row in [HEADER, *body]) for k in range(len(HEADER))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [HEADER, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for k, r in enumerate(results, 1):
        cpu = r["cpuShare"]
        lines.append(
            f"  run {k}: cpu bridge {_f(100 * cpu['bridge'], 0)}%, service "
            f"{_f(100 * cpu['service'], 0)}%, clients {_f(100 * cpu['clients'], 0)}% "
            f"of a core over "
            f"{r['runSeconds']:.1f} s; {r['deliveries']:,} deliveries, {r['undelivered']:,} not "
            f"delivered at the end"
        )
        lines.extend(f"    {note}" for note in r["notes"])
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["service"]:
        p = argparse.ArgumentParser(prog="python -m bench.stress service")
        p.add_argument("--db", required=True)
        return _service_main(p.parse_args(argv[1:]).db)
    if argv[:1] == ["probe"]:
        return _probe_main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m bench.stress",
        description="Burst stress test of the WebSocket bridge (see the module doc).",
    )
    p.add_argument("--seconds", type=_floats, default=[3.0], help="burst lengths, e.g. 1,3,10")
    p.add_argument("--mode", default="log", help="log, state, or both: log,state")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--executions", type=int, default=100)
    p.add_argument("--agents", type=int, default=1, help="agents per execution")
    p.add_argument("--rate", type=float, default=0.0, help="events/s cap (0: as fast as possible)")
    p.add_argument("--deadline", type=float, default=90.0, help="seconds after the burst ends")
    p.add_argument("--sigterm", action="store_true", help="SIGTERM the bridge mid-burst")
    p.add_argument("--sigterm-timeout", type=float, default=15.0)
    p.add_argument("--no-reconnect", action="store_true", help="closed clients stay closed")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--dump", metavar="FILE", help="write the raw series (pings, RSS, …) as JSON")
    a = p.parse_args(argv)
    modes = [m for m in a.mode.split(",") if m]
    if not modes or any(m not in ("log", "state") for m in modes):
        p.error("--mode: log, state or log,state")
    configs = [
        Config(
            seconds=s,
            mode=m,
            clients=a.clients,
            executions=a.executions,
            agents=a.agents,
            rate=a.rate,
            deadline=a.deadline,
            sigterm=a.sigterm,
            sigterm_timeout=a.sigterm_timeout,
            reconnect=not a.no_reconnect,
        )
        for s, m in itertools.product(a.seconds, modes)
    ]
    raw: list[dict[str, Any]] | None = [] if a.dump else None
    results = run_many(configs, dump=raw)
    if a.dump:
        Path(a.dump).write_text(json.dumps(raw))
    if a.json:
        print(json.dumps(results, indent=1))
    else:
        print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
