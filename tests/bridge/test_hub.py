"""The hub in isolation (unit): lanes and repair, heartbeats, owners, refcounts, fan-out, pacing.

The upstream socket and the state service are replaced by in-memory fakes so that each rule can
be driven deterministically; everything socket-level is covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from zmqmon_bridge.hub import LANE_PAGES, Hub, Item
from zmqmon_bridge.protocol import ConnectionState, Principal, RateLimiter, Subscription

from zmqmon.core.calls import Call
from zmqmon.core.delivery import Mode, Snapshot
from zmqmon.core.events import parse_event
from zmqmon.core.requests import encode_ok
from zmqmon.core.state import ExecutionState, replay
from zmqmon.core.wire import HEARTBEAT_TOPIC, dumps, encode_event
from zmqmon.errors import NotFoundError
from zmqmon.shells.repair import StateClients


class FakeUpstream:
    def __init__(self, on_batch: Any) -> None:
        self.on_batch = on_batch
        self.refcounts: dict[str, int] = {}

    def acquire(self, prefix: str) -> None:
        assert prefix not in self.refcounts, "the hub acquires each prefix once"
        self.refcounts[prefix] = 1

    def release(self, prefix: str) -> None:
        del self.refcounts[prefix]

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class FakeClient:
    """A state service: every event "published" is here (the store)."""

    def __init__(self) -> None:
        self.stored: dict[str, list[dict[str, Any]]] = {}
        self.missing: set[tuple[str, int]] = set()  # (execution, seq) the store never got
        self.calls = 0

    def _state(self, execution_id: str) -> ExecutionState:
        events = [parse_event(e) for e in self.stored.get(execution_id, [])]
        state = replay(events)
        if state is None:
            raise NotFoundError("unknown")
        return state

    async def snapshot(self, execution_id: str) -> ExecutionState:
        self.calls += 1
        return self._state(execution_id)

    async def call(self, call: Call[Any]) -> Any:
        if call.op == "snapshot":
            state = await self.snapshot(call.fields["executionId"])
            return call.result(encode_ok(1, execution=state.to_json_dict()))
        self.calls += 1
        fields = call.fields
        eid, after, limit = fields["executionId"], fields["afterSeq"], fields["limit"]
        stored = self.stored.get(eid)
        if not stored:
            raise NotFoundError("unknown")
        evs = [e for e in stored if e["seq"] > after and (eid, e["seq"]) not in self.missing]
        return call.result(encode_ok(1, events=evs[:limit], lastSeq=stored[-1]["seq"]))

    def close(self) -> None:
        pass


class FakeSink:
    """A connection with topic/workflow subscriptions only (no core of its own)."""

    def __init__(self, principal: Principal) -> None:
        self.state = ConnectionState("s", principal, RateLimiter(100, 100, lambda: 0.0))
        self.frames: list[bytes] = []
        self.busy = False  # congested
        self.closed_slow = False

    def feed(self, item: Item) -> None:
        raise AssertionError("no execution subscriptions here")

    def relay(self, item: Item, frame: bytes) -> int:
        self.frames.append(frame)
        return 1

    def congested(self) -> bool:
        return self.busy

    def service(self, now: float) -> None:
        pass

    def close_slow(self) -> None:
        self.closed_slow = True

    def flush(self) -> None:
        pass

    def seqs(self) -> list[int]:
        return [d["seq"] for d in self.docs() if "seq" in d]

    def docs(self) -> list[dict[str, Any]]:
        # strip the frame header: 2 bytes for small frames, 4 from 126 bytes on
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
        "data": {"progress": min(seq, 100)},
    }


def make(auth: bool = False, **kwargs: Any) -> tuple[Hub, FakeClient]:
    client = FakeClient()
    kwargs.setdefault("repair_timeout", 1.0)
    hub = Hub(FakeUpstream, clients(client), auth_enabled=auth, **kwargs)  # type: ignore[arg-type]
    return hub, client


def clients(client: FakeClient) -> StateClients[Any]:
    """The hub's state services: the one configured, here the fake."""
    return StateClients("tcp://fake", lambda endpoint: client)


def publish(hub: Hub, client: FakeClient, ev: dict[str, Any], *, lost: bool = False) -> None:
    client.stored.setdefault(ev["executionId"], []).append(ev)
    if not lost:
        hub.on_message(*encode_event(ev))


def heartbeat(hub: Hub, executions: dict[str, int]) -> None:
    body = {"publisherId": "p", "timestamp": "2026-11-25T10:00:00.000Z", "executions": executions}
    hub.on_message(HEARTBEAT_TOPIC, dumps(body))


def subscribe(
    hub: Hub, sink: FakeSink, kind: Any = "topic", value: str = "exec/", mode: Mode = "log"
) -> Subscription:
    sub = Subscription(kind, value)
    sink.state.add(sub, mode)
    hub.connections.add(sink)  # type: ignore[arg-type]
    hub.subscribe(sink, sub, mode)  # type: ignore[arg-type]
    return sub


async def settle(hub: Hub, rounds: int = 400) -> None:
    """Serve the hub as its tick would, until nothing is pending (bounded)."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        hub.service(loop.time() + 100.0)  # time moves on: retries fall due at once
        await asyncio.sleep(0)
        if not hub.busy and not any(lane.has_pending for lane in hub.lanes.values()):
            return
        await asyncio.sleep(0.002)


async def test_in_order_none_twice_and_gaps_filled_from_the_store() -> None:
    hub, client = make()
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1))
    publish(hub, client, event("e", 2), lost=True)  # the PUB dropped it
    publish(hub, client, event("e", 3))
    publish(hub, client, event("e", 3))  # a duplicate
    assert sink.seqs() == [1]  # 3 waits for 2
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]
    assert hub.counters.gap_fetches == 1


async def test_a_heartbeat_reveals_a_lost_tail() -> None:
    hub, client = make()
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1))
    publish(hub, client, event("e", 2), lost=True)
    publish(hub, client, event("e", 3), lost=True)
    heartbeat(hub, {"e": 3})
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]


async def test_with_auth_nothing_is_relayed_before_the_owner_is_known() -> None:
    hub, client = make(auth=True, join_history=0)  # joined where first seen
    alice, bob = FakeSink(Principal("alice")), FakeSink(Principal("bob"))
    admin = FakeSink(Principal("root", admin=True))
    for s in (alice, bob, admin):
        subscribe(hub, s)
    publish(hub, client, event("a", 1, user="alice"), lost=True)  # started went by unseen
    publish(hub, client, event("a", 2))
    publish(hub, client, event("a", 3))
    assert alice.frames == [] and admin.frames == []  # held until the owner is learned
    await settle(hub)
    assert alice.seqs() == [2, 3] and admin.seqs() == [2, 3]
    assert bob.frames == []
    publish(hub, client, event("b", 1, user="bob"))
    publish(hub, client, event("b", 2, user="bob"))
    assert bob.seqs() == [1, 2] and alice.seqs() == [2, 3]


async def test_unknown_owner_relays_nothing_after_the_timeout() -> None:
    hub, _ = make(auth=True, join_history=0, repair_timeout=0.1)
    admin = FakeSink(Principal("root", admin=True))
    subscribe(hub, admin)
    hub.on_message(*encode_event(event("ghost", 5)))  # the store never heard of it
    for _ in range(200):
        await asyncio.sleep(0.005)
        if hub.counters.drops:
            break
    assert admin.frames == []
    assert hub.counters.drops == 1


async def test_refcounts_follow_subscriptions_and_connection_drop() -> None:
    hub, _ = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    subscribe(hub, a)
    subscribe(hub, b, mode="state")
    subscribe(hub, a, "workflow", "w")
    subscribe(hub, a, "execution", "e")
    assert hub.routes.upstream_prefixes == {"exec/": 3, "exec/e/": 1}
    assert hub.upstream.refcounts == {"exec/": 1, "exec/e/": 1}  # type: ignore[attr-defined]
    hub.drop_connection(a)  # type: ignore[arg-type]
    assert hub.routes.upstream_prefixes == {"exec/": 1}
    assert a.state.subscription_count == 0 and a not in hub.connections
    hub.drop_connection(b)  # type: ignore[arg-type]
    assert hub.upstream.refcounts == {}  # type: ignore[attr-defined]


async def test_garbage_from_upstream_is_counted_never_relayed() -> None:
    hub, _ = make()
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    for payload in (b"not json", b"[1]", b'{"executionId": 3, "seq": 1}', b'{"seq": "x"}'):
        hub.on_message(b"exec/x/agent:progress", payload)
    assert sink.frames == [] and hub.counters.drops == 4


async def test_one_frame_per_connection_even_when_several_subscriptions_match() -> None:
    hub, client = make()
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink, "topic", "exec/")
    subscribe(hub, sink, "topic", "exec/e/")
    subscribe(hub, sink, "workflow", "w")
    publish(hub, client, event("e", 1))
    assert sink.seqs() == [1]


async def test_an_execution_first_seen_just_after_its_start_is_fetched_whole() -> None:
    hub, client = make(join_history=10)
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1), lost=True)  # before the SUB subscription was live
    publish(hub, client, event("e", 2), lost=True)
    publish(hub, client, event("e", 3))
    await settle(hub)
    assert sink.seqs() == [1, 2, 3]
    # one long under way when first seen is joined from where it is (log lane)
    for seq in range(1, 50):
        publish(hub, client, event("long", seq), lost=seq < 40)
    await settle(hub)
    assert sink.seqs()[3:] == list(range(40, 50))


async def test_with_no_state_service_at_all_a_join_gap_is_skipped_not_waited_on() -> None:
    # (a bridge started without --state, hearing of no service: nothing will ever answer)
    client = FakeClient()
    hub = Hub(
        FakeUpstream,
        StateClients(None, lambda endpoint: client),
        auth_enabled=False,
        join_history=10,
    )  # type: ignore[arg-type]
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1), lost=True)  # before the SUB subscription was live
    publish(hub, client, event("e", 2))
    publish(hub, client, event("e", 3))
    await settle(hub)
    assert sink.seqs() == [2, 3]
    assert hub.lanes["log"].stats.skipped == 1
    assert client.calls == 0


class SlowClient(FakeClient):
    """A store whose answers for one execution wait until released."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.gate = asyncio.Event()

    async def call(self, call: Call[Any]) -> Any:
        if call.op == "events" and call.fields["executionId"] == self.slow:
            await self.gate.wait()
        return await super().call(call)


async def test_a_slow_fetch_holds_back_no_other_execution() -> None:
    client = SlowClient("slow")
    hub = Hub(FakeUpstream, clients(client), auth_enabled=False)  # type: ignore[arg-type]
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    for eid in ("slow", "fast"):
        publish(hub, client, event(eid, 1))
        publish(hub, client, event(eid, 2), lost=True)
        publish(hub, client, event(eid, 3))
    loop = asyncio.get_running_loop()
    for _ in range(200):  # the fast one is repaired while the slow fetch is still out
        hub.service(loop.time())
        if sink.seqs().count(3) == 1:
            break
        await asyncio.sleep(0.005)
    got = [d["executionId"] for d in sink.docs()]
    assert got == ["slow", "fast", "fast", "fast"]
    client.gate.set()
    await settle(hub)
    got = [(d["executionId"], d["seq"]) for d in sink.docs()]
    assert [s for e, s in got if e == "slow"] == [1, 2, 3]
    assert [s for e, s in got if e == "fast"] == [1, 2, 3]


async def test_published_bytes_are_relayed_untouched_one_frame_for_all() -> None:
    hub, client = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    subscribe(hub, a)
    subscribe(hub, b)
    ev = event("e", 1)
    client.stored["e"] = [ev]
    # Not how this codec would write it (spacing, key order): the bridge must not re-encode.
    payload = json.dumps(dict(reversed(list(ev.items()))), indent=1).encode()
    hub.on_message(b"exec/e/execution:started", payload)
    assert a.frames[0][-len(payload) :] == payload
    assert a.frames[0] is b.frames[0]  # built once, written to every client
    # a fetched event goes out as the store gave it, encoded once
    publish(hub, client, event("e", 2), lost=True)
    publish(hub, client, event("e", 3))
    await settle(hub)
    assert a.seqs() == [1, 2, 3] and a.frames[1] is b.frames[1]
    assert a.docs()[1] == event("e", 2)


async def test_a_gap_the_store_never_fills_is_given_up_after_the_timeout() -> None:
    hub, client = make(repair_timeout=0.2)
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1))
    for seq in (2, 3):
        publish(hub, client, event("e", seq), lost=True)
        client.missing.add(("e", seq))  # ... and the store lost them too
    publish(hub, client, event("e", 4), lost=True)
    client.missing.add(("e", 4))
    hub.on_message(*encode_event(event("e", 5)))  # the store never gets past 4
    client.stored["e"] = client.stored["e"][:4]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(200):
        hub.service(loop.time())
        await asyncio.sleep(0.005)
        if sink.seqs() != [1] or loop.time() - t0 > 2:
            break
    assert sink.seqs() == [1, 5]  # in order, none twice, after the gap
    assert hub.lanes["log"].stats.skipped == 3
    hub.on_message(*encode_event(event("e", 6)))
    assert sink.seqs() == [1, 5, 6]


async def test_a_hole_the_store_has_later_events_of_is_skipped_at_once() -> None:
    hub, client = make(repair_timeout=60.0)
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1))
    publish(hub, client, event("e", 2), lost=True)
    client.missing.add(("e", 2))
    publish(hub, client, event("e", 3), lost=True)
    publish(hub, client, event("e", 4))
    await settle(hub)
    assert sink.seqs() == [1, 3, 4]


async def test_the_lanes_filters_follow_the_connections_subscriptions() -> None:
    hub, client = make()
    a, b = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    log, state = hub.lanes["log"], hub.lanes["state"]
    subscribe(hub, a, "topic", "exec/x/")
    subscribe(hub, b, "topic", "exec/x/", mode="state")
    subscribe(hub, b, "workflow", "w")
    assert log.prefixes == {"exec/x/"} and log.workflows == {"w"}
    assert state.prefixes == {"exec/x/"} and state.workflows == set()
    assert set(hub.upstream.refcounts) == {"exec/x/", "exec/"}  # type: ignore[attr-defined]
    hub.drop_connection(b)  # type: ignore[arg-type]
    assert state.prefixes == set() and log.workflows == set() and log.prefixes == {"exec/x/"}
    publish(hub, client, event("y", 1))  # selected by nothing: nothing relayed
    publish(hub, client, event("x", 1))
    assert a.seqs() == [1]
    hub.drop_connection(a)  # type: ignore[arg-type]
    assert log.zmq_prefixes() == set() and hub.upstream.refcounts == {}  # type: ignore[attr-defined]


async def test_lane_buffers_stay_bounded_in_a_flood_of_gaps() -> None:
    hub, client = make(lane_buffer=50)
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    for n in range(20):
        eid = f"x{n}"
        publish(hub, client, event(eid, 1))
        publish(hub, client, event(eid, 2), lost=True)
    for seq in range(3, 40):
        for n in range(20):
            publish(hub, client, event(f"x{n}", seq))
            assert hub.lanes["log"].buffered <= 50
    await settle(hub)
    for n in range(20):
        seqs = [d["seq"] for d in sink.docs() if d["executionId"] == f"x{n}"]
        assert seqs == list(range(1, 40))


async def test_far_behind_live_events_are_skipped_undecoded_and_come_from_the_store() -> None:
    hub, client = make()
    hub.lanes["log"].page_size = 100
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    publish(hub, client, event("e", 1))
    for seq in range(2, 400):
        publish(hub, client, event("e", seq), lost=seq < 300)
    assert hub.counters.skipped_live > 0  # 300 was buffered; what followed was not decoded
    await settle(hub)
    assert sink.seqs() == list(range(1, 400))


async def test_state_lane_replaces_a_backlog_by_a_snapshot() -> None:
    hub, client = make(max_lag=20)
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink, mode="state")
    publish(hub, client, event("e", 1))
    for seq in range(2, 200):
        publish(hub, client, event("e", seq), lost=seq < 150)
    await settle(hub)
    docs = sink.docs()
    snaps = [d for d in docs if d.get("type") == "snapshot"]
    assert len(snaps) == 1 and snaps[0]["execution"]["lastSeq"] >= 149
    after = [d["seq"] for d in docs[docs.index(snaps[0]) + 1 :]]
    assert after == list(range(snaps[0]["execution"]["lastSeq"] + 1, 200))
    assert len(docs) < 100  # not the backlog


async def test_log_lane_pages_while_any_client_can_take_them() -> None:
    hub, client = make()
    fast, slow = FakeSink(Principal(None, True)), FakeSink(Principal(None, True))
    subscribe(hub, fast)
    subscribe(hub, slow)
    publish(hub, client, event("e", 1))
    for seq in range(2, 3000):
        publish(hub, client, event("e", seq), lost=seq < 2999)
    fast.busy = slow.busy = True
    loop = asyncio.get_running_loop()
    hub.service(loop.time())
    await asyncio.sleep(0.01)
    assert hub.counters.gap_fetches == 0  # nobody can take a page: none is fetched
    fast.busy = False  # (a congested one catches up by itself later, from the store)
    await settle(hub)
    assert fast.seqs() == list(range(1, 3000))


async def test_after_a_flood_gaps_of_many_executions_are_fetched_together() -> None:
    """A flood that overflowed the SUB queue leaves every execution with a gap: the lane asks
    for several pages at once (LANE_PAGES), not one per tick, and no more than that."""
    hub, client = make()
    sink = FakeSink(Principal(None, True))
    subscribe(hub, sink)
    eids = [f"e{i}" for i in range(3 * LANE_PAGES)]
    for eid in eids:
        publish(hub, client, event(eid, 1))
        publish(hub, client, event(eid, 2), lost=True)
        publish(hub, client, event(eid, 3))
    hub.service(asyncio.get_running_loop().time() + 100.0)
    assert hub.counters.gap_fetches == LANE_PAGES  # one service: a page for each of LANE_PAGES
    await settle(hub)
    got = [(d["executionId"], d["seq"]) for d in sink.docs()]
    for eid in eids:
        assert [s for e, s in got if e == eid] == [1, 2, 3]
    assert hub.counters.gap_fetches == len(eids)


def test_snapshot_items_reach_topic_holders_of_any_type() -> None:
    hub, _ = make()
    sink = FakeSink(Principal(None, True))
    sub = Subscription("topic", "exec/e/agent:")
    sink.state.add(sub, "state")
    hub.subscribe(sink, sub, "state")  # type: ignore[arg-type]
    state = replay([parse_event(event("e", 1))])
    assert state is not None
    hub._fan_out("state", Snapshot(state))
    assert sink.docs()[0]["type"] == "snapshot"


async def test_catch_up_pages_are_read_on_a_grid_and_shared() -> None:
    from zmqmon.core.delivery import EventsPage, FetchEvents

    hub, client = make()
    for seq in range(1, 31):
        publish(hub, client, event("e", seq), lost=True)
    a, b = await asyncio.gather(
        hub.answer(FetchEvents("e", 3, 10)), hub.answer(FetchEvents("e", 7, 10))
    )
    assert isinstance(a, EventsPage) and isinstance(b, EventsPage)
    assert [e.seq for e in a.events] == [e.seq for e in b.events] == list(range(1, 11))
    assert client.calls == 1  # one read for both (the cores skip what they have)
    c = await hub.answer(FetchEvents("e", 9, 10))  # a full page: kept
    assert c is a and client.calls == 1 and hub.counters.page_hits == 1
    publish(hub, client, event("e", 31), lost=True)
    d = await hub.answer(FetchEvents("e", 30, 10))  # the last, short page: not kept
    assert isinstance(d, EventsPage) and [e.seq for e in d.events] == [31]
    await hub.answer(FetchEvents("e", 30, 10))
    assert client.calls == 3


async def test_a_grid_page_cut_short_by_large_events_is_asked_again_from_the_cursor() -> None:
    from zmqmon.core.delivery import EventsPage, FetchEvents

    hub, client = make()
    for seq in range(1, 31):
        publish(hub, client, event("e", seq), lost=True)
    real = client.call

    async def capped(call: Call[Any]) -> Any:  # a store whose replies hold 4 events at most
        if call.op == "events":
            call = Call(call.op, {**call.fields, "limit": min(4, call.fields["limit"])}, call.read)
        return await real(call)

    client.call = capped  # type: ignore[method-assign]
    page = await hub.answer(FetchEvents("e", 7, 10))  # the grid's page (from 0) stops at 4
    assert isinstance(page, EventsPage) and [e.seq for e in page.events] == [8, 9, 10, 11]
