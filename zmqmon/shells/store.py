"""The SQLite store: workflows, executions (reducer state) and every event, written off the hot
path.

Writes: :meth:`Store.append` only puts ``(event, payload)`` on a deque (no lock, no syscall, no
wake-up). A writer thread drains the deque every few milliseconds and writes each batch in one
transaction: the events with ``executemany`` (payload JSON kept verbatim), and the reducer state
(:func:`~zmqmon.core.state.apply_event`) of every execution the batch touched.

Bounded: past ``max_pending`` queued events, :meth:`Store.append` waits for the writer (the
emitting thread is held back, nothing is dropped): a burst faster than the disk is absorbed at the
disk's pace instead of growing the process, and a stop drains a bounded queue quickly.

Durability: WAL journal; each batch is one transaction, so after ``kill -9`` the file holds a
prefix of the appended events, and the executions' states agree with the events stored.

Freshness (read-your-publishes): every read first calls :meth:`flush`, which wakes the writer and
waits until everything appended before the read is committed (typically < 1 ms); reads then use
their own connection. Under a burst that wait is bounded (``read_wait``): past it the read answers
from what is committed — consistent, its ``lastSeq`` saying how far it goes — rather than hold the
state service (the repair core asks again for what is not stored yet).
"""

from __future__ import annotations

import collections
import logging
import os
import sqlite3
import threading
import time
from typing import Any

from zmqmon.core.events import parse_event
from zmqmon.core.state import ExecutionState, apply_event
from zmqmon.core.wire import dumps, loads
from zmqmon.core.workflow import WorkflowDefinition, parse_workflow, workflow_digest
from zmqmon.errors import ProtocolError, StoreError

__all__ = ["Store"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workflows (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    agent_count INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    user_id TEXT
);
CREATE INDEX IF NOT EXISTS executions_status ON executions (status);
CREATE INDEX IF NOT EXISTS executions_workflow ON executions (workflow_id);
CREATE TABLE IF NOT EXISTS events (
    execution_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (execution_id, seq)
) WITHOUT ROWID;
"""

# Files written before executions had a user_id column get it, filled from the stored states
# (the executions op filters on it: a user's list must not be the newest rows of everyone's).
_MIGRATE_USER_ID = """
ALTER TABLE executions ADD COLUMN user_id TEXT;
UPDATE executions SET user_id = json_extract(state, '$.userId');
"""
_USER_INDEX = "CREATE INDEX IF NOT EXISTS executions_user ON executions (user_id, n)"

# How long the writer sleeps between batches when nobody asks for a flush: the batching window.
_WRITER_INTERVAL = 0.01
_READ_WAIT = 0.5  # seconds a read waits for the writer before answering from what is committed
_MAX_PENDING = 20_000  # events queued for the writer before append() waits for it
_PROGRESS_TYPES = frozenset({"agent:progress", "execution:progress"})
# Executions whose state the writer keeps in memory (the rest are reloaded from the file).
_STATE_CACHE = 10_000


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a process crash (kill -9) loses nothing committed; only an OS crash
    # may lose the last transactions, and the file stays consistent either way.
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _superseded(state: ExecutionState | None, event: dict[str, Any], nxt: dict[str, Any]) -> bool:
    """True when applying ``event`` and then ``nxt`` gives the same state as ``nxt`` alone.

    That is a progress event followed by the next progress of the same execution or of the same
    already-running agent: the reducer only sets ``progress`` and ``lastSeq``, both overwritten.
    Skipping those spares the writer (and the GIL it shares with the emitting threads) most of the
    reducer work of a burst. Never on a pending/terminal execution or a pending agent, where the
    first progress event also changes status and ``startedAt``.
    """
    kind = event["type"]
    if (
        state is None
        or state.status != "running"
        or kind != nxt["type"]
        or not state.last_seq < event["seq"] < nxt["seq"]
    ):
        return False
    if kind == "execution:progress":
        return True
    if kind != "agent:progress":
        return False
    data, next_data = event.get("data"), nxt.get("data")
    if not isinstance(data, dict) or not isinstance(next_data, dict):
        return False
    agent_id = data.get("agentId")
    if not isinstance(agent_id, str) or next_data.get("agentId") != agent_id:
        return False
    row = state.agent(agent_id)
    return row is not None and row.status == "running"


class _Flush:
    """A marker queued behind appended events; set once everything before it is committed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class Store:
    """SQLite store (stdlib ``sqlite3``, WAL); writes batched by a writer thread.

    ``append`` never blocks; ``flush`` makes everything appended durable; ``close`` drains.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_pending: int = _MAX_PENDING,
        read_wait: float = _READ_WAIT,
    ) -> None:
        self.path = os.fspath(path)
        self.max_pending = max_pending
        self.read_wait = read_wait
        self._drained = threading.Event()
        try:
            self._read = _connect(self.path)
            self._read.executescript(_SCHEMA)
            columns = {r[1] for r in self._read.execute("PRAGMA table_info(executions)")}
            if "user_id" not in columns:
                self._read.executescript("BEGIN;" + _MIGRATE_USER_ID + "COMMIT;")
            self._read.execute(_USER_INDEX)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {self.path!r}: {exc}") from exc
        self._read_lock = threading.Lock()
        self._queue: collections.deque[tuple[dict[str, Any], bytes] | _Flush] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._closed = False
        self._states: collections.OrderedDict[str, ExecutionState] = collections.OrderedDict()
        #: transactions the writer committed (each holds one batch of events)
        self.batches_written = 0
        #: times append() had to wait for the writer (the queue was full)
        self.waits = 0
        self._write = _connect(self.path)
        self._writer = threading.Thread(target=self._run, name="zmqmon-store", daemon=True)
        self._writer.start()

    # -- writes ---------------------------------------------------------------------------------

    def append(self, event: dict[str, Any], payload: bytes) -> None:
        """Queue one event (its wire dict and its encoded JSON payload) for storage; waits for
        the writer only when ``max_pending`` events are queued already."""
        queue = self._queue
        if len(queue) >= self.max_pending:
            self._wait_for_room()
        queue.append((event, payload))

    def _wait_for_room(self) -> None:
        # Backpressure: hold the emitting thread until the writer catches up (half the bound).
        self.waits += 1
        while len(self._queue) > self.max_pending // 2 and not self._closed:
            self._drained.clear()
            self._wake.set()
            self._drained.wait(0.05)

    def flush(self, timeout: float | None = None, *, strict: bool = True) -> None:
        """Wait until everything appended so far is committed. Raises :class:`StoreError` (on a
        timeout too, unless ``strict=False``: then it returns, what is committed is committed)."""
        if self._closed:
            return
        marker = _Flush()
        self._queue.append(marker)
        self._wake.set()
        if not marker.done.wait(timeout):
            if not strict:
                return
            raise StoreError(f"store flush timed out after {timeout}s")
        if marker.error is not None:
            raise StoreError(f"store write failed: {marker.error}") from marker.error

    def close(self) -> None:
        """Write everything appended, stop the writer and close the file."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._writer.join()
        self._closed = True
        self._write.close()
        with self._read_lock:
            self._read.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(_WRITER_INTERVAL)
            self._wake.clear()
            closing = self._closing
            self._drain()
            if closing and not self._queue:
                return

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch: list[tuple[dict[str, Any], bytes]] = []
            markers: list[_Flush] = []
            # A flush marker ends a batch: what follows it need not be committed to release it.
            while queue:
                item = queue.popleft()
                if isinstance(item, _Flush):
                    markers.append(item)
                    break
                batch.append(item)
            error: BaseException | None = None
            if batch:
                try:
                    self._write_batch(batch)
                except Exception as exc:  # a store fault must not kill the writer
                    log.exception("store: writing %d events failed", len(batch))
                    error = exc
            for marker in markers:
                marker.error = error
                marker.done.set()
            self._drained.set()

    def _write_batch(self, batch: list[tuple[dict[str, Any], bytes]]) -> None:
        rows = []
        by_execution: dict[str, list[dict[str, Any]]] = {}
        for event, payload in batch:
            try:
                execution_id = event["executionId"]
                rows.append((execution_id, event["seq"], event["type"], payload))
            except (KeyError, TypeError):  # not an event at all: nothing to key it by
                log.warning("store: dropped a malformed event: %.200r", event)
                continue
            group = by_execution.get(execution_id)
            if group is None:
                by_execution[execution_id] = [event]
            else:
                group.append(event)
        touched: dict[str, ExecutionState] = {}
        for execution_id, events in by_execution.items():
            state = self._cached_state(execution_id)
            last = len(events) - 1
            for i, event in enumerate(events):
                # Cheap pre-check inline: most events of a burst are progress events.
                if (
                    i < last
                    and event["type"] in _PROGRESS_TYPES
                    and _superseded(state, event, events[i + 1])
                ):
                    continue
                try:
                    state = apply_event(state, parse_event(event))
                except ProtocolError as exc:  # stored anyway (verbatim); the state skips it
                    log.warning(
                        "store: event %s/%s not applied: %s", execution_id, event["seq"], exc
                    )
            if state is not None:
                touched[execution_id] = state
        conn = self._write
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)", rows)
            conn.executemany(
                "INSERT INTO executions (execution_id, workflow_id, status, last_seq, state, "
                "user_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (execution_id) DO UPDATE SET "
                "status = excluded.status, last_seq = excluded.last_seq, state = excluded.state, "
                "user_id = excluded.user_id",
                [
                    (
                        s.execution_id,
                        s.workflow_id,
                        s.status,
                        s.last_seq,
                        dumps(s.to_json_dict()),
                        s.user_id,
                    )
                    for s in touched.values()
                ],
            )
            conn.execute("COMMIT")
            self.batches_written += 1
        except BaseException:
            conn.execute("ROLLBACK")
            self._states.clear()  # the cache may be ahead of the file now
            raise
        for execution_id, state in touched.items():
            self._states[execution_id] = state
            self._states.move_to_end(execution_id)
        while len(self._states) > _STATE_CACHE:
            self._states.popitem(last=False)

    def _cached_state(self, execution_id: str) -> ExecutionState | None:
        state = self._states.get(execution_id)
        if state is None:
            row = self._write.execute(
                "SELECT state FROM executions WHERE execution_id = ?", (execution_id,)
            ).fetchone()
            if row is not None:
                state = ExecutionState.model_validate(loads(row[0]))
        return state

    # -- reads ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = (), *, wait: bool = True) -> list[Any]:
        # Bounded: a busy (or wedged) writer delays a read by read_wait at most.
        if wait:
            self.flush(timeout=self.read_wait, strict=False)
        with self._read_lock:
            if self._closed:
                raise StoreError("store is closed")
            try:
                return self._read.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from exc

    def event_payloads(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> list[bytes]:
        """The stored JSON payloads (verbatim) of events with seq > ``after_seq``, in order."""
        rows = self._query(
            "SELECT payload FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (execution_id, after_seq, limit),
        )
        return [bytes(r[0]) for r in rows]

    def events_page(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000, *, wait: bool = True
    ) -> tuple[list[bytes], int] | None:
        """The payloads after ``after_seq`` (at most ``limit``) and the execution's lastSeq, or
        None if the execution is unknown.

        Like every read it first waits for the writer (``read_wait`` at most) — unless
        ``wait=False`` (a repair, which asks again for what is not there yet), or a whole page
        after ``after_seq`` is committed already: a subscriber paging through a backlog during
        a burst reads it at once instead of waiting behind the burst's newest events each time
        (the lastSeq it gets says how far the file goes).
        """
        committed = self._states.get(execution_id)  # the writer's view after its last commit
        if wait and (committed is None or committed.last_seq < after_seq + limit):
            self.flush(timeout=self.read_wait, strict=False)
        with self._read_lock:
            if self._closed:
                raise StoreError("store is closed")
            read = self._read
            try:
                read.execute("BEGIN")  # one snapshot of the file for both reads
                try:
                    row = read.execute(
                        "SELECT last_seq FROM executions WHERE execution_id = ?", (execution_id,)
                    ).fetchone()
                    rows = (
                        []
                        if row is None
                        else read.execute(
                            "SELECT payload FROM events WHERE execution_id = ? AND seq > ? "
                            "ORDER BY seq LIMIT ?",
                            (execution_id, after_seq, limit),
                        ).fetchall()
                    )
                finally:
                    read.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from exc
        if row is None:
            return None
        return [bytes(r[0]) for r in rows], int(row[0])

    def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Events (wire dicts) of one execution with seq > ``after_seq``, in seq order."""
        return [loads(p) for p in self.event_payloads(execution_id, after_seq, limit)]

    def state(self, execution_id: str) -> ExecutionState | None:
        """An execution's state (the reducer applied to every stored event), or None."""
        payload = self.state_payload(execution_id)
        return None if payload is None else ExecutionState.model_validate(loads(payload))

    def state_payload(self, execution_id: str, *, wait: bool = True) -> bytes | None:
        """An execution's state as the stored JSON (what :meth:`state` parses), or None.

        For replies: splicing it costs nothing per agent, where parsing and re-encoding a
        20,000-agent state takes a good part of a second. ``wait=False``: what is committed,
        without waiting for the writer.
        """
        rows = self._query(
            "SELECT state FROM executions WHERE execution_id = ?", (execution_id,), wait=wait
        )
        if not rows:
            return None
        value = rows[0][0]
        return value if isinstance(value, bytes) else str(value).encode()

    def executions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[ExecutionState]:
        """Execution states, newest first, optionally filtered by status, workflow and user;
        ``before``: only executions older than that one (the next page of a list)."""
        payloads = self.execution_payloads(
            status=status, workflow_id=workflow_id, user_id=user_id, before=before, limit=limit
        )
        return [ExecutionState.model_validate(loads(p)) for p in payloads]

    def execution_payloads(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        user_id: str | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[bytes]:
        """As :meth:`executions`, the stored JSON of each state (for replies, unparsed)."""
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if workflow_id is not None:
            where.append("workflow_id = ?")
            params.append(workflow_id)
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if before is not None:
            # an unknown id yields no row here, so nothing is older: an empty page
            where.append("n < (SELECT n FROM executions WHERE execution_id = ?)")
            params.append(before)
        sql = "SELECT state FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._query(sql + " ORDER BY n DESC LIMIT ?", (*params, limit))
        return [r[0] if isinstance(r[0], bytes) else str(r[0]).encode() for r in rows]

    # -- workflows (written synchronously: rare, and the caller wants the id to be usable) -------

    def save_workflow(self, definition: WorkflowDefinition, workflow_id: str | None = None) -> str:
        """Store a definition (replacing one with the same id); returns its id.

        Without an id, the id is the definition's content digest
        (:func:`~zmqmon.core.workflow.workflow_digest`): the same definition stored again keeps
        its one row (its place and ``createdAt``), however often it is created or run inline.
        """
        definition = parse_workflow(definition)
        workflow_id = workflow_id or workflow_digest(definition)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._read_lock:
            if self._closed:
                raise StoreError("store is closed")
            try:
                # One statement: autocommit makes it its own transaction.
                self._read.execute(
                    "INSERT INTO workflows (workflow_id, name, description, agent_count, "
                    "definition, created_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (workflow_id) DO UPDATE SET name = excluded.name, "
                    "description = excluded.description, agent_count = excluded.agent_count, "
                    "definition = excluded.definition",
                    (
                        workflow_id,
                        definition.name,
                        definition.description,
                        len(definition.agents),
                        dumps(definition.to_json_dict()).decode(),
                        created,
                    ),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot save workflow: {exc}") from exc
        return workflow_id

    def workflow(self, workflow_id: str) -> WorkflowDefinition | None:
        """A stored definition, or None."""
        rows = self._query("SELECT definition FROM workflows WHERE workflow_id = ?", (workflow_id,))
        return parse_workflow(rows[0][0]) if rows else None

    def workflows(self, limit: int = 100) -> list[dict[str, Any]]:
        """The ``limit`` newest stored workflows, newest first.

        Each: ``workflowId``, ``name``, ``description``, ``agentCount``, ``createdAt``.
        """
        rows = self._query(
            "SELECT workflow_id, name, description, agent_count, created_at FROM workflows "
            "ORDER BY n DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "workflowId": r[0],
                "name": r[1],
                "description": r[2],
                "agentCount": r[3],
                "createdAt": r[4],
            }
            for r in rows
        ]
