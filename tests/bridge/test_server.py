"""The WebSocket protocol (contract §5) against a real bridge and a real executor service."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from zmqmon_bridge.server import Bridge, Limits

from tests.bridge.conftest import Client, open_client, terminal, workflow
from tests.conftest import wait_for
from zmqmon.core.events import event_to_dict, parse_event
from zmqmon.core.state import ExecutionState, apply_event, replay
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(60)


def stored_events(server: Any, execution_id: str) -> list[dict[str, Any]]:
    with StateClient(server.endpoints["state"]) as client:
        events, _ = client.events(execution_id)
    return [event_to_dict(e) for e in events]


async def wait_done(handle: Any) -> None:
    await asyncio.to_thread(handle.wait, 30)


def refcounts(bridge: Bridge) -> dict[str, int]:
    """Upstream prefix → subscriptions holding it; the SUB socket holds exactly those prefixes."""
    hub = bridge.hub
    held, socket = bridge.call(lambda: (hub.routes.upstream_prefixes, hub.upstream.refcounts))
    assert set(socket) == set(held) and all(n == 1 for n in socket.values())
    return held


async def test_ping_and_every_message_error_keep_the_connection_open(bridge: Bridge) -> None:
    c = await open_client(bridge.ws_url)
    await c.send({"type": "ping"})
    pong = await c.expect("pong")
    assert pong["timestamp"].endswith("Z")
    cases = [
        ("{not json", "invalid_json"),
        ('{"type": "subscribe"}', "invalid_message"),
        ('{"type": "subscribe", "topic": "sys/"}', "invalid_message"),
        ('{"type": "launch"}', "unknown_type"),
        ('{"type": "subscribe", "executionId": "no-such-execution"}', "not_found"),
        ('{"type": "subscribe", "executionId": "nope", "afterSeq": 3}', "not_found"),
    ]
    for raw, code in cases:
        await c.send(raw)
        err = await c.expect("error")
        assert err["code"] == code, raw
        assert err["message"]
    await c.send({"type": "ping"})
    await c.expect("pong")  # still open
    assert refcounts(bridge) == {}  # the refused subscriptions hold nothing upstream
    await c.close()


async def test_subscribe_mid_run_snapshot_then_every_later_event_once(
    server: Any, bridge: Bridge
) -> None:
    handle = server.submit(workflow(seconds=0.6, steps=6, agents=3))
    watcher = await open_client(bridge.ws_url)
    await watcher.send({"type": "subscribe", "topic": f"exec/{handle.id}/"})
    await watcher.expect("subscribed")
    await watcher.until(lambda m: m.get("seq", 0) >= 6)  # the execution is well under way

    late = await open_client(bridge.ws_url)
    await late.send({"type": "subscribe", "executionId": handle.id})
    assert (await late.expect("subscribed"))["executionId"] == handle.id
    snap = await late.expect("snapshot")
    assert snap["executionId"] == handle.id and snap["execution"]["lastSeq"] >= 6
    await late.until(terminal)
    seqs = [e["seq"] for e in late.events]
    last = snap["execution"]["lastSeq"]
    full = stored_events(server, handle.id)
    assert seqs == list(range(last + 1, full[-1]["seq"] + 1))  # in order, none lost or twice
    # snapshot + live events reduce to the state of the full event list
    state: ExecutionState | None = ExecutionState.model_validate(snap["execution"])
    for e in late.events:
        state = apply_event(state, parse_event(e))
    assert state == replay(parse_event(e) for e in full)
    assert state is not None and state.status == "completed"
    await watcher.until(terminal)  # read it all, so that its close handshake is prompt
    await watcher.close()
    await late.close()


async def test_subscribe_before_start_and_after_end(server: Any, bridge: Bridge) -> None:
    handle = server.submit(workflow(seconds=0.2, steps=2))
    c = await open_client(bridge.ws_url)
    await c.send({"type": "subscribe", "executionId": handle.id})
    await c.expect("subscribed")
    snap = await c.expect("snapshot")
    await c.until(terminal)
    first = snap["execution"]["lastSeq"]
    full = stored_events(server, handle.id)
    assert [e["seq"] for e in c.events] == list(range(first + 1, len(full) + 1))
    # after the end: the snapshot is final and nothing follows it
    d = await open_client(bridge.ws_url)
    await d.send({"type": "subscribe", "executionId": handle.id})
    await d.expect("subscribed")
    final = await d.expect("snapshot")
    assert final["execution"]["status"] == "completed"
    assert final["execution"]["lastSeq"] == len(full)
    await d.send({"type": "ping"})
    await d.expect("pong")  # nothing came between
    await c.close()
    await d.close()


async def test_resume_with_after_seq_from_the_store_then_live(server: Any, bridge: Bridge) -> None:
    handle = server.submit(workflow(seconds=0.5, steps=5, agents=2))
    c = await open_client(bridge.ws_url)
    await asyncio.sleep(0)  # let it start; afterSeq below the snapshot is the point
    await c.send({"type": "subscribe", "executionId": handle.id, "afterSeq": 2})
    await c.expect("subscribed")
    await c.until(terminal)
    n = len(stored_events(server, handle.id))
    assert [e["seq"] for e in c.events] == list(range(3, n + 1))
    # a finished execution resumes entirely from the store
    await c.send({"type": "subscribe", "executionId": handle.id, "afterSeq": n - 4})
    await c.expect("subscribed")
    msgs = await c.until(terminal)
    assert [m["seq"] for m in msgs] == list(range(n - 3, n + 1))
    await c.close()


async def test_workflow_subscription_gets_only_that_workflows_executions(
    server: Any, bridge: Bridge
) -> None:
    with StateClient(server.endpoints["state"]) as sc:
        wf = sc.create_workflow(workflow(seconds=0.1, steps=1))
        other_wf = sc.create_workflow({**workflow(seconds=0.1, steps=1), "name": "Other"})
    c = await open_client(bridge.ws_url)
    await c.send({"type": "subscribe", "workflowId": wf})
    assert (await c.expect("subscribed"))["workflowId"] == wf
    assert refcounts(bridge) == {"exec/": 1}  # topics carry no workflow id: all of exec/
    watch = await open_client(bridge.ws_url)
    await watch.send({"type": "subscribe", "topic": "exec/"})
    await watch.expect("subscribed")
    with StateClient(server.endpoints["state"]) as sc:
        other = sc.execute(other_wf)
        mine = [sc.execute(wf), sc.execute(wf)]
    ended: set[str] = set()
    await watch.until(lambda m: terminal(m) and (ended.add(m["executionId"]) or len(ended) == 3))
    await c.send({"type": "ping"})
    await c.until(lambda m: m["type"] == "pong")
    assert {e["executionId"] for e in c.events} == set(mine)
    assert other in ended
    for execution_id in mine:
        seqs = [e["seq"] for e in c.events if e["executionId"] == execution_id]
        assert seqs == list(range(1, len(stored_events(server, execution_id)) + 1))
    await c.close()
    await watch.close()


async def test_topic_unsubscribe_and_upstream_refcounts(server: Any, bridge: Bridge) -> None:
    a = await open_client(bridge.ws_url)
    b = await open_client(bridge.ws_url)
    await a.send({"type": "subscribe", "topic": "exec/"})
    await a.expect("subscribed")
    await b.send({"type": "subscribe", "topic": "exec/"})
    await b.expect("subscribed")
    assert refcounts(bridge) == {"exec/": 2}
    h1 = server.submit(workflow(seconds=0.1, steps=1))
    await a.until(lambda m: terminal(m) and m["executionId"] == h1.id)
    await b.until(lambda m: terminal(m) and m["executionId"] == h1.id)
    await a.send({"type": "unsubscribe", "topic": "exec/"})
    assert (await a.expect("unsubscribed"))["topic"] == "exec/"
    assert refcounts(bridge) == {"exec/": 1}
    h2 = server.submit(workflow(seconds=0.1, steps=1))
    await b.until(lambda m: terminal(m) and m["executionId"] == h2.id)
    await a.send({"type": "ping"})
    await a.expect("pong")  # nothing of h2 reached a
    assert h2.id not in {e["executionId"] for e in a.events}
    await b.close()  # closing drops what it held
    wait_for(lambda: refcounts(bridge) == {}, message="upstream released")
    health = bridge.call(bridge.routes.health)
    assert health["subscriptions"] == 0
    await a.close()


async def test_many_clients_many_subscriptions(server: Any, bridge: Bridge) -> None:
    h1 = server.submit(workflow(seconds=0.3, steps=3))
    h2 = server.submit(workflow(seconds=0.3, steps=3))
    clients = [await open_client(bridge.ws_url) for _ in range(5)]
    for c in clients:
        for h in (h1, h2):
            await c.send({"type": "subscribe", "executionId": h.id, "afterSeq": 0})

    async def collect(c: Client) -> None:
        done: set[str] = set()
        acks: set[str] = set()
        while done != {h1.id, h2.id}:
            m = await c.recv(20)
            if m["type"] == "subscribed":
                acks.add(m["executionId"])
            if terminal(m):
                assert m["executionId"] in acks  # `subscribed` comes before its events
                done.add(m["executionId"])

    await asyncio.gather(*(collect(c) for c in clients))
    assert refcounts(bridge) == {f"exec/{h1.id}/": 5, f"exec/{h2.id}/": 5}
    n1, n2 = len(stored_events(server, h1.id)), len(stored_events(server, h2.id))
    for c in clients:
        for h, n in ((h1, n1), (h2, n2)):
            seqs = [e["seq"] for e in c.events if e["executionId"] == h.id]
            assert seqs == list(range(1, n + 1))
    for c in clients:
        await c.close()
    wait_for(lambda: refcounts(bridge) == {}, message="every prefix released")


async def test_unsubscribe_execution_stops_its_events(server: Any, bridge: Bridge) -> None:
    handle = server.submit(workflow(seconds=0.8, steps=8, agents=2))
    c = await open_client(bridge.ws_url)
    await c.send({"type": "subscribe", "executionId": handle.id})
    await c.expect("subscribed")
    await c.expect("snapshot")
    await c.until(lambda m: "seq" in m)
    await c.send({"type": "unsubscribe", "executionId": handle.id})
    await c.until(lambda m: m["type"] == "unsubscribed")
    count = len(c.events)
    await wait_done(handle)
    await c.send({"type": "ping"})
    await c.expect("pong")
    assert len(c.events) == count  # nothing of it followed `unsubscribed`
    assert refcounts(bridge) == {}
    await c.close()


async def test_resume_after_the_bridge_restarts_mid_execution(
    server: Any, make_bridge: Any
) -> None:
    first = make_bridge()
    port = first.port
    handle = server.submit(workflow(seconds=1.0, steps=10, agents=2))
    c = await open_client(first.ws_url)
    await c.send({"type": "subscribe", "executionId": handle.id, "afterSeq": 0})
    await c.expect("subscribed")
    await c.until(lambda m: m.get("seq", 0) >= 5)
    await asyncio.to_thread(first.stop)  # the bridge goes away mid-execution
    with pytest.raises(Exception):  # noqa: B017 - any close: the point is what follows
        while True:
            await c.recv(10)
    assert handle.status == "running"
    second = make_bridge(port=port)
    last = c.events[-1]["seq"]
    d = await open_client(second.ws_url)
    await d.send({"type": "subscribe", "executionId": handle.id, "afterSeq": last})
    await d.expect("subscribed")
    await d.until(terminal)
    seqs = [e["seq"] for e in c.events + d.events]
    assert seqs == list(range(1, len(stored_events(server, handle.id)) + 1))
    await d.close()


async def test_unsubscribe_workflow_duplicates_and_the_subscription_cap(
    make_bridge: Any,
) -> None:
    bridge = make_bridge(Limits(max_subscriptions=3))
    c = await open_client(bridge.ws_url)
    for _ in range(2):  # subscribing twice holds it once
        await c.send({"type": "subscribe", "workflowId": "wf-1"})
        assert (await c.expect("subscribed"))["workflowId"] == "wf-1"
    assert refcounts(bridge) == {"exec/": 1}
    await c.send({"type": "subscribe", "topic": "exec/a/"})
    await c.expect("subscribed")
    await c.send({"type": "subscribe", "topic": "exec/b/"})
    await c.expect("subscribed")
    await c.send({"type": "subscribe", "topic": "exec/c/"})  # a fourth: over the cap
    err = await c.expect("error")
    assert err["code"] == "invalid_message" and "too many" in err["message"]
    await c.send({"type": "unsubscribe", "workflowId": "wf-1"})
    assert (await c.expect("unsubscribed"))["workflowId"] == "wf-1"
    assert refcounts(bridge) == {"exec/a/": 1, "exec/b/": 1}
    await c.send({"type": "unsubscribe", "workflowId": "never-held"})
    await c.expect("unsubscribed")  # idempotent
    await c.close()
