"""The hub in isolation (unit): ordering and repair, heartbeats, owners, refcounts, fan-out.

The upstream socket and the state service are replaced by in-memory fakes so that each rule can
be driven deterministically; everything socket-level is covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from zmqmon_bridge.hub import Hub
from zmqmon_bridge.protocol import ConnectionState, Principal, RateLimiter

from zmqmon.core.wire import HEARTBEAT_TOPIC, dumps, encode_event
from zmqmon.errors import NotFoundError


class FakeUpstream:
    def __init__(self, on_message: Any) -> None:
        self.on_message = on_message
        self.refcounts: dict[str, int] = {}

    def acquire(self, prefix: str) -> None:
        self.refcounts[prefix] = self.refcounts.get(prefix, 0) + 1

    def release(self, prefix: str) -> None:
        self.refcounts[prefix] -= 1
        if not self.refcounts[prefix]:
            del self.refcounts[prefix]

    async def close(self) -> None:
        pass


class FakeState:
    """A store: every event "published" is here (optionally only after ``lag`` calls)."""

    def __init__(self) -> None:
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self.owner: dict[str, str | None] = {}
        self.calls = 0

    async def snapshot(self, execution_id: str) -> dict[str, Any]:
        self.calls += 1
        if execution_id not in self.owner:
            raise NotFoundError("unknown")
        return {"executionId": execution_id, "userId": self.owner[execution_id], "lastSeq": 0}

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int]:
        self.calls += 1
        evs = [e for e in self.stored.get(execution_id, []) if e["seq"] > after_seq][:limit]
        stored = self.stored.get(execution_id, [])
        return evs, stored[-1]["seq"] if stored else 0

    async def executions(self, limit: int = 100) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        pass


class FakeSink:
    def __init__(self, principal: Principal) -> None:
        self.state = ConnectionState("s", principal, RateLimiter(100, 100, lambda: 0.0))
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        raise AssertionError("the hub sends encoded frames")

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def flush(self) -> None:
        pass

    def seqs(self) -> list[int]:
        return [d["seq"] for d in self.docs()]

    def docs(self) -> list[dict[str, Any]]:
        # strip the frame header: 2 bytes for these small frames, 4 from 126 bytes on
        return [json.loads(f[2:] if f[1] < 126 else f[4:]) for f in self.frames]


def event(execution_id: str, seq: int, user: str | None = "alice") -> dict[str, Any]:
    if seq == 1:
        return {
            "type": "execution:started",
            "executionId": execution_id,
            "workflowId": "w",
            "timestamp": "2026-11-25T10:00:00.000Z",
            "seq": 1,
            "data": {"workflowName": "W", "agentCount": 1, "userId": user},
        }
    return {
        "type": "execution:progress",
        "executionId": execution_id,
        "workflowId": "w",
        "timestamp": "2026-11-25T10:00:00.000Z",
        "seq": seq,
        "data": {"progress": seq},
    }


def make(auth: bool = False) -> tuple[Hub, FakeState]:
    state = FakeState()
    hub = Hub(FakeUpstream, state, auth_enabled=auth, repair_timeout=1.0)
    return hub, state


def publish(hub: Hub, state: FakeState, ev: dict[str, Any], *, lost: bool = False) -> None:
    state.stored.setdefault(ev["executionId"], []).append(ev)
    if ev["seq"] == 1:
        state.owner[ev["executionId"]] = ev["data"]["userId"]
    if not lost:
        hub.on_message(*encode_event(ev))


def heartbeat(hub: Hub, executions: dict[str, int]) -> None:
    body = {"publisherId": "p", "timestamp": "2026-11-25T10:00:00.000Z", "executions": executions}
    hub.on_message(HEARTBEAT_TOPIC, dumps(body))


def subscribe_topic(hub: Hub, sink: FakeSink, prefix: str = "exec/") -> None:
    sink.state.add("topic", prefix)
    hub.connections.add(sink)
    hub.index(sink, "topic", prefix)


async def settle(hub: Hub) -> None:
    """Until no fetch, owner lookup or retry is pending (bounded)."""
    for _ in range(1000):
        if not hub.busy:
            return
        await asyncio.sleep(0.005)


async def test_in_order_none_twice_and_gaps_filled_from_the_store() -> None:
    hub, state = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    publish(hub, state, event("e", 1))
    publish(hub, state, event("e", 2), lost=True)  # the PUB dropped it
    publish(hub, state, event("e", 3))
    publish(hub, state, event("e", 3))  # a duplicate
    assert sink.seqs() == [1]  # 3 waits for 2
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]
    assert hub.counters.gap_fetches == 1


async def test_a_heartbeat_reveals_a_lost_tail() -> None:
    hub, state = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    publish(hub, state, event("e", 1))
    publish(hub, state, event("e", 2), lost=True)
    publish(hub, state, event("e", 3), lost=True)
    hub.on_message(
        HEARTBEAT_TOPIC, dumps({"publisherId": "p", "timestamp": "t", "executions": {"e": 3}})
    )
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]


async def test_a_caught_up_subscription_baselines_the_stream_for_tail_repair() -> None:
    hub, state = make()
    for seq in (1, 2, 3):
        publish(hub, state, event("x", seq), lost=True)  # nothing reached the bridge live
    sink = FakeSink(Principal(None, True))
    sub = sink.state.add("execution", "x")
    assert sub is not None
    hub.connections.add(sink)
    hub.index(sink, "execution", "x")
    sink.state.catch_up("x", [], reach=0, give_up=True)
    sub.delivered = 3
    hub.baseline("x", 3)
    publish(hub, state, event("x", 4), lost=True)  # the tail, lost too (slow joiner)
    hub.on_message(
        HEARTBEAT_TOPIC, dumps({"publisherId": "p", "timestamp": "t", "executions": {"x": 4}})
    )
    await settle(hub)
    assert sink.seqs() == [4]


async def test_with_auth_nothing_is_relayed_before_the_owner_is_known() -> None:
    hub, state = make(auth=True)
    hub.join_history = 0  # joined where first seen: the owner must come from a snapshot
    alice, bob = FakeSink(Principal("alice")), FakeSink(Principal("bob"))
    admin = FakeSink(Principal("root", admin=True))
    for s in (alice, bob, admin):
        subscribe_topic(hub, s)
    publish(hub, state, event("a", 1, user="alice"), lost=True)  # started went by unseen
    publish(hub, state, event("a", 2))
    publish(hub, state, event("a", 3))
    assert alice.frames == [] and admin.frames == []  # held until the owner is learned
    await settle(hub)
    assert alice.seqs() == [2, 3] and admin.seqs() == [2, 3]
    assert bob.frames == []
    publish(hub, state, event("b", 1, user="bob"))
    publish(hub, state, event("b", 2, user="bob"))
    assert bob.seqs() == [1, 2] and alice.seqs() == [2, 3]


async def test_unknown_owner_relays_nothing_after_the_timeout() -> None:
    hub, _ = make(auth=True)
    hub.join_history = 0
    admin = FakeSink(Principal("root", admin=True))
    subscribe_topic(hub, admin)
    hub.on_message(*encode_event(event("ghost", 5)))  # the store never heard of it
    await settle(hub)
    assert admin.frames == []
    assert hub.counters.drops == 1


async def test_refcounts_follow_subscriptions_and_connection_drop() -> None:
    hub, _ = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    subscribe_topic(hub, a)
    subscribe_topic(hub, b)
    a.state.add("workflow", "w")
    hub.index(a, "workflow", "w")
    a.state.add("execution", "e")
    hub.index(a, "execution", "e")
    assert hub.upstream.refcounts == {"exec/": 3, "exec/e/": 1}
    hub.drop_connection(a)
    assert hub.upstream.refcounts == {"exec/": 1}
    assert a.state.subscription_count == 0 and a not in hub.connections
    hub.drop_connection(b)
    assert hub.upstream.refcounts == {}


async def test_garbage_from_upstream_is_counted_never_relayed() -> None:
    hub, _ = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    for payload in (b"not json", b"[1]", b'{"executionId": 3, "seq": 1}', b'{"seq": "x"}'):
        hub.on_message(b"exec/x/agent:progress", payload)
    assert sink.frames == [] and hub.counters.drops == 4


async def test_one_frame_per_connection_even_when_several_subscriptions_match() -> None:
    hub, state = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink, "exec/")
    subscribe_topic(hub, sink, "exec/e/")
    sink.state.add("workflow", "w")
    hub.index(sink, "workflow", "w")
    publish(hub, state, event("e", 1))
    assert sink.seqs() == [1]


async def test_an_execution_first_seen_just_after_its_start_is_fetched_whole() -> None:
    hub, state = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    publish(hub, state, event("e", 1), lost=True)  # before the SUB subscription was live
    publish(hub, state, event("e", 2), lost=True)
    publish(hub, state, event("e", 3))
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]
    # one long under way when first seen is joined from where it is
    hub.join_history = 10
    for seq in range(1, 50):
        publish(hub, state, event("long", seq), lost=seq < 40)
    await settle(hub)
    assert sink.seqs()[3:] == list(range(40, 50))


class SlowState(FakeState):
    """A store whose answers for one execution wait until released."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.gate = asyncio.Event()

    async def events(
        self, execution_id: str, after_seq: int = 0, limit: int = 1000
    ) -> tuple[list[dict[str, Any]], int]:
        if execution_id == self.slow:
            await self.gate.wait()
        return await super().events(execution_id, after_seq, limit)


async def test_a_slow_fetch_holds_back_no_other_execution() -> None:
    state = SlowState("slow")
    hub = Hub(FakeUpstream, state, auth_enabled=False, repair_timeout=5.0)
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    for eid in ("slow", "fast"):
        publish(hub, state, event(eid, 1))
        publish(hub, state, event(eid, 2), lost=True)
        publish(hub, state, event(eid, 3))
    for _ in range(200):  # the fast one is repaired while the slow fetch is still out
        if sink.seqs().count(3) == 1:
            break
        await asyncio.sleep(0.005)
    got = [d["executionId"] for d in sink.docs()]
    assert got == ["slow", "fast", "fast", "fast"]
    state.gate.set()
    await settle(hub)
    got = [(d["executionId"], d["seq"]) for d in sink.docs()]
    assert [s for e, s in got if e == "slow"] == [1, 2, 3]
    assert [s for e, s in got if e == "fast"] == [1, 2, 3]


async def test_published_bytes_are_relayed_untouched_one_frame_for_all() -> None:
    hub, state = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    subscribe_topic(hub, a)
    subscribe_topic(hub, b)
    ev = event("e", 1)
    state.stored["e"] = [ev]
    # Not how this codec would write it (spacing, key order): the bridge must not re-encode.
    payload = json.dumps(dict(reversed(list(ev.items()))), indent=1).encode()
    hub.on_message(b"exec/e/execution:started", payload)
    assert a.frames[0][-len(payload) :] == payload
    assert a.frames[0] is b.frames[0]  # built once, written to every client
    # a fetched event goes out as the store gave it, encoded once
    publish(hub, state, event("e", 2), lost=True)
    publish(hub, state, event("e", 3))
    await settle(hub)
    assert a.seqs() == [1, 2, 3] and a.frames[1] is b.frames[1]
    assert a.docs()[1] == event("e", 2)
    assert hub._payloads == {}  # nothing kept aside once delivered


async def test_a_gap_the_store_never_fills_is_given_up_after_the_timeout() -> None:
    hub, state = make()
    hub.repair_timeout = 0.2
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    publish(hub, state, event("e", 1))
    hub.on_message(*encode_event(event("e", 4)))  # 2 and 3 never reach the store
    hub.on_message(*encode_event(event("e", 5)))
    assert sink.seqs() == [1]
    await settle(hub)
    assert sink.seqs() == [1, 4, 5]  # in order, none twice, after the gap
    assert hub.counters.drops == 1 and hub.core.stats.skipped == 2
    hub.on_message(*encode_event(event("e", 6)))
    assert sink.seqs() == [1, 4, 5, 6]


async def test_the_cores_filters_follow_the_connections_subscriptions() -> None:
    hub, state = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    hub.connections |= {a, b}

    def sub(sink: FakeSink, kind: Any, value: str) -> None:
        sink.state.add(kind, value)
        hub.index(sink, kind, value)

    def zmq() -> set[str]:
        return set(hub.upstream.refcounts)

    sub(a, "execution", "x")
    a.state.catch_up("x", [], reach=0, give_up=True)  # caught up: live events go out
    sub(b, "topic", "exec/x/")  # the same prefix as execution x
    sub(b, "workflow", "w")
    assert hub.core.zmq_prefixes() == zmq() == {"exec/x/", "exec/"}
    assert hub.core.workflows == {"w"}
    b.state.remove("topic", "exec/x/")
    hub.unindex(b, "topic", "exec/x/")
    assert hub.core.prefixes == {"exec/x/"}  # execution x still wants it
    hub.drop_connection(b)
    assert hub.core.zmq_prefixes() == zmq() == {"exec/x/"} and hub.core.workflows == set()
    publish(hub, state, event("y", 1))  # selected by nothing: nothing kept
    publish(hub, state, event("x", 1))
    assert a.seqs() == [1] and hub._payloads == {}
    hub.drop_connection(a)
    assert hub.core.zmq_prefixes() == zmq() == set()


async def test_payloads_kept_aside_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from zmqmon_bridge import hub as hub_module

    monkeypatch.setattr(hub_module, "_MAX_PAYLOADS", 5)
    hub, state = make()
    sink = FakeSink(Principal(None, True))
    subscribe_topic(hub, sink)
    publish(hub, state, event("e", 1))
    publish(hub, state, event("e", 2), lost=True)
    for seq in range(3, 13):  # buffered behind the gap: more than the bound
        publish(hub, state, event("e", seq))
    assert len(hub._payloads) == 5
    await settle(hub)
    # Still every event, in order, with its content (those evicted are encoded again).
    assert sink.docs() == [event("e", seq) for seq in range(1, 13)]
    assert hub._payloads == {}
