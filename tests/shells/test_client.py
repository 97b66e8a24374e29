"""State clients: the pure request/reply core, then both faces on real sockets (timeouts,
stale replies, the service's refusals as typed errors)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from zmqmon.core import calls
from zmqmon.core.events import AgentProgress
from zmqmon.core.requests import encode_error, encode_ok
from zmqmon.core.state import ExecutionState
from zmqmon.core.wire import loads
from zmqmon.core.workflow import parse_workflow
from zmqmon.errors import (
    BadRequestError,
    ConflictError,
    InternalError,
    NotFoundError,
    ProtocolError,
    ServiceUnavailableError,
)
from zmqmon.shells.client import AsyncStateClient, StateClient

DEFINITION = {"name": "W", "agents": [{"id": "a", "uses": "zmqmon.demo:work"}]}

# -- the pure core --------------------------------------------------------------------------------


def test_requests_are_camel_case_with_id_and_no_absent_fields() -> None:
    assert loads(calls.events("e1", 3, 10).encode(7)) == {
        "op": "events", "executionId": "e1", "afterSeq": 3, "limit": 10, "id": 7,
    }  # fmt: skip
    assert loads(calls.executions(status="running").encode(1)) == {
        "op": "executions", "status": "running", "id": 1,
    }  # fmt: skip
    assert loads(calls.execute("wf-1", user_id="bob").encode(2)) == {
        "op": "execute", "workflowId": "wf-1", "userId": "bob", "id": 2,
    }  # fmt: skip
    inline = loads(calls.execute(workflow=parse_workflow(DEFINITION), inputs={"x": 1}).encode(3))
    assert inline["workflow"]["agents"][0]["uses"] == "zmqmon.demo:work"
    assert inline["inputs"] == {"x": 1} and "workflowId" not in inline
    assert loads(calls.cancel("e1").encode(4)) == {"op": "cancel", "executionId": "e1", "id": 4}
    assert loads(calls.ping().encode(5)) == {"op": "ping", "id": 5}


def test_replies_become_models() -> None:
    event = {"type": "agent:progress", "executionId": "e1", "workflowId": "w",
             "timestamp": "2026-11-25T10:00:00.000Z", "seq": 2,
             "data": {"agentId": "a", "agentName": "A", "progress": 5}}  # fmt: skip
    events, last = calls.events("e1").result(encode_ok(1, events=[event], lastSeq=9))
    assert isinstance(events[0], AgentProgress) and events[0].data.progress == 5 and last == 9
    state = {"executionId": "e1", "workflowId": "w", "status": "running", "lastSeq": 2}
    snap = calls.snapshot("e1").result(encode_ok(1, execution=state))
    assert isinstance(snap, ExecutionState) and snap.status == "running"
    assert calls.ping().result(encode_ok(1, version="9.9")) == "9.9"
    assert calls.cancel("e1").result(encode_ok(1)) is None


@pytest.mark.parametrize(
    ("code", "error"),
    [("not_found", NotFoundError), ("conflict", ConflictError),
     ("bad_request", BadRequestError), ("internal", InternalError)],
)  # fmt: skip
def test_error_replies_raise_the_matching_error(code: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="nope"):
        calls.snapshot("e1").result(encode_error(code, "nope", 1))


def test_malformed_replies_raise_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        calls.ping().result(b"not json")
    with pytest.raises(ProtocolError, match="malformed snapshot reply"):
        calls.snapshot("e1").result(encode_ok(1, execution={"status": "x"}))
    with pytest.raises(ProtocolError, match="malformed ping reply"):
        calls.ping().result(encode_ok(1))
    assert calls.reply_id(b"garbage") is None
    assert calls.reply_id(encode_ok(12)) == 12


# -- a scripted ROUTER to drive the sockets -------------------------------------------------------


@pytest.fixture
def fake_service() -> Iterator[Callable[[Callable[[dict[str, Any]], list[bytes]]], str]]:
    """A ROUTER answering each request with the frames a script returns (possibly none)."""
    ctx: zmq.Context[Any] = zmq.Context()
    stop = threading.Event()
    threads = []

    def start(script: Callable[[dict[str, Any]], list[bytes]]) -> str:
        sock = ctx.socket(zmq.ROUTER)
        sock.bind("tcp://127.0.0.1:0")
        endpoint: str = sock.getsockopt(zmq.LAST_ENDPOINT).decode()

        def loop() -> None:
            while not stop.is_set():
                if sock.poll(20):
                    identity, body = sock.recv_multipart()
                    for reply in script(loads(body)):
                        sock.send_multipart([identity, reply])
            sock.close(0)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        threads.append(t)
        return endpoint

    yield start
    stop.set()
    for t in threads:
        t.join()
    ctx.term()


def test_timeout_raises_unavailable_then_a_late_reply_is_never_taken(fake_service: Any) -> None:
    seen: list[dict[str, Any]] = []

    def script(req: dict[str, Any]) -> list[bytes]:
        seen.append(req)
        if len(seen) == 1:
            return []  # no answer: the client times out
        # First a reply to the timed-out request id, then the right one.
        return [encode_ok(seen[0]["id"], version="stale"), encode_ok(req["id"], version="fresh")]

    with StateClient(fake_service(script), timeout=0.3) as client:
        with pytest.raises(ServiceUnavailableError, match="did not answer ping"):
            client.ping()
        assert client.ping() == "fresh"


def test_stale_replies_on_the_same_socket_are_dropped(fake_service: Any) -> None:
    def script(req: dict[str, Any]) -> list[bytes]:
        return [encode_ok(-1, version="stale"), b"junk", encode_ok(req["id"], version="ok")]

    with StateClient(fake_service(script), timeout=5) as client:
        assert client.ping() == "ok"
        assert client.ping() == "ok"


async def test_async_timeout_and_stale_reply(fake_service: Any) -> None:
    seen: list[dict[str, Any]] = []

    def script(req: dict[str, Any]) -> list[bytes]:
        seen.append(req)
        if len(seen) == 1:
            return []
        return [encode_ok(seen[0]["id"], version="stale"), encode_ok(req["id"], version="fresh")]

    async with AsyncStateClient(fake_service(script), timeout=0.3) as client:
        with pytest.raises(ServiceUnavailableError):
            await client.ping()
        assert await client.ping() == "fresh"


def test_closed_client_refuses() -> None:
    client = StateClient("tcp://127.0.0.1:1", timeout=0.1)
    client.close()
    with pytest.raises(ServiceUnavailableError, match="closed"):
        client.ping()


# -- against the real service ---------------------------------------------------------------------


def emit_some(server: Any) -> None:
    pub = server.publisher
    pub.emit_execution_started("e1", "wf", workflow_name="W", agent_count=1, user_id="bob")
    pub.emit_agent_started("e1", "wf", "a", "A")
    pub.emit_agent_progress("e1", "wf", "a", "A", 30)
    pub.emit_execution_completed("e1", "wf", duration_ms=5, results={})


def test_sync_client_against_the_service(server: Any) -> None:
    emit_some(server)
    with StateClient(server.endpoints["state"], timeout=5) as client:
        assert client.ping() == "0.1.0"
        snap = client.snapshot("e1")
        assert snap.status == "completed" and snap.user_id == "bob" and snap.last_seq == 4
        events, last = client.events("e1", after_seq=1)
        assert [e.seq for e in events] == [2, 3, 4] and last == 4
        assert [s.execution_id for s in client.executions(status="completed")] == ["e1"]
        wid = client.create_workflow(DEFINITION)
        assert [w["workflowId"] for w in client.workflows()] == [wid]
        with pytest.raises(NotFoundError):
            client.snapshot("missing")
        with pytest.raises(ConflictError):
            client.cancel("e1")


async def test_async_client_against_the_service(server: Any) -> None:
    emit_some(server)
    async with AsyncStateClient(server.endpoints["state"], timeout=5) as client:
        assert await client.ping() == "0.1.0"
        assert (await client.snapshot("e1")).status == "completed"
        events, last = await client.events("e1", limit=2)
        assert [e.seq for e in events] == [1, 2] and last == 4
        assert len(await client.executions()) == 1
        wid = await client.create_workflow(parse_workflow(DEFINITION))
        assert [w["workflowId"] for w in await client.workflows()] == [wid]
        with pytest.raises(NotFoundError):
            await client.events("missing")
        with pytest.raises(BadRequestError, match="dependency cycle"):
            await client.create_workflow(
                {"name": "C", "agents": [
                    {"id": "a", "uses": "m:f", "dependsOn": ["b"]},
                    {"id": "b", "uses": "m:f", "dependsOn": ["a"]},
                ]}
            )  # fmt: skip


def test_one_client_shared_by_threads(server: Any) -> None:
    emit_some(server)
    errors: list[BaseException] = []
    with StateClient(server.endpoints["state"], timeout=5) as client:

        def work() -> None:
            try:
                for _ in range(20):
                    assert client.snapshot("e1").last_seq == 4
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


async def test_one_async_client_shared_by_tasks(server: Any) -> None:
    import asyncio

    emit_some(server)
    async with AsyncStateClient(server.endpoints["state"], timeout=5) as client:
        snaps = await asyncio.gather(*(client.snapshot("e1") for _ in range(20)))
        pings = await asyncio.gather(*(client.ping() for _ in range(5)))
    assert {s.last_seq for s in snaps} == {4}
    assert set(pings) == {"0.1.0"}
