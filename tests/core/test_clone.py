"""The repair core without sockets: drops, duplicates, reordering, tails, joins, heartbeats,
paging at the consumer's pace, the two delivery modes, give-up rules and memory bounds."""

from __future__ import annotations

import random
from typing import Any

from zmqmon.core.clone import CloneCore
from zmqmon.core.delivery import (
    NOT_FOUND,
    EventsPage,
    FetchEvents,
    FetchSnapshot,
    Reply,
    Snapshot,
    Unavailable,
)
from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import ExecutionState, replay
from zmqmon.core.wire import Heartbeat


def make_events(execution_id: str = "e1", n: int = 10, workflow_id: str = "wf") -> list[Event]:
    """An execution of ``n`` events: started, agent progress …, completed."""
    out: list[dict[str, Any]] = []
    ts = "2026-11-25T10:00:00.000Z"
    base = {"executionId": execution_id, "workflowId": workflow_id, "timestamp": ts}
    out.append(
        {**base, "type": "execution:started", "data": {"workflowName": "W", "agentCount": 1}}
    )
    out.append({**base, "type": "agent:started", "data": {"agentId": "a", "agentName": "A"}})
    for i in range(n - 4):
        data = {"agentId": "a", "agentName": "A", "progress": min(100, i), "message": None}
        out.append({**base, "type": "agent:progress", "data": data})
    out.append(
        {**base, "type": "agent:completed", "data": {"agentId": "a", "agentName": "A", "result": 1}}
    )
    out.append({**base, "type": "execution:completed", "data": {"durationMs": 5, "results": {}}})
    return [parse_event({**e, "seq": i + 1}) for i, e in enumerate(out)]


def hb(**executions: int) -> Heartbeat:
    return Heartbeat(publisher_id="p", timestamp="2026-11-25T10:00:00.000Z", executions=executions)


def state_of(events: list[Event]) -> ExecutionState:
    st = replay(events)
    assert st is not None
    return st


class Store:
    """A fake state service answering from a list of events (what the real store would hold)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.calls = 0

    def answer(self, req: FetchEvents | FetchSnapshot) -> Reply:
        self.calls += 1
        if not self.events:
            return NOT_FOUND
        if isinstance(req, FetchEvents):
            got = [e for e in self.events if e.seq > req.after_seq][: req.limit]
            return EventsPage(got, len(self.events))
        return state_of(self.events)

    def serve(self, core: CloneCore[Event], now: float, room: int | None = None) -> None:
        for req in core.poll(now, room):
            core.on_reply(req, self.answer(req), now)


def subscribe(core: CloneCore[Event], eid: str, state: ExecutionState | None = None) -> None:
    """An explicit subscribe, its snapshot answered (None: the execution is not known yet)."""
    req = core.subscribe_execution(eid)
    assert req == FetchSnapshot(eid)
    core.on_reply(req, NOT_FOUND if state is None else state, 0.0)


def drain(core: CloneCore[Event]) -> list[int]:
    out = []
    while (e := core.take_ready()) is not None:
        assert not isinstance(e, Snapshot)
        out.append(e.seq)
    return out


def settle(core: CloneCore[Event], store: Store, now: float = 0.0) -> list[int]:
    seqs = drain(core)
    for i in range(200):
        store.serve(core, now + i)  # time moves on, so backoffs fall due
        seqs += drain(core)
    return seqs


def test_in_order_stream_is_delivered_once_without_fetching() -> None:
    events = make_events(n=8)
    core = CloneCore[Event]()
    subscribe(core, "e1")
    for e in events:
        core.on_event(e)
    assert drain(core) == list(range(1, 9))
    assert core.poll(0.0) == []
    assert core.states["e1"] == replay(events)
    assert core.stats.fetches == 0 and core.stats.delivered == 8


def test_snapshot_join_drops_live_events_at_or_below_last_seq() -> None:
    events = make_events(n=10)
    core = CloneCore[Event]()
    req = core.subscribe_execution("e1")
    assert req is not None
    for e in events[3:6]:  # seq 4..6 arrive before the snapshot answer
        core.on_event(e)
    assert drain(core) == []
    core.on_reply(req, state_of(events[:5]), 0.0)  # lastSeq 5
    assert drain(core) == [6]
    for e in events[6:]:
        core.on_event(e)
    assert drain(core) == [7, 8, 9, 10]
    assert core.stats.duplicates == 2
    assert core.states["e1"] == replay(events)


def test_random_drops_duplicates_and_reordering_are_repaired() -> None:
    rng = random.Random(7)
    events = make_events(n=300)
    live = [e for e in events if rng.random() > 0.3]  # 30 % lost
    live += rng.sample(live, 40)  # duplicates
    live += [live[0]] * ((5 - len(live) % 5) % 5)  # whole windows for the shuffle below
    # local reordering: shuffle in windows of 5
    live = [e for i in range(0, len(live), 5) for e in rng.sample(live[i : i + 5], 5)]
    core = CloneCore[Event](page_size=50)
    store = Store(events)
    subscribe(core, "e1")
    seqs: list[int] = []
    for i, e in enumerate(live):
        core.on_event(e)
        if i % 7 == 0:
            store.serve(core, float(i))
        seqs += drain(core)
    seqs += settle(core, store, 1000.0)
    assert seqs == list(range(1, 301))
    assert core.stats.fetched > 0 and core.stats.duplicates > 0
    assert core.states["e1"] == replay(events)


def test_lost_tail_is_revealed_by_heartbeat() -> None:
    events = make_events(n=10)
    core = CloneCore[Event]()
    subscribe(core, "e1")
    for e in events[:7]:
        core.on_event(e)
    assert drain(core) == list(range(1, 8))
    assert core.poll(0.0) == []  # no gap known yet
    core.on_heartbeat(hb(e1=10), 0.0)
    (req,) = core.poll(0.0)
    assert req == FetchEvents("e1", 7, 1000)
    core.on_reply(req, EventsPage(events[7:], 10), 0.0)
    assert drain(core) == [8, 9, 10]
    assert core.states["e1"].status == "completed"


def test_fetch_failure_is_retried_after_backoff() -> None:
    events = make_events(n=6)
    core = CloneCore[Event](retry_min=0.5)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[3])  # gap 2..3
    (req,) = core.poll(0.0)
    assert core.poll(0.0) == []  # outstanding: not asked twice
    core.on_reply(req, Unavailable("timed out"), 0.0)
    assert core.poll(0.1) == []  # backing off
    (again,) = core.poll(0.6)
    assert again == FetchEvents("e1", 1, 1000)
    core.on_reply(again, EventsPage(events[1:], 6), 0.6)
    assert drain(core) == [1, 2, 3, 4, 5, 6]
    assert core.stats.fetch_failures == 1


def test_store_lagging_behind_live_stream_backs_off_then_catches_up() -> None:
    events = make_events(n=6)
    core = CloneCore[Event](retry_min=0.5)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[2])
    (req,) = core.poll(0.0)
    core.on_reply(req, EventsPage([], 1), 0.0)  # the store has not written seq 2 yet
    assert core.poll(0.1) == []
    (req,) = core.poll(0.6)
    assert req == FetchEvents("e1", 1, 1000)
    core.on_reply(req, EventsPage(events[1:3], 3), 0.6)
    assert drain(core) == [1, 2, 3]


def test_paging_by_limit() -> None:
    events = make_events(n=25)
    core = CloneCore[Event](page_size=10)
    store = Store(events)
    core.subscribe_execution("e1", after_seq=0)
    assert settle(core, store) == list(range(1, 26))
    assert store.calls == 3


def test_after_seq_resume_fetches_then_goes_live() -> None:
    events = make_events(n=12)
    core = CloneCore[Event]()
    core.subscribe_execution("e1", after_seq=5)
    core.on_event(events[10])  # seq 11 live while resuming
    (req,) = core.poll(0.0)
    assert req == FetchEvents("e1", 0, 1000)  # from 1: the state is built whole
    core.on_reply(req, EventsPage(events[:9], 9), 0.0)  # store up to 9 (10 still in flight)
    core.on_event(events[11])
    assert drain(core) == [6, 7, 8, 9]
    (req,) = core.poll(0.0)
    core.on_reply(req, EventsPage(events[9:], 12), 0.0)
    assert drain(core) == [10, 11, 12]
    assert core.states["e1"] == replay(events)


def test_prefix_join_fetches_early_history_when_short() -> None:
    events = make_events(n=10)
    core = CloneCore[Event](join_history=100)
    store = Store(events)
    core.subscribe_topic("exec/")
    core.on_event(events[4])  # first seen at seq 5: its first events were lost
    assert settle(core, store) == list(range(1, 11))  # the store had it all


def test_prefix_join_by_snapshot_when_long_under_way() -> None:
    events = make_events(n=40)
    core = CloneCore[Event](join_history=10)
    core.subscribe_topic("exec/")
    core.on_event(events[29])  # seq 30
    (req,) = core.poll(0.0)
    assert req == FetchSnapshot("e1")
    core.on_reply(req, state_of(events[:30]), 0.0)
    assert drain(core) == []
    for e in events[30:]:
        core.on_event(e)
    assert drain(core) == list(range(31, 41))
    assert core.states["e1"] == replay(events)


def test_filters_workflow_topic_and_unsubscribe_purges_queue() -> None:
    a = make_events("a", 5, workflow_id="w1")
    b = make_events("b", 5, workflow_id="w2")
    core = CloneCore[Event]()
    core.subscribe_workflow("w1")
    assert core.zmq_prefixes() == {"exec/"}
    for e in b + a[:2]:
        core.on_event(e)
    assert [(e.execution_id, e.seq) for e in core.ready] == [("a", 1), ("a", 2)]
    core.unsubscribe_workflow("w1")
    assert drain(core) == []
    core.on_event(a[2])
    assert drain(core) == []
    core.subscribe_topic("exec/b/agent:")
    core.on_event(b[1])  # agent:started of b, first seen at seq 2
    # Only agent events are delivered; seq 1 and the terminal seq 5 are applied to the state.
    assert settle(core, Store(b)) == [2, 3, 4]
    assert core.states["b"].status == "completed"


def test_execution_subscription_zmq_prefix_and_late_duplicates_after_done() -> None:
    events = make_events(n=5)
    core = CloneCore[Event]()
    subscribe(core, "e1", state_of(events))  # already finished
    assert core.zmq_prefixes() == {"exec/e1/"}
    for e in events:
        core.on_event(e)
    assert drain(core) == []
    assert core.poll(0.0) == []
    core.unsubscribe_execution("e1")
    assert core.tracked() == [] and core.zmq_prefixes() == set()


def test_prefix_trackers_are_forgotten_when_done_but_duplicates_still_dropped() -> None:
    events = make_events(n=5)
    core = CloneCore[Event]()
    core.subscribe_topic("exec/")
    for e in events:
        core.on_event(e)
    assert drain(core) == [1, 2, 3, 4, 5]
    assert core.tracked() == []
    core.on_event(events[4])
    assert drain(core) == []


def test_buffer_is_bounded_and_overflow_is_fetched() -> None:
    events = make_events(n=30)
    core = CloneCore[Event](max_buffer=5)
    store = Store(events)
    subscribe(core, "e1")
    for e in events[1:]:  # seq 1 lost: everything else must wait
        core.on_event(e)
    assert core.stats.overflow == 24
    assert settle(core, store) == list(range(1, 31))


def test_without_state_service_gaps_are_skipped() -> None:
    events = make_events(n=6)
    core = CloneCore[Event]()
    core.subscribe_topic("exec/")
    core.on_event(events[0])
    core.on_event(events[3])
    (req,) = core.poll(0.0)
    core.on_reply(req, Unavailable("no state service", permanent=True), 0.0)
    assert drain(core) == [1, 4]
    assert core.stats.skipped == 2


def test_liveness_from_heartbeat_times() -> None:
    events = make_events(n=6)
    core = CloneCore[Event](heartbeat_timeout=3.0)
    assert core.publisher_alive is False
    core.on_heartbeat(hb(), 10.0)
    assert core.publisher_alive is True
    core.poll(12.9)
    assert core.publisher_alive is True
    subscribe(core, "e1")
    core.on_event(events[0])
    drain(core)
    core.poll(13.5)
    assert core.publisher_alive is False
    core.on_heartbeat(hb(), 20.0)  # back: unfinished executions are checked once
    assert list(core.liveness_changes) == [True, False, True]
    assert core.poll(20.0) == [FetchEvents("e1", 1, 1000)]


def test_snapshot_state_is_the_reducer_state() -> None:
    events = make_events(n=8)
    core = CloneCore[Event]()
    subscribe(core, "e1", state_of(events[:4]))
    for e in events[4:]:
        core.on_event(e)
    assert core.states["e1"] == replay(events)


def test_execution_lost_whole_is_joined_from_a_heartbeat_when_a_prefix_selects_it() -> None:
    events = make_events("e9", 6)
    core = CloneCore[Event]()
    core.subscribe_topic("exec/e9/")
    core.subscribe_workflow("wf")  # workflow subscriptions cannot use heartbeats (no workflow id)
    core.on_heartbeat(hb(e9=6, other=3), now=0.0)  # not one live event of e9 arrived
    store = Store(events)
    store.serve(core, 0.0)
    assert drain(core) == [1, 2, 3, 4, 5, 6]
    assert "other" not in core.tracked()  # selected by no prefix


def test_heartbeat_alone_does_not_join_for_workflow_subscriptions() -> None:
    core = CloneCore[Event]()
    core.subscribe_workflow("wf")
    core.on_heartbeat(hb(e9=6), now=0.0)
    assert core.poll(0.0) == []
    assert core.tracked() == []


def test_on_event_tells_whether_the_event_was_kept() -> None:
    events = make_events(n=6)
    core = CloneCore[Event]()
    core.subscribe_topic("exec/")
    assert core.on_event(events[0]) is True  # delivered
    assert core.on_event(events[0]) is False  # a duplicate
    assert core.on_event(events[3]) is True  # buffered behind a gap
    assert core.on_event(events[3]) is False  # buffered already
    assert core.on_event(make_events("x", 3, workflow_id="w")[0]) is True
    core.unsubscribe_topic("exec/")
    core.subscribe_topic("exec/e1/")
    assert core.on_event(make_events("y", 3)[0]) is False  # not selected
    full = CloneCore[Event](max_buffer=1)
    full.subscribe_topic("exec/")
    full.on_event(events[0])
    assert full.on_event(events[2]) is True
    assert full.on_event(events[3]) is False  # overflow: the fetch will bring it


def test_without_snapshot_joins_a_long_execution_is_joined_where_first_seen() -> None:
    events = make_events(n=40)
    core = CloneCore[Event](join_history=10, snapshot_joins=False, keep_states=False)
    store = Store(events[:33])  # what the store holds by then
    core.subscribe_topic("exec/")
    core.on_event(events[29])  # seq 30: delivered at once, nothing asked for
    assert drain(core) == [30]
    assert core.poll(0.0) == [] and core.delivered_seq("e1") == 30
    core.on_event(events[32])  # a gap after the join is repaired as usual
    assert settle(core, store) == [31, 32, 33]
    assert store.calls == 1 and core.states == {}
    # short ones are still fetched whole
    short = make_events("s", 8)
    core.on_event(short[3])
    assert settle(core, Store(short[:4])) == list(range(1, 5))


def test_without_snapshot_joins_a_heartbeat_joins_a_long_one_at_its_last_seq() -> None:
    events = make_events("e9", 40)
    core = CloneCore[Event](join_history=10, snapshot_joins=False)
    core.subscribe_topic("exec/e9/")
    core.on_heartbeat(hb(e9=30), now=0.0)
    assert core.poll(0.0) == [] and core.delivered_seq("e9") == 30
    core.on_heartbeat(hb(e9=32), now=0.1)  # from then on, a lost tail is fetched
    assert settle(core, Store(events[:32])) == [31, 32]


def test_track_from_a_seq_reached_elsewhere_then_fetch_a_revealed_tail() -> None:
    events = make_events("x", 2000)
    core = CloneCore[Event](snapshot_joins=False)
    assert core.track("x", 1500) is False  # no prefix selects it
    core.subscribe_topic("exec/x/")
    assert core.track("x", 1500) is True
    assert core.track("x", 3) is False  # already tracked: its progress is kept
    assert core.delivered_seq("x") == 1500
    core.on_heartbeat(hb(x=1502), now=0.0)
    assert settle(core, Store(events[:1502])) == [1501, 1502]
    assert core.delivered_seq("nobody") == 0


def test_prefix_trackers_are_bounded_oldest_forgotten_explicit_kept() -> None:
    core = CloneCore[Event](max_tracked=3)
    core.subscribe_topic("exec/")
    subscribe(core, "mine")  # an explicit subscription: never evicted
    for n in range(5):  # executions that never end (their publisher died)
        core.on_event(make_events(f"gone{n}", 6)[0])
    tracked = core.tracked()
    assert "mine" in tracked
    assert len(tracked) == 3
    assert tracked[-2:] == ["gone3", "gone4"]
    # A forgotten one that speaks again is joined anew, by the usual rules.
    core.on_event(make_events("gone0", 6)[1])
    assert "gone0" in core.tracked()


def test_heartbeats_make_a_directory_of_state_services_and_route_requests_to_owners() -> None:
    core = CloneCore[Event](join_history=100)
    core.subscribe_topic("exec/")

    def named(state: str, **executions: int) -> Heartbeat:
        return Heartbeat(
            publisher_id=state, timestamp="2026-11-25T10:00:00.000Z", executions=executions,
            state=state,
        )  # fmt: skip

    core.on_heartbeat(named("tcp://a:5557", e1=0), now=10.0)
    core.on_heartbeat(named("tcp://b:5557", e2=0), now=12.0)
    core.on_heartbeat(hb(e3=0), now=13.0)  # names no service: not in the directory
    assert core.services_heard(now=13.0, within=5.0) == ["tcp://b:5557", "tcp://a:5557"]
    assert core.services_heard(now=16.0, within=5.0) == ["tcp://b:5557"]  # a: silent too long
    assert core.owners == {"e1": "tcp://a:5557", "e2": "tcp://b:5557"}
    core.learn_owner("e9", "tcp://b:5557")  # an older one, from a listing
    core.on_event(make_events("e9")[2])  # seen mid-way: its gap is asked of its owner
    requests = [r for r in core.poll(now=20.0) if r.execution_id == "e9"]
    (request,) = requests
    assert isinstance(request, FetchEvents | FetchSnapshot)
    assert (request.execution_id, request.owner) == ("e9", "tcp://b:5557")
