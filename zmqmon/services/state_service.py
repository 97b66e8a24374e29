"""The state service (contract §4): a ROUTER socket answering snapshot/events/execute/cancel.

One thread owns the socket and answers requests one at a time. Reads go to the store, which
flushes its writer first (read-your-publishes: every event already published is answered).

Envelopes: a REQ client's message arrives as ``[identity, b"", request]``, a DEALER client's
usually as ``[identity, request]``; the reply mirrors the envelope. Anything else gets a
``bad_request`` reply on the same identity — a malformed message never goes unanswered and never
stops the service.

``events`` answers at most ``limit`` events and, past :data:`MAX_EVENTS_REPLY_BYTES`, fewer: the
reply's ``lastSeq`` tells whether more follow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import zmq

import zmqmon
from zmqmon.core.reports import LOST, ReportBook
from zmqmon.core.requests import (
    CancelRequest,
    CreateWorkflowRequest,
    EventsRequest,
    ExecuteRequest,
    ExecutionsRequest,
    PingRequest,
    ReportRequest,
    Request,
    SnapshotRequest,
    WorkflowsRequest,
    encode_error,
    encode_ok,
    parse_request,
    request_id_of,
)
from zmqmon.core.wire import dumps
from zmqmon.core.workflow import (
    AgentAllowList,
    WorkflowDefinition,
    parse_workflow,
    workflow_digest,
)
from zmqmon.errors import (
    BadRequestError,
    ConflictError,
    InternalError,
    NotFoundError,
    ServiceError,
    WorkflowError,
)
from zmqmon.shells.curve import CurveServer
from zmqmon.shells.publisher import EventPublisher
from zmqmon.shells.store import Store

__all__ = ["MAX_EVENTS_REPLY_BYTES", "ExecutionRunner", "StateService"]

log = logging.getLogger(__name__)

_POLL_MS = 50  # close() is noticed within this
_SWEEP_EVERY = 1.0  # seconds between looks for reported executions whose reporter went silent

#: an ``events`` reply stops adding events past this size (always at least one event)
MAX_EVENTS_REPLY_BYTES = 8 * 1024 * 1024


class ExecutionRunner(Protocol):
    """What the service needs of an executor (the engine implements it)."""

    def submit(
        self,
        workflow: WorkflowDefinition,
        *,
        workflow_id: str,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Any:
        """Start an execution; the returned handle has ``.id``. ``WorkflowError`` if invalid."""
        ...

    def cancel(self, execution_id: str, reason: str = "cancelled") -> bool:
        """Cancel a running execution; False if unknown or finished."""
        ...


class StateService:
    """ROUTER in its own thread; every op of contract §4; malformed requests → ``bad_request``.

    ``agents``: the modules definitions may name in ``uses`` (None: any). ``create_workflow`` and
    ``execute`` refuse any other module with ``bad_request`` before anything is imported or
    stored; the runner checks again as it resolves. ``max_agents``: agents per definition
    (None: no cap). ``max_request_bytes``: the largest request frame read (ZeroMQ's
    ``MAXMSGSIZE``; a bigger one drops its connection unanswered — its bytes are never read).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        store: Store,
        publisher: EventPublisher,
        runner: ExecutionRunner | None = None,
        context: zmq.Context[Any] | None = None,
        agents: AgentAllowList | None = None,
        max_agents: int | None = None,
        max_request_bytes: int | None = None,
        curve: CurveServer | None = None,
        reports: ReportBook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.reports = reports or ReportBook(max_agents=max_agents)
        self._clock = clock
        self.agents = agents
        self.max_agents = max_agents
        self.publisher = publisher
        self.runner = runner
        self._context = context or zmq.Context.instance()
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 200)
        if curve is not None:  # encrypted; only authorized clients (the context's authenticator)
            curve.apply(sock)
        if max_request_bytes is not None:
            # ZeroMQ checks a message's size in its header, before allocating it: a bigger
            # request is never read (the connection is dropped), so it costs no memory here.
            sock.setsockopt(zmq.MAXMSGSIZE, max_request_bytes)
        # An unknown identity in a reply is dropped (the client went away), never an error.
        try:
            sock.bind(endpoint)
        except zmq.ZMQError:
            sock.close(0)
            raise
        self._socket = sock
        self.endpoint: str = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ops: dict[type[Any], Callable[[Any], dict[str, Any] | bytes]] = {
            PingRequest: self._ping,
            SnapshotRequest: self._snapshot,
            EventsRequest: self._events,
            ExecutionsRequest: self._executions,
            CreateWorkflowRequest: self._create_workflow,
            WorkflowsRequest: self._workflows,
            ExecuteRequest: self._execute,
            CancelRequest: self._cancel,
            ReportRequest: self._report,
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> StateService:
        """Start answering in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="zmqmon-state", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering and close the socket (within ~50 ms)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._socket.closed:
            self._socket.close()

    def __enter__(self) -> StateService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        sock = self._socket
        next_sweep = self._clock() + _SWEEP_EVERY
        while not self._stop.is_set():
            if self._clock() >= next_sweep:
                next_sweep = self._clock() + _SWEEP_EVERY
                try:
                    self.sweep()
                except Exception:
                    log.exception("state service: sweeping reported executions failed")
            try:
                if not sock.poll(_POLL_MS):
                    continue
                frames = sock.recv_multipart()
            except zmq.ZMQError:
                log.exception("state service: receive failed")
                continue
            try:
                reply = self.handle_frames(frames)
                if reply is not None:
                    sock.send_multipart(reply)
            except BaseException:
                # Nothing a request provokes may end this thread: a dead state service behind a
                # live process answers no one (a real Ctrl-C goes to the main thread, not here).
                log.exception("state service: could not answer a message")

    # -- messages -------------------------------------------------------------------------------

    def handle_frames(self, frames: list[bytes]) -> list[bytes] | None:
        """The reply frames to one ROUTER message (identity first), or None to drop it."""
        if not frames:
            return None
        identity, body = frames[0], frames[1:]
        if len(body) == 2 and body[0] == b"":
            return [identity, b"", self.handle(body[1])]
        if len(body) == 1:
            return [identity, self.handle(body[0])]
        message = (
            f"expected one request frame (optionally after an empty delimiter), "
            f"got {len(body)} frames"
        )
        envelope = [b""] if body and body[0] == b"" else []
        return [identity, *envelope, encode_error("bad_request", message)]

    def handle(self, data: bytes) -> bytes:
        """The reply to one request frame; never raises."""
        try:
            request = parse_request(data)
        except BadRequestError as exc:
            return encode_error(exc.code, exc.message, request_id_of(data))
        rid = request.id
        try:
            result = self._ops[type(request)](request)
        except ServiceError as exc:
            return encode_error(exc.code, exc.message, rid)
        except BaseException as exc:  # even SystemExit from code an op ran: answer, go on
            log.exception("state service: %s failed", request.op)
            return encode_error(
                "internal", f"{request.op} failed: {type(exc).__name__}: {exc}", rid
            )
        if isinstance(result, bytes):
            return result
        return encode_ok(rid, **result)

    # -- ops ------------------------------------------------------------------------------------

    def _ping(self, req: PingRequest) -> dict[str, Any]:
        return {"version": zmqmon.__version__}

    def _snapshot(self, req: SnapshotRequest) -> bytes:
        payload = self.store.state_payload(req.execution_id, wait=req.fresh)
        if payload is None:
            raise NotFoundError(f"no execution {req.execution_id!r}")
        # The stored state JSON is spliced in as it is (the reducer's wire form, written by the
        # store): no parse and re-encode per agent row.
        tail = b"" if req.id is None else b',"id":' + dumps(req.id)
        return b'{"ok":true,"execution":' + payload + tail + b"}"

    def _events(self, req: EventsRequest) -> bytes:
        page = self.store.events_page(req.execution_id, req.after_seq, req.limit, wait=req.fresh)
        if page is None:
            raise NotFoundError(f"no execution {req.execution_id!r}")
        payloads, last_seq = page
        # Bounded reply: events can be up to 1 MiB each. Fewer than asked is fine: lastSeq tells
        # the client there is more, and it asks again after the last seq it got.
        size = 0
        for n, payload in enumerate(payloads):
            size += len(payload)
            if size > MAX_EVENTS_REPLY_BYTES and n > 0:
                payloads = payloads[:n]
                break
        # The stored payloads are spliced in verbatim: exactly the bytes that were published.
        head = b'{"ok":true,"events":[' + b",".join(payloads) + b'],"lastSeq":'
        tail = b"" if req.id is None else b',"id":' + dumps(req.id)
        return head + str(last_seq).encode() + tail + b"}"

    def _executions(self, req: ExecutionsRequest) -> bytes:
        payloads = self.store.execution_payloads(
            status=req.status,
            workflow_id=req.workflow_id,
            user_id=req.user_id,
            before=req.before,
            limit=req.limit,
        )
        # Spliced as stored, like snapshot: no parse and re-encode of every agent row.
        tail = b"" if req.id is None else b',"id":' + dumps(req.id)
        return b'{"ok":true,"executions":[' + b",".join(payloads) + b"]" + tail + b"}"

    def _definition(self, source: Mapping[str, Any]) -> WorkflowDefinition:
        """Parse a definition from a request and check its ``uses`` against :attr:`agents`."""
        try:
            definition = parse_workflow(source, max_agents=self.max_agents)
            if self.agents is not None:
                for spec in definition.agents:
                    try:
                        self.agents.check_uses(spec.uses)
                    except WorkflowError as exc:
                        raise WorkflowError(
                            f"agent {spec.id!r}: uses {spec.uses!r}: {exc}"
                        ) from exc
        except WorkflowError as exc:
            raise BadRequestError(str(exc)) from exc
        return definition

    def _create_workflow(self, req: CreateWorkflowRequest) -> dict[str, Any]:
        return {"workflowId": self.store.save_workflow(self._definition(req.workflow))}

    def _workflows(self, req: WorkflowsRequest) -> dict[str, Any]:
        return {"workflows": self.store.workflows(req.limit)}

    def _execute(self, req: ExecuteRequest) -> dict[str, Any]:
        if self.runner is None:
            raise InternalError("no executor: this service cannot run workflows")
        if req.workflow_id is not None:
            definition = self.store.workflow(req.workflow_id)
            if definition is None:
                raise NotFoundError(f"no workflow {req.workflow_id!r}")
            workflow_id = req.workflow_id
        else:
            definition = self._definition(req.workflow or {})
            workflow_id = None  # stored once the runner accepted it
        # Inline: the content digest, so running one definition again and again stores one row.
        run_workflow_id = workflow_id or workflow_digest(definition)
        try:
            handle = self.runner.submit(
                definition, workflow_id=run_workflow_id, inputs=req.inputs, user_id=req.user_id
            )
        except WorkflowError as exc:
            raise BadRequestError(str(exc)) from exc
        if workflow_id is None:
            self.store.save_workflow(definition, run_workflow_id)
        return {"executionId": str(handle.id)}

    def _cancel(self, req: CancelRequest) -> dict[str, Any]:
        if self.runner is not None and self.runner.cancel(req.execution_id, req.reason):
            return {}
        workflow_id = self.reports.close(req.execution_id)
        if workflow_id is not None:  # a reported execution: closed here, its reporter told
            self.publisher.emit_execution_cancelled(req.execution_id, workflow_id, req.reason)
            return {}
        state = self.store.state(req.execution_id)
        if state is None:
            raise NotFoundError(f"no execution {req.execution_id!r}")
        if state.is_terminal:
            raise ConflictError(f"execution {req.execution_id!r} already {state.status}")
        raise ConflictError(f"execution {req.execution_id!r} is not running in this executor")

    # -- reported executions (zmqmon.track) --------------------------------------------------------

    def _report(self, req: ReportRequest) -> dict[str, Any]:
        def stored(execution_id: str) -> bool:
            # Published (the emitter numbers it) or stored: an id a reporter may not open.
            if self.publisher.last_seq(execution_id) > 0:
                return True
            return self.store.state_payload(execution_id) is not None

        accepted = self.reports.accept(req, self._clock(), stored)
        emit = self.publisher.emit
        eid, wid = accepted.execution_id, accepted.workflow_id
        for item in accepted.events:
            emit(item.type, eid, wid, dict(item.data), item.timestamp)
        return {
            "lastSeq": self.publisher.last_seq(eid),
            "closed": accepted.closed,  # by someone else: publish nothing more
            # where to watch it from (a reporter shows its run as a live monitor)
            "events": self.publisher.endpoint,
        }

    def sweep(self) -> list[str]:
        """Fail the reported executions whose reporter went silent (``ReporterLost``)."""
        lost = self.reports.sweep(self._clock())
        for execution_id, workflow_id in lost:
            self.publisher.emit_execution_failed(
                execution_id,
                workflow_id,
                error=f"its reporter sent nothing for {self.reports.lost_after:g} s",
                error_type=LOST,
            )
        return [eid for eid, _ in lost]


_ = Request  # the union the ops table covers
