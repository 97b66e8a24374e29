"""The engine against a real EventEmitter: event sequences checked by SPEC §2's rules and the
reducer. No timing assumptions: concurrency is proven with barriers, waits poll."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.services.executor.rules import check_events, types_of
from zmqmon.core.emitter import EventEmitter
from zmqmon.core.wire import MAX_EVENT_BYTES, encode_event
from zmqmon.errors import AgentFailedError, AgentTimeoutError, ExecutionCancelledError
from zmqmon.services.executor import Agent, AgentContext, Workflow, WorkflowEngine

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def engine(events: list[dict[str, Any]]) -> Iterator[WorkflowEngine]:
    eng = WorkflowEngine(EventEmitter(events.append), max_workers=4, progress_interval=0)
    yield eng
    eng.close()


def noop(ctx: AgentContext) -> str:
    return ctx.agent_id


def test_linear_workflow(engine: WorkflowEngine, events: list[dict[str, Any]]) -> None:
    def first(ctx: AgentContext) -> int:
        for i in range(5):
            ctx.progress(i * 25)
        return 21

    async def second(ctx: AgentContext) -> int:
        return int(ctx.results["first"]) * 2 + ctx.params["plus"] + ctx.inputs["base"]

    run = engine.submit(
        Workflow(
            "Linear",
            [
                Agent("first", first, name="First"),
                Agent("second", second, params={"plus": 0}, depends_on=["first"]),
                Agent("third", "tests.services.executor.agents:echo", depends_on=["second"]),
            ],
        ),
        inputs={"base": 0},
        user_id="ada",
    )
    state = run.wait(10)
    assert run.status == "completed"
    check_events(events)
    assert state.status == "completed" and state.progress == 100 and state.user_id == "ada"
    assert [a.status for a in state.agents] == ["completed"] * 3
    assert [a.agent_name for a in state.agents] == ["First", "second", "third"]
    started = events[0]["data"]
    assert started["agents"][1] == {
        "agentId": "second",
        "agentName": "second",
        "dependsOn": ["first"],
    }
    assert started["agentCount"] == 3 and started["userId"] == "ada"
    # agents run in dependency order, each started after its dependency completed
    order = [
        (e["type"], e["data"]["agentId"])
        for e in events
        if e["type"] in ("agent:started", "agent:completed")
    ]
    assert order == [
        ("agent:started", "first"), ("agent:completed", "first"),
        ("agent:started", "second"), ("agent:completed", "second"),
        ("agent:started", "third"), ("agent:completed", "third"),
    ]  # fmt: skip
    assert run.result["second"] == 42
    assert run.result["third"] == {"params": {}, "inputs": {"base": 0}, "deps": ["second"]}
    done = events[-1]["data"]
    assert done["results"]["second"] == 42
    # the agent's progress reports, then the execution's progress moving with agents finishing
    assert [e["data"]["progress"] for e in events if e["type"] == "agent:progress"] == [
        0,
        25,
        50,
        75,
        100,
    ]
    overall = [e["data"]["progress"] for e in events if e["type"] == "execution:progress"]
    assert overall == sorted(overall) and overall[-1] == 100 and 33 in overall


def test_diamond_runs_two_agents_at_once(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    barrier = threading.Barrier(2, timeout=10)  # broken (→ agent fails) unless b and c overlap

    def side(ctx: AgentContext) -> str:
        barrier.wait()
        return ctx.agent_id

    run = engine.submit(
        Workflow(
            "Diamond",
            [
                Agent("a", noop),
                Agent("b", side, depends_on=["a"]),
                Agent("c", side, depends_on=["a"]),
                Agent("d", noop, depends_on=["b", "c"]),
            ],
        )
    )
    state = run.wait(15)
    check_events(events)
    assert state.status == "completed", state.error
    assert run.result == {"a": "a", "b": "b", "c": "c", "d": "d"}
    pos = {(e["type"], e["data"].get("agentId")): e["seq"] for e in events}
    assert pos[("agent:started", "d")] > max(
        pos[("agent:completed", "b")], pos[("agent:completed", "c")]
    )


def test_async_agents_run_at_once_on_the_loop(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    inside: list[str] = []
    both = asyncio.Event()

    async def side(ctx: AgentContext) -> str:
        inside.append(ctx.agent_id)
        if len(inside) == 2:
            both.set()
        async with asyncio.timeout(10):
            await both.wait()
        return ctx.agent_id

    run = engine.submit(
        Workflow(
            "Pair", [Agent("x", side), Agent("y", side), Agent("z", noop, depends_on=["x", "y"])]
        )
    )
    state = run.wait(15)
    check_events(events)
    assert state.status == "completed", state.error
    assert sorted(inside) == ["x", "y"]


def test_a_failing_agent_fails_the_execution_and_its_dependants_never_start(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    c_inside = threading.Event()
    c_cancelled = threading.Event()

    async def slow(ctx: AgentContext) -> None:
        c_inside.set()
        try:
            await asyncio.Event().wait()  # forever, until cancelled
        except asyncio.CancelledError:
            c_cancelled.set()
            raise

    def boom(ctx: AgentContext) -> None:
        assert c_inside.wait(10)
        raise ValueError("bad row 7")

    run = engine.submit(
        Workflow(
            "Diamond",
            [
                Agent("a", noop),
                Agent("b", boom, depends_on=["a"]),
                Agent("c", slow, depends_on=["a"]),
                Agent("d", noop, depends_on=["b", "c"]),
            ],
        )
    )
    state = run.wait(10)
    check_events(events)
    assert state.status == "failed"
    assert types_of(events, "b") == ["agent:started", "agent:failed"]
    assert types_of(events, "d") == []  # never started
    assert types_of(events, "c") == ["agent:started"]
    assert c_cancelled.is_set()
    failed = events[-1]
    assert failed["type"] == "execution:failed"
    assert failed["data"]["agentId"] == "b" and failed["data"]["errorType"] == "ValueError"
    assert "bad row 7" in failed["data"]["error"]
    agent_failed = next(e for e in events if e["type"] == "agent:failed")
    assert agent_failed["data"]["error"] == "bad row 7"
    rows = {a.agent_id: a.status for a in state.agents}
    assert rows == {"a": "completed", "b": "failed", "c": "cancelled", "d": "pending"}
    with pytest.raises(AgentFailedError) as info:
        _ = run.result
    assert info.value.agent_id == "b" and info.value.error_type == "ValueError"


def test_timeout_of_an_async_and_of_a_sync_agent(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    saw_flag = threading.Event()

    async def sleepy(ctx: AgentContext) -> None:
        await asyncio.sleep(60)

    def busy(ctx: AgentContext) -> None:
        while not ctx.cancelled:
            time.sleep(0.001)
        saw_flag.set()

    for fn in (sleepy, busy):
        events.clear()
        run = engine.submit(
            Workflow(
                "T", [Agent("t", fn, timeout_seconds=0.05), Agent("after", noop, depends_on=["t"])]
            )
        )
        state = run.wait(10)
        check_events(events)
        assert state.status == "failed"
        failed = next(e for e in events if e["type"] == "agent:failed")["data"]
        assert failed["errorType"] == "AgentTimeoutError"
        assert "timed out after 0.05 s" in failed["error"]
        assert events[-1]["data"]["agentId"] == "t"
        assert types_of(events, "after") == []
        with pytest.raises(AgentTimeoutError):
            _ = run.result
    assert saw_flag.wait(5)  # the sync agent saw ctx.cancelled after its timeout


def test_nothing_follows_the_terminal_event_even_from_a_zombie_sync_agent(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    release = threading.Event()
    returned = threading.Event()

    def stubborn(ctx: AgentContext) -> None:  # ignores cancellation, keeps reporting
        release.wait(10)
        for i in range(100):
            ctx.progress(i)
        returned.set()

    run = engine.submit(Workflow("Z", [Agent("z", stubborn, timeout_seconds=0.05)]))
    run.wait(10)
    n = len(events)
    release.set()
    assert returned.wait(10)
    assert len(events) == n
    check_events(events)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_cancel_during_an_agent(
    engine: WorkflowEngine, events: list[dict[str, Any]], kind: str
) -> None:
    inside = threading.Event()
    stopped = threading.Event()

    def sync_agent(ctx: AgentContext) -> None:
        inside.set()
        while True:
            try:
                ctx.check_cancelled()
            except ExecutionCancelledError:
                stopped.set()
                raise
            time.sleep(0.001)

    async def async_agent(ctx: AgentContext) -> None:
        inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise

    fn = sync_agent if kind == "sync" else async_agent
    run = engine.submit(
        Workflow(
            "C",
            [
                Agent("first", noop),
                Agent("busy", fn, depends_on=["first"]),
                Agent("never", noop, depends_on=["busy"]),
            ],
        )
    )
    assert inside.wait(10)
    assert run.cancel("user asked") is True
    state = run.wait(10)
    assert stopped.wait(10)
    check_events(events)
    assert events[-1]["type"] == "execution:cancelled"
    assert events[-1]["data"]["reason"] == "user asked"
    assert state.status == "cancelled"
    assert {a.agent_id: a.status for a in state.agents} == {
        "first": "completed",
        "busy": "cancelled",
        "never": "pending",
    }
    assert types_of(events, "never") == []
    assert run.cancel() is False  # already finished
    assert engine.cancel(run.id) is False
    with pytest.raises(ExecutionCancelledError):
        _ = run.result


def test_cancel_of_unknown_execution(engine: WorkflowEngine) -> None:
    assert engine.cancel("no-such-id") is False


def test_progress_is_coalesced_latest_wins_last_sent(events: list[dict[str, Any]]) -> None:
    # a clock that never moves: only the first report and the final flush go out
    engine = WorkflowEngine(EventEmitter(events.append), progress_interval=0.05, clock=lambda: 0.0)
    try:

        def chatty(ctx: AgentContext) -> None:
            for i in range(100_000):
                ctx.progress(i / 1000, f"step {i}")

        run = engine.submit(Workflow("P", [Agent("p", chatty)]))
        run.wait(20)
    finally:
        engine.close()
    check_events(events)
    progress = [
        (e["data"]["progress"], e["data"]["message"])
        for e in events
        if e["type"] == "agent:progress"
    ]
    assert progress == [(0, "step 0"), (99, "step 99999")]
    kinds = types_of(events)
    assert kinds.index("agent:completed") > max(
        i for i, k in enumerate(kinds) if k == "agent:progress"
    )


@dataclasses.dataclass
class Report:
    when: dt.datetime
    tags: set[str]
    blob: bytes


def test_non_json_results_are_converted_and_raw_ones_kept(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    report = Report(when, {"b", "a"}, b"\x00" * 10)

    def weird(ctx: AgentContext) -> Any:
        return {"report": report, "obj": object()}

    run = engine.submit(Workflow("J", [Agent("w", weird)]))
    run.wait(10)
    check_events(events)
    result = next(e for e in events if e["type"] == "agent:completed")["data"]["result"]
    assert result["report"] == {
        "when": "2026-01-01T00:00:00+00:00",
        "tags": ["a", "b"],
        "blob": "<bytes: 10 bytes>",
    }
    assert result["obj"].startswith("<object: <object object at")
    assert events[-1]["data"]["results"]["w"] == result
    assert run.result["w"]["report"] is report  # the handle keeps the Python objects


def test_oversized_results_are_truncated_in_the_event_itself(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    run = engine.submit(
        Workflow(
            "Big",
            [Agent("big", lambda ctx: "x" * (2 * MAX_EVENT_BYTES)), Agent("small", lambda ctx: 7)],
        )
    )
    run.wait(10)
    check_events(events)
    done = next(
        e for e in events if e["type"] == "agent:completed" and e["data"]["agentId"] == "big"
    )
    assert done["data"]["truncated"] is True
    assert done["data"]["result"].startswith("<truncated: ")
    final = events[-1]
    assert final["type"] == "execution:completed"
    assert final["data"]["results"]["small"] == 7
    for event in events:
        _, payload = encode_event(event)
        assert len(payload) <= MAX_EVENT_BYTES
        # the wire codec had nothing left to cut: what is sent is the event as emitted
        assert b'"truncated":true' not in payload or event["data"].get("truncated") is True
    assert len(run.result["big"]) == 2 * MAX_EVENT_BYTES


def test_many_executions_at_once_have_separate_complete_seq_ranges(
    engine: WorkflowEngine, events: list[dict[str, Any]]
) -> None:
    runs = [
        engine.submit(
            {
                "name": f"W{i}",
                "agents": [
                    {
                        "id": "w",
                        "uses": "zmqmon.demo:work",
                        "params": {"seconds": 0.01, "steps": 3},
                    },
                    {"id": "e", "uses": "tests.services.executor.agents:echo", "dependsOn": ["w"]},
                ],
            }
        )
        for i in range(20)
    ]
    for run in runs:
        assert run.wait(20).status == "completed"
    for run in runs:
        own = [e for e in events if e["executionId"] == run.id]
        assert own == run.events
        check_events(own)


def test_close_cancels_what_runs(events: list[dict[str, Any]]) -> None:
    engine = WorkflowEngine(EventEmitter(events.append))
    run = engine.submit(
        {
            "name": "Long",
            "agents": [{"id": "w", "uses": "zmqmon.demo:work", "params": {"seconds": 60}}],
        }
    )
    wait_for(lambda: any(e["type"] == "agent:started" for e in events))
    engine.close()
    assert run.status == "cancelled"
    assert check_events(events).status == "cancelled"
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit({"name": "X", "agents": [{"id": "a", "uses": "zmqmon.demo:work"}]})


@pytest.mark.parametrize(
    ("uses", "error_type"),
    [
        ("tests.services.executor.agents:exit_now", "SystemExit"),
        ("tests.services.executor.agents:interrupt", "KeyboardInterrupt"),
        ("tests.services.executor.agents:abort", "Abort"),
        ("tests.services.executor.agents:exit_async", "SystemExit"),
        ("tests.services.executor.agents:unprintable", "_Unprintable"),
        ("sys:exit", "SystemExit"),
    ],
)
def test_whatever_an_agent_raises_fails_it_and_the_engine_goes_on(
    engine: WorkflowEngine, events: list[dict[str, Any]], uses: str, error_type: str
) -> None:
    handle = engine.submit({"name": "Bad", "agents": [{"id": "bad", "uses": uses}]})
    assert handle.join(10) == "failed"
    check_events(handle.events)
    failed = next(e for e in handle.events if e["type"] == "agent:failed")
    assert failed["data"]["errorType"] == error_type and failed["data"]["error"]
    assert handle.events[-1]["type"] == "execution:failed"
    assert handle.events[-1]["data"]["errorType"] == error_type
    # The loop and the thread pool still serve: sync and async agents alike.
    after = engine.submit(
        {"name": "After", "agents": [
            {"id": "s", "uses": "tests.services.executor.agents:echo"},
            {"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0, "steps": 1}},
        ]}
    )  # fmt: skip
    assert after.join(10) == "completed"


@pytest.mark.parametrize("give_up", ["timeout", "cancel"])
def test_stuck_sync_agents_given_up_on_do_not_starve_later_ones(
    events: list[dict[str, Any]], give_up: str
) -> None:
    release = threading.Event()
    inside = threading.Semaphore(0)

    def stuck(ctx: AgentContext) -> None:  # ignores cancellation
        inside.release()
        release.wait(60)

    engine = WorkflowEngine(EventEmitter(events.append), max_workers=2, progress_interval=0)
    try:
        timeout = 0.1 if give_up == "timeout" else None
        runs = [
            engine.submit(Workflow(f"S{i}", [Agent("s", stuck, timeout_seconds=timeout)]))
            for i in range(2)
        ]
        for _ in runs:  # both slots taken by agents that will not return
            assert inside.acquire(timeout=10)
        if give_up == "cancel":
            for run in runs:
                run.cancel("stuck")
        assert [run.join(10) for run in runs] == (
            ["failed", "failed"] if give_up == "timeout" else ["cancelled", "cancelled"]
        )
        # Their threads still run, but no longer hold the two slots: later sync agents run.
        later = engine.submit(Workflow("Later", [Agent("a", noop), Agent("b", noop)]))
        assert later.join(10) == "completed"
        assert engine.threads.abandoned == 2 and engine.threads.running == 0
        n = len(events)
    finally:
        release.set()
        engine.close()
    wait_for(lambda: engine.threads.abandoned == 0)
    assert len(events) == n  # what the stuck agents returned at last was dropped


def test_a_bare_engine_keeps_the_last_events_and_an_exact_state(
    events: list[dict[str, Any]],
) -> None:
    def chatty(ctx: AgentContext) -> None:
        for i in range(1, 21):
            ctx.progress(i * 5)

    engine = WorkflowEngine(
        EventEmitter(events.append), progress_interval=0, max_events_in_memory=4
    )
    try:
        run = engine.submit(Workflow("Chatty", [Agent("c", chatty)]))
        state = run.wait(10)
    finally:
        engine.close()
    assert len(events) > 20
    kept = run.events  # no store to read older ones from: the last 4, plus 2 for its one agent
    assert kept == events[-6:] and run.events_after(len(events) - 2) == events[-2:]
    assert state == check_events(events)  # the state is still that of every event
    assert state.status == "completed" and state.agents[0].progress == 100


def test_the_memory_bound_follows_the_workflows_size_not_its_length(
    events: list[dict[str, Any]],
) -> None:
    # Two events per agent on top of the cap: a large fan-out's lifecycle stays in memory (and
    # is not folded into the state event by event), while a long stream of progress is cut.
    engine = WorkflowEngine(EventEmitter(events.append), max_events_in_memory=3)
    try:
        small = engine.submit(Workflow("Fan", [Agent(f"a{i}", noop) for i in range(30)]))
        small.wait(10)
        assert len(events) > 3 + 60  # execution:started, 60 agent events, progress, the end
        assert small.events == events[-(3 + 60) :]
        events.clear()
        engine.max_events_in_memory = 1000
        large = engine.submit(Workflow("Fan", [Agent(f"a{i}", noop) for i in range(600)]))
        state = large.wait(30)
    finally:
        engine.close()
    assert len(events) > 1000  # more than the cap, and all of them kept
    assert large.events == events and large._record.evicted == 0
    assert state == check_events(events)
