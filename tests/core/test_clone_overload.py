"""The repair core under overload: paging at the consumer's pace, bounded memory, the two
delivery modes (``log`` and ``state``), and the give-up rules — all on deterministic time."""

from __future__ import annotations

import random

from tests.core.test_clone import Store, drain, hb, make_events, state_of, subscribe
from zmqmon.core.clone import CloneCore
from zmqmon.core.delivery import (
    NOT_FOUND,
    EventsPage,
    FetchEvents,
    FetchSnapshot,
    Snapshot,
    Unavailable,
)
from zmqmon.core.events import Event
from zmqmon.core.state import ExecutionState, apply_event, replay


def take_all(core: CloneCore[Event]) -> list[Event | Snapshot]:
    out: list[Event | Snapshot] = []
    while (item := core.take_ready()) is not None:
        out.append(item)
    return out


# -- the store is the buffer: pages at the consumer's pace ---------------------------------------


def test_backlog_is_paged_only_as_fast_as_the_consumer_has_room() -> None:
    events = make_events(n=5000)
    core = CloneCore[Event](page_size=1000)
    store = Store(events)
    core.subscribe_execution("e1", after_seq=0)
    assert core.poll(0.0, room=0) == []  # no room: nothing is fetched
    got: list[int] = []
    for step in range(20):
        requests = core.poll(float(step), room=300)
        assert all(isinstance(r, FetchEvents) and r.limit <= 300 for r in requests)
        for req in requests:
            core.on_reply(req, store.answer(req), float(step))
        assert len(core.ready) <= 300  # never more than the consumer said it could take
        got += drain(core)
    assert got == list(range(1, 5001))


def test_live_buffer_is_bounded_across_all_executions() -> None:
    runs = [make_events(f"x{i}", 40) for i in range(30)]
    core = CloneCore[Event](max_buffer=50)
    core.subscribe_topic("exec/")
    for run in runs:
        core.on_event(run[0])
    for run in runs:
        for e in run[2:]:  # seq 2 of each lost: everything after waits on a gap
            core.on_event(e)
            assert core.buffered <= 50
    assert core.stats.overflow == 30 * 38 - 50
    stores = {run[0].execution_id: Store(run) for run in runs}
    seqs: dict[str, list[int]] = {eid: [] for eid in stores}
    for i in range(100):
        for req in core.poll(float(i)):
            core.on_reply(req, stores[req.execution_id].answer(req), float(i))
        for item in take_all(core):
            assert not isinstance(item, Snapshot)
            seqs[item.execution_id].append(item.seq)
    assert all(s == list(range(1, 41)) for s in seqs.values())
    assert core.buffered == 0


def test_needs_live_says_when_a_live_event_may_be_skipped_undecoded() -> None:
    events = make_events(n=3000)
    core = CloneCore[Event](page_size=100)
    assert core.needs_live("e1") is False  # nothing selects it
    core.subscribe_topic("exec/")
    assert core.needs_live("e1") is True  # a new execution: it must be decoded
    core.on_event(events[0])
    assert core.needs_live("e1") is True
    core.on_event(events[2000])  # 1,999 behind: the store will bring them
    assert core.needs_live("e1") is False
    store = Store(events)
    got = drain(core)
    for i in range(40):
        store.serve(core, float(i))
        got += drain(core)
    assert got == list(range(1, 3001))  # caught up from the store alone
    assert core.needs_live("e1") is False  # finished: late duplicates need no decoding


# -- give-up rules -------------------------------------------------------------------------------


def test_log_mode_never_gives_up_because_the_service_does_not_answer() -> None:
    events = make_events(n=10)
    core = CloneCore[Event](repair_timeout=2.0, retry_max=1.0)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[5])
    for t in range(60):  # a minute of timeouts
        for req in core.poll(float(t)):
            core.on_reply(req, Unavailable("timed out"), float(t))
    assert drain(core) == [1] and core.stats.skipped == 0
    settle_at = 100.0
    for i in range(5):
        Store(events).serve(core, settle_at + i)
    assert drain(core) == list(range(2, 11))


def test_state_mode_gives_up_a_gap_the_service_cannot_fill_in_time() -> None:
    events = make_events(n=10)
    core = CloneCore[Event](mode="state", repair_timeout=2.0)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[5])
    for t in range(5):
        for req in core.poll(float(t)):
            core.on_reply(req, Unavailable("timed out"), float(t))
    assert drain(core) == [1, 6]
    assert core.stats.skipped == 4


def test_a_store_that_never_learns_of_an_execution_is_given_up_after_repair_timeout() -> None:
    # e.g. a foreign publisher's execution behind a proxy: this store answers not_found forever
    events = make_events("foreign", 8)
    core = CloneCore[Event](repair_timeout=3.0)
    core.subscribe_topic("exec/")
    core.on_event(events[0])
    core.on_event(events[4])
    for t in range(2):
        for req in core.poll(float(t)):
            core.on_reply(req, NOT_FOUND, float(t))
    assert drain(core) == [1]  # still waiting
    for t in range(2, 6):
        for req in core.poll(float(t)):
            core.on_reply(req, NOT_FOUND, float(t))
    assert drain(core) == [5]
    assert core.stats.skipped == 3


def test_a_store_still_writing_restarts_the_give_up_clock() -> None:
    events = make_events(n=40)
    core = CloneCore[Event](repair_timeout=2.0, retry_min=1.0, retry_max=1.0)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[39])  # the terminal event, live; 2..39 lost
    written = 1
    for t in range(12):  # the store writes one more event each second, never the one needed...
        written += 1
        for req in core.poll(float(t)):
            # ...because its pages stop short of what was asked (a slow writer)
            core.on_reply(req, EventsPage([], written), float(t))
    assert core.stats.skipped == 0  # progress restarts the clock: not given up
    Store(events).serve(core, 20.0)
    assert drain(core) == list(range(1, 41))


def test_a_hole_in_the_store_is_skipped_at_once() -> None:
    events = make_events(n=10)
    core = CloneCore[Event]()
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[9])
    (req,) = core.poll(0.0)
    holed = [e for e in events[1:] if e.seq not in (3, 4)]
    core.on_reply(req, EventsPage(holed, 10), 0.0)
    assert drain(core) == [1, 2, 5, 6, 7, 8, 9, 10]
    assert core.stats.skipped == 2


# -- state mode ----------------------------------------------------------------------------------


def test_state_mode_replaces_a_backlog_past_max_lag_with_a_snapshot() -> None:
    events = make_events(n=500)
    core = CloneCore[Event](mode="state", max_lag=50)
    subscribe(core, "e1")
    for e in events[:10]:
        core.on_event(e)
    core.on_event(events[399])  # seq 400: 389 behind
    (req,) = core.poll(0.0)
    assert req == FetchSnapshot("e1")
    assert core.needs_live("e1") is False  # the snapshot replaces whatever comes meanwhile
    core.on_reply(req, state_of(events[:420]), 0.0)  # the store is ahead of the live event
    items = take_all(core)
    assert [type(x).__name__ for x in items][-1] == "Snapshot"
    assert all(isinstance(x, Snapshot) or x.seq <= 10 for x in items)
    snap = items[-1]
    assert isinstance(snap, Snapshot) and snap.state.last_seq == 420
    for e in events[420:]:
        core.on_event(e)
    assert drain(core) == list(range(421, 501))
    assert core.states["e1"] == replay(events)
    assert core.stats.resnapshots == 1 and core.stats.fetches == 0


def test_state_mode_small_gaps_are_still_fetched_as_events() -> None:
    events = make_events(n=60)
    core = CloneCore[Event](mode="state", max_lag=50)
    subscribe(core, "e1")
    core.on_event(events[0])
    core.on_event(events[10])
    (req,) = core.poll(0.0)
    assert isinstance(req, FetchEvents)


def test_state_mode_prefix_join_is_announced_by_a_snapshot() -> None:
    events = make_events(n=40)
    core = CloneCore[Event](mode="state", keep_states=False)
    core.subscribe_topic("exec/")
    core.on_event(events[9])  # first seen mid-way
    (req,) = core.poll(0.0)
    assert req == FetchSnapshot("e1")
    core.on_reply(req, state_of(events[:12]), 0.0)
    items = take_all(core)
    assert len(items) == 1 and isinstance(items[0], Snapshot)
    for e in events[10:]:
        core.on_event(e)
    assert drain(core) == list(range(13, 41))


def test_a_consumer_folding_state_mode_deliveries_ends_exact_under_random_loss() -> None:
    rng = random.Random(11)
    runs = [make_events(f"r{i}", 400) for i in range(6)]
    interleaved = [e for group in zip(*runs, strict=True) for e in group]
    live = [e for e in interleaved if rng.random() > 0.4]  # 40 % lost at the PUB
    core = CloneCore[Event](mode="state", max_lag=30, keep_states=False)
    core.subscribe_topic("exec/")
    stores = {run[0].execution_id: Store(run) for run in runs}
    folded: dict[str, ExecutionState] = {}
    for i, e in enumerate(live):
        core.on_event(e)
        if i % 400 == 0:
            for req in core.poll(float(i)):
                core.on_reply(req, stores[req.execution_id].answer(req), float(i))
        for item in take_all(core):
            eid = item.execution_id
            if isinstance(item, Snapshot):
                folded[eid] = item.state
            else:
                assert eid not in folded or item.seq == folded[eid].last_seq + 1, "a gap"
                folded[eid] = apply_event(folded.get(eid), item)
    for i in range(100):
        for req in core.poll(10_000.0 + i):
            core.on_reply(req, stores[req.execution_id].answer(req), 10_000.0 + i)
        for item in take_all(core):
            eid = item.execution_id
            folded[eid] = (
                item.state if isinstance(item, Snapshot) else apply_event(folded.get(eid), item)
            )
    assert folded == {eid: state_of(s.events) for eid, s in stores.items()}
    assert core.stats.snapshots > 0


def test_offer_snapshot_and_resync_for_a_relay() -> None:
    events = make_events(n=100)
    core = CloneCore[Event](mode="state", keep_states=False, max_lag=20)
    subscribe(core, "e1", state_of(events[:5]))
    core.offer_snapshot(state_of(events[:15]))  # ahead, but by less than max_lag: not taken,
    assert take_all(core) == []  # the ten events between are fetched instead
    (req,) = core.poll(0.0)
    assert req == FetchEvents("e1", 5, 1000)
    core.on_reply(req, Unavailable("busy"), 0.0)
    core.offer_snapshot(state_of(events[:50]))  # an upstream re-snapshot far ahead: taken
    items = take_all(core)
    assert len(items) == 1 and isinstance(items[0], Snapshot)
    core.offer_snapshot(state_of(events[:20]))  # behind what was delivered: ignored
    assert take_all(core) == []
    for e in events[50:60]:
        core.on_event(e)
    assert drain(core) == list(range(51, 61))
    core.resync("e1")  # the relay could not write those: start again from a snapshot
    core.on_event(events[60])  # waits for the snapshot
    (req,) = core.poll(1.0)
    assert req == FetchSnapshot("e1")
    core.on_reply(req, state_of(events[:60]), 1.0)
    items = take_all(core)
    assert isinstance(items[0], Snapshot) and [x.seq for x in items[1:]] == [61]  # type: ignore[union-attr]
    # resync of an execution a topic brought: pinned until it ends, then forgotten
    other = make_events("o", 6)
    core.resync("o")
    (req,) = core.poll(2.0)
    core.on_reply(req, state_of(other[:3]), 2.0)
    for e in other[3:]:
        core.on_event(e)
    assert [getattr(x, "seq", "snap") for x in take_all(core)] == ["snap", 4, 5, 6]
    assert "o" not in core.tracked()


# -- memory bounds and liveness -----------------------------------------------------------------


def test_states_of_finished_executions_are_pruned_oldest_first() -> None:
    core = CloneCore[Event](max_states=3)
    core.subscribe_topic("exec/")
    subscribe(core, "mine")
    mine = make_events("mine", 5)
    for e in mine:
        core.on_event(e)
    for n in range(10):
        for e in make_events(f"x{n}", 5):
            core.on_event(e)
    assert set(core.states) == {"mine", "x7", "x8", "x9"}  # subscribed ones are kept
    core.unsubscribe_execution("mine")  # now prunable, as the newest finished one
    for n in range(10, 13):
        for e in make_events(f"x{n}", 5):
            core.on_event(e)
    assert set(core.states) == {"x10", "x11", "x12"}


def test_any_traffic_keeps_the_publisher_alive_when_heartbeats_are_lost() -> None:
    core = CloneCore[Event](heartbeat_timeout=3.0)
    core.on_heartbeat(hb(), 0.0)
    for t in range(1, 20):  # a flood: events arrive, every heartbeat was dropped at the PUB
        core.touch(float(t))
        assert core.check_liveness(float(t) + 0.5) is True
    assert core.check_liveness(30.0) is False
    assert list(core.liveness_changes) == [True, False]


def test_subscribe_snapshot_unavailable_is_asked_again() -> None:
    events = make_events(n=6)
    core = CloneCore[Event]()
    req = core.subscribe_execution("e1")
    assert req is not None
    core.on_event(events[2])
    core.on_reply(req, Unavailable("timed out"), 0.0)
    assert core.poll(0.0) == []  # backing off
    (again,) = core.poll(1.0)
    assert again == FetchSnapshot("e1")
    core.on_reply(again, state_of(events[:2]), 1.0)
    assert drain(core) == [3]


def test_state_mode_events_that_come_late_are_replaced_by_a_snapshot_once_per_interval() -> None:
    events = make_events(n=60)
    core = CloneCore[Event](mode="state", max_staleness=1.0)
    subscribe(core, "e1")
    core.on_event(events[0], age=0.1, now=10.0)
    assert core.poll(10.0) == []  # fresh: nothing to do
    core.on_event(events[1], age=2.5, now=10.1)  # 2.5 s late: the consumer is behind
    (req,) = core.poll(10.1)
    assert req == FetchSnapshot("e1")
    assert core.needs_live("e1") is False  # what comes until the snapshot is skipped
    core.on_reply(req, state_of(events[:40]), 10.2)
    core.on_event(events[40], age=2.0, now=10.3)  # still late, but a snapshot was just taken
    assert core.poll(10.3) == []
    core.on_event(events[41], age=2.0, now=11.2)  # a second later: another one
    assert core.poll(11.2) == [FetchSnapshot("e1")]
    assert core.stats.resnapshots == 2
    log = CloneCore[Event](mode="log")  # log mode: lateness changes nothing
    subscribe(log, "e1")
    log.on_event(events[0], age=30.0, now=1.0)
    assert log.poll(1.0) == [] and drain(log) == [1]
