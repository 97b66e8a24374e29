"""The state service on a real ROUTER socket: every op of contract §4, malformed requests,
envelopes (REQ and DEALER), faults inside an op. The runner is a stand-in here (the engine's own
integration is in test_server.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

import zmqmon
from tests.strategies import REQUESTS, encoded, requests_for
from zmqmon.core.wire import dumps, loads
from zmqmon.core.workflow import WorkflowDefinition
from zmqmon.errors import WorkflowError
from zmqmon.services.state_service import StateService
from zmqmon.shells.client import StateClient
from zmqmon.shells.publisher import EventPublisher
from zmqmon.shells.store import Store

DEFINITION = {"name": "W", "agents": [{"id": "a", "uses": "zmqmon.demo:work"}]}


@dataclass
class Handle:
    id: str


@dataclass
class FakeRunner:
    """Records submissions; emits started like an engine would."""

    publisher: EventPublisher
    submitted: list[tuple[WorkflowDefinition, str, Any, Any]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    refuse: str | None = None

    def submit(
        self,
        workflow: WorkflowDefinition,
        *,
        workflow_id: str,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Handle:
        if self.refuse:
            raise WorkflowError(self.refuse)
        execution_id = f"run-{len(self.submitted)}"
        self.submitted.append((workflow, workflow_id, inputs, user_id))
        self.publisher.emit_execution_started(
            execution_id, workflow_id, workflow_name=workflow.name, agent_count=1, user_id=user_id
        )
        self.running.add(execution_id)
        return Handle(execution_id)

    def cancel(self, execution_id: str, reason: str = "cancelled") -> bool:
        if execution_id not in self.running:
            return False
        self.running.discard(execution_id)
        self.publisher.emit_execution_cancelled(execution_id, "wf", reason)
        return True


@dataclass
class Rig:
    service: StateService
    store: Store
    publisher: EventPublisher
    runner: FakeRunner
    sock: Any

    def ask(self, request: Any) -> dict[str, Any]:
        self.sock.send(request if isinstance(request, bytes) else dumps(request))
        assert self.sock.poll(5000), "no reply"
        reply: dict[str, Any] = loads(self.sock.recv())
        return reply


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    ctx: zmq.Context[Any] = zmq.Context()
    store = Store(tmp_path / "s.sqlite3")
    pub = EventPublisher("tcp://127.0.0.1:0", store=store, context=ctx, heartbeat_interval=0)
    runner = FakeRunner(pub)
    service = StateService(
        "tcp://127.0.0.1:0", store=store, publisher=pub, runner=runner, context=ctx
    ).start()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(service.endpoint)
    try:
        yield Rig(service, store, pub, runner, sock)
    finally:
        sock.close(0)
        service.close()
        pub.close()
        store.close()
        ctx.term()


def error_of(reply: dict[str, Any]) -> tuple[str, str]:
    assert reply["ok"] is False, reply
    return reply["error"]["code"], reply["error"]["message"]


def emit_execution(pub: EventPublisher, execution_id: str = "e1", finish: bool = True) -> None:
    pub.emit_execution_started(execution_id, "wf", workflow_name="W", agent_count=1)
    pub.emit_agent_started(execution_id, "wf", "a", "A")
    pub.emit_agent_progress(execution_id, "wf", "a", "A", 50)
    if finish:
        pub.emit_execution_completed(execution_id, "wf", duration_ms=3, results={"a": 1})


def test_ping_echoes_id(rig: Rig) -> None:
    assert rig.ask({"op": "ping", "id": "x-1"}) == {
        "ok": True, "version": zmqmon.__version__, "id": "x-1",
    }  # fmt: skip
    assert rig.ask({"op": "ping"}) == {"ok": True, "version": zmqmon.__version__}


def test_snapshot_reads_the_published_state_at_once(rig: Rig) -> None:
    emit_execution(rig.publisher, finish=False)
    reply = rig.ask({"op": "snapshot", "executionId": "e1", "id": 1})
    execution = reply["execution"]
    assert execution["status"] == "running" and execution["lastSeq"] == 3
    assert execution["agents"][0] == {
        "agentId": "a", "agentName": "A", "status": "running", "progress": 50,
        "dependsOn": [], "startedAt": execution["agents"][0]["startedAt"], "finishedAt": None,
        "durationMs": None, "error": None,
    }  # fmt: skip
    assert error_of(rig.ask({"op": "snapshot", "executionId": "zzz"}))[0] == "not_found"


def test_events_after_seq_limit_and_last_seq(rig: Rig) -> None:
    emit_execution(rig.publisher)
    reply = rig.ask({"op": "events", "executionId": "e1", "afterSeq": 1, "id": 5})
    assert [e["seq"] for e in reply["events"]] == [2, 3, 4]
    assert reply["lastSeq"] == 4 and reply["id"] == 5
    assert reply["events"][2]["data"]["results"] == {"a": 1}
    limited = rig.ask({"op": "events", "executionId": "e1", "limit": 2})
    assert [e["seq"] for e in limited["events"]] == [1, 2] and limited["lastSeq"] == 4
    assert rig.ask({"op": "events", "executionId": "e1", "afterSeq": 4})["events"] == []
    assert error_of(rig.ask({"op": "events", "executionId": "zzz"}))[0] == "not_found"


def test_executions_newest_first_with_filters(rig: Rig) -> None:
    emit_execution(rig.publisher, "old")
    emit_execution(rig.publisher, "new", finish=False)
    ids = [s["executionId"] for s in rig.ask({"op": "executions"})["executions"]]
    assert ids == ["new", "old"]
    running = rig.ask({"op": "executions", "status": "running"})["executions"]
    assert [s["executionId"] for s in running] == ["new"]
    assert rig.ask({"op": "executions", "workflowId": "nope"})["executions"] == []
    assert len(rig.ask({"op": "executions", "limit": 1})["executions"]) == 1


def test_create_workflow_and_workflows(rig: Rig) -> None:
    wid = rig.ask({"op": "create_workflow", "workflow": DEFINITION})["workflowId"]
    listed = rig.ask({"op": "workflows"})["workflows"]
    assert [(w["workflowId"], w["name"], w["agentCount"]) for w in listed] == [(wid, "W", 1)]
    dup = {"name": "D", "agents": [{"id": "a", "uses": "m:f"}, {"id": "a", "uses": "m:f"}]}
    code, message = error_of(rig.ask({"op": "create_workflow", "workflow": dup}))
    assert code == "bad_request" and "duplicate agent id 'a'" in message
    unknown = {"name": "U", "agents": [{"id": "a", "uses": "m:f", "dependsOn": ["ghost"]}]}
    code, message = error_of(rig.ask({"op": "create_workflow", "workflow": unknown}))
    assert code == "bad_request" and "unknown agent 'ghost'" in message


def test_execute_by_id_and_inline(rig: Rig) -> None:
    wid = rig.ask({"op": "create_workflow", "workflow": DEFINITION})["workflowId"]
    reply = rig.ask({"op": "execute", "workflowId": wid, "inputs": {"n": 1}, "userId": "bob"})
    execution_id = reply["executionId"]
    definition, workflow_id, inputs, user = rig.runner.submitted[0]
    assert (definition.name, workflow_id, inputs, user) == ("W", wid, {"n": 1}, "bob")
    snap = rig.ask({"op": "snapshot", "executionId": execution_id})["execution"]
    assert snap["userId"] == "bob" and snap["workflowId"] == wid

    inline = rig.ask({"op": "execute", "workflow": {**DEFINITION, "name": "Inline"}})
    assert inline["ok"] is True
    names = [w["name"] for w in rig.ask({"op": "workflows"})["workflows"]]
    assert names == ["Inline", "W"]  # the inline definition is stored too (newest first)

    assert error_of(rig.ask({"op": "execute", "workflowId": "ghost"}))[0] == "not_found"
    code, message = error_of(rig.ask({"op": "execute", "workflow": {"name": "x", "agents": []}}))
    assert code == "bad_request" and "agents" in message
    rig.runner.refuse = "agent 'a': cannot import 'zmqmon.demo:nope'"
    code, message = error_of(rig.ask({"op": "execute", "workflowId": wid}))
    assert code == "bad_request" and "cannot import" in message
    code, message = error_of(rig.ask({"op": "execute"}))
    assert code == "bad_request" and "exactly one of workflowId and workflow" in message


def test_execute_without_engine_is_internal(rig: Rig) -> None:
    rig.service.runner = None
    code, message = error_of(rig.ask({"op": "execute", "workflow": DEFINITION}))
    assert code == "internal" and "no executor" in message


def test_cancel_running_finished_unknown(rig: Rig) -> None:
    execution_id = rig.ask({"op": "execute", "workflow": DEFINITION})["executionId"]
    assert rig.ask({"op": "cancel", "executionId": execution_id, "id": 3}) == {"ok": True, "id": 3}
    snap = rig.ask({"op": "snapshot", "executionId": execution_id})["execution"]
    assert snap["status"] == "cancelled"
    code, message = error_of(rig.ask({"op": "cancel", "executionId": execution_id}))
    assert code == "conflict" and "cancelled" in message
    assert error_of(rig.ask({"op": "cancel", "executionId": "ghost"}))[0] == "not_found"
    emit_execution(rig.publisher, "orphan", finish=False)  # running, but not in this runner
    assert error_of(rig.ask({"op": "cancel", "executionId": "orphan"}))[0] == "conflict"


@pytest.mark.parametrize(
    ("request_bytes", "fault"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"ping"', "must be a JSON object, got str"),
        (b'{"id": 1}', "missing 'op'"),
        (b'{"op": "explode"}', "unknown op 'explode'"),
        (b'{"op": "snapshot"}', "executionId"),
        (b'{"op": "events", "executionId": 5}', "executionId"),
        (b'{"op": "events", "executionId": "e", "afterSeq": "x"}', "afterSeq"),
        (b'{"op": "events", "executionId": "e", "limit": 0}', "limit"),
        (b'{"op": "executions", "status": "weird"}', "status"),
        (b'{"op": "ping", "extra": 1}', "extra"),
        (b'{"op": "create_workflow", "workflow": "text"}', "workflow"),
        (b"", "not valid JSON"),
    ],
)
def test_malformed_requests_get_bad_request_naming_the_fault(
    rig: Rig, request_bytes: bytes, fault: str
) -> None:
    code, message = error_of(rig.ask(request_bytes))
    assert code == "bad_request"
    assert fault in message
    assert rig.ask({"op": "ping"})["ok"] is True  # still serving


def test_error_reply_echoes_the_id_of_a_bad_request(rig: Rig) -> None:
    reply = rig.ask({"op": "snapshot", "id": "r-9"})
    assert reply["id"] == "r-9" and reply["error"]["code"] == "bad_request"


def test_req_socket_envelope(rig: Rig) -> None:
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.connect(rig.service.endpoint)
    try:
        req.send(b'{"op": "ping"}')
        assert req.poll(5000)
        assert loads(req.recv())["version"] == zmqmon.__version__
        req.send(b"garbage")
        assert req.poll(5000)
        assert loads(req.recv())["error"]["code"] == "bad_request"
    finally:
        req.close(0)


def test_wrong_frame_count_gets_an_error_and_the_service_goes_on(rig: Rig) -> None:
    rig.sock.send_multipart([b'{"op": "ping"}', b'{"op": "ping"}'])
    assert rig.sock.poll(5000)
    code, message = error_of(loads(rig.sock.recv()))
    assert code == "bad_request" and "2 frames" in message
    assert rig.ask({"op": "ping"})["ok"] is True


def test_a_fault_inside_an_op_is_internal_and_the_service_goes_on(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rig.store, "execution_payloads", boom)
    code, message = error_of(rig.ask({"op": "executions", "id": 1}))
    assert code == "internal" and "disk on fire" in message
    assert rig.ask({"op": "ping"})["ok"] is True


def test_handle_frames_without_a_body_is_dropped_or_answered(rig: Rig) -> None:
    assert rig.service.handle_frames([]) is None
    reply = rig.service.handle_frames([b"id"])
    assert reply is not None and reply[0] == b"id"
    assert loads(reply[-1])["error"]["code"] == "bad_request"


def test_close_is_prompt_and_idempotent(rig: Rig) -> None:
    rig.service.close()
    rig.service.close()


def test_events_reply_is_bounded_in_bytes(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import zmqmon.services.state_service as module

    monkeypatch.setattr(module, "MAX_EVENTS_REPLY_BYTES", 1000)
    emit_execution(rig.publisher, finish=False)
    for _ in range(20):
        rig.publisher.emit_agent_progress("e1", "wf", "a", "A", 60, "m" * 200)
    first = rig.ask({"op": "events", "executionId": "e1"})
    assert 1 <= len(first["events"]) < 23 and first["lastSeq"] == 23
    got = [e["seq"] for e in first["events"]]
    while got[-1] < first["lastSeq"]:
        more = rig.ask({"op": "events", "executionId": "e1", "afterSeq": got[-1]})["events"]
        assert more
        got += [e["seq"] for e in more]
    assert got == list(range(1, 24))


@pytest.mark.parametrize("after", [2**63, 2**64 + 5, 10**30])
def test_after_seq_past_sqlite_integers_is_bad_request_not_internal(rig: Rig, after: int) -> None:
    emit_execution(rig.publisher)
    code, message = error_of(rig.ask({"op": "events", "executionId": "e1", "afterSeq": after}))
    assert code == "bad_request" and "afterSeq" in message
    # The largest SQLite integer is a valid (empty) position.
    reply = rig.ask({"op": "events", "executionId": "e1", "afterSeq": 2**63 - 1})
    assert reply["ok"] is True and reply["events"] == [] and reply["lastSeq"] == 4


def test_workflows_are_newest_first_and_limited(rig: Rig) -> None:
    create = [
        {"op": "create_workflow", "workflow": {**DEFINITION, "name": f"W{i}"}} for i in range(101)
    ]
    ids = [rig.ask(request)["workflowId"] for request in create]
    listed = rig.ask({"op": "workflows"})["workflows"]
    assert [w["workflowId"] for w in listed] == ids[::-1][:100]  # default limit 100
    two = rig.ask({"op": "workflows", "limit": 2})["workflows"]
    assert [w["name"] for w in two] == ["W100", "W99"]
    for bad in (0, 1001, "all"):
        code, message = error_of(rig.ask({"op": "workflows", "limit": bad}))
        assert code == "bad_request" and "limit" in message


def test_the_same_definition_is_stored_once(rig: Rig) -> None:
    first = rig.ask({"op": "create_workflow", "workflow": DEFINITION})["workflowId"]
    # Same content, other key order and spelled-out defaults: the same workflow.
    same = {"agents": [{"uses": "zmqmon.demo:work", "id": "a", "params": {}}], "name": "W"}
    assert rig.ask({"op": "create_workflow", "workflow": same})["workflowId"] == first
    for _ in range(3):
        assert rig.ask({"op": "execute", "workflow": same})["ok"] is True
    other = rig.ask({"op": "execute", "workflow": {**DEFINITION, "description": "changed"}})
    assert other["ok"] is True
    assert [w[1] for w in rig.runner.submitted[:3]] == [first] * 3
    listed = rig.ask({"op": "workflows"})["workflows"]
    assert len(listed) == 2 and listed[1]["workflowId"] == first


# -- property-based: whatever a client sends, a well-formed answer ----------------------------


@pytest.mark.timeout(120)
def test_any_request_gets_a_well_formed_reply_and_nothing_escapes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zmqmon.services.server import Server

    caplog.set_level(logging.WARNING)
    srv = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", tmp_path / "fuzz.sqlite3").start()
    try:
        known = srv.submit({"name": "K", "agents": [{"id": "a", "uses": "zmqmon.demo:work",
                                                     "params": {"seconds": 0}}]})  # fmt: skip
        known.join(20)
        # Requests about an execution that exists reach the store with their numbers.
        about_known = requests_for("snapshot", "events", "cancel").map(
            lambda r: {**r, "executionId": known.id}
        )

        @given(raw=st.one_of(encoded(REQUESTS), encoded(about_known)))
        def answers(raw: bytes) -> None:
            reply = loads(srv.service.handle(raw))
            assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
            if not reply["ok"]:
                error = reply["error"]
                # A client's fault is never the service's: no "internal" for any input.
                assert error["code"] in {"bad_request", "not_found", "conflict"}, error
                assert isinstance(error["message"], str) and error["message"]

        @given(frames=st.lists(st.binary(max_size=24), max_size=4))
        def envelopes(frames: list[bytes]) -> None:
            reply = srv.service.handle_frames(frames)
            if not frames:
                assert reply is None
                return
            assert reply is not None and reply[0] == frames[0]
            assert isinstance(loads(reply[-1])["ok"], bool)

        answers()
        envelopes()
        with StateClient(srv.endpoints["state"], timeout=10) as client:
            assert client.ping()  # still serving on its socket
    finally:
        srv.stop()
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert tracebacks == []
