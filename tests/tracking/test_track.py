"""``zmqmon.track`` in-process: agents as blocks, decorators and iterators, threads, tqdm, the
embedded service, cancellation, a reporter that cannot forge or that goes silent, no service."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from typing import Any

import pytest
import tqdm as tqdm_module
import zmq
from tqdm import tqdm  # imported before any run, as a library would

import zmqmon
from tests.conftest import free_port, wait_for
from zmqmon.errors import ExecutionCancelledError
from zmqmon.shells.client import StateClient

pytestmark = pytest.mark.timeout(60)


def bar(iterable: Any = None, **kwargs: Any) -> Any:
    return tqdm(iterable, file=io.StringIO(), mininterval=0, **kwargs)


def final_state(run: zmqmon.tracking.Run) -> Any:
    assert run.flush(10)
    return run.state


def test_blocks_decorators_iterators_and_results(server: Any) -> None:
    state = server.endpoints["state"]
    with zmqmon.track("Shapes", state=state, user_id="ann") as run:

        @run.agent("square")
        def square(x: int) -> int:
            return x * x

        @run.agent("fetch", name="Fetcher")
        async def fetch() -> dict[str, str]:
            await asyncio.sleep(0)
            return {"ok": "yes"}

        assert square(3) == 9 and square(4) == 16  # two agents: square, square-2
        assert asyncio.run(fetch()) == {"ok": "yes"}
        for _ in run.agent("walk").iter(iter(range(10)), total=10):  # started and ended by iter
            pass
        with run.agent("manual") as manual:
            manual.progress(40, "almost")
            manual.result = [1, 2]
        run.agent("left-open").progress(10)  # completed with the run
    st = final_state(run)
    assert st.status == "completed" and st.user_id == "ann"
    rows = {a.agent_id: (a.agent_name, a.status, a.progress) for a in st.agents}
    assert rows == {
        "square": ("square", "completed", 100),
        "square-2": ("square", "completed", 100),
        "fetch": ("Fetcher", "completed", 100),
        "walk": ("walk", "completed", 100),
        "manual": ("manual", "completed", 100),
        "left-open": ("left-open", "completed", 100),
    }
    completed = run.events[-1]
    assert completed["type"] == "execution:completed"
    assert completed["data"]["results"]["square-2"] == 16
    assert completed["data"]["results"]["manual"] == [1, 2]
    messages = [
        e["data"]["message"]
        for e in run.events
        if e["data"].get("agentId") == "walk" and e["type"] == "agent:progress"
    ]
    assert messages[-1] == "10/10"


def test_an_exception_fails_the_agent_and_the_run_and_is_reraised(server: Any) -> None:
    run = zmqmon.track("Fails", state=server.endpoints["state"])
    with pytest.raises(ZeroDivisionError), run, run.agent("divide"):
        _ = 1 / 0
    events = final_state(run) and run.events
    failed = [e for e in events if e["type"] == "agent:failed"]
    assert failed[0]["data"]["errorType"] == "ZeroDivisionError"
    assert events[-1]["type"] == "execution:failed"
    assert events[-1]["data"] | {"durationMs": 0} == {
        "error": "agent 'divide' failed: division by zero",
        "errorType": "ZeroDivisionError",
        "agentId": "divide",
        "durationMs": 0,
    }
    # an exception outside any agent fails the run alone
    run2 = zmqmon.track("Fails too", state=server.endpoints["state"])
    with pytest.raises(KeyError), run2:
        raise KeyError("k")
    last = final_state(run2) and run2.events[-1]
    assert last["data"]["errorType"] == "KeyError" and last["data"]["agentId"] is None


def test_agents_in_several_threads_at_once(server: Any) -> None:
    with zmqmon.track("Threads", state=server.endpoints["state"]) as run:
        barrier = threading.Barrier(4)

        def work(i: int) -> None:
            with run.agent(f"t{i}") as agent:
                barrier.wait(10)  # all four running at once
                for _ in agent.iter(range(5000)):
                    pass

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    st = final_state(run)
    assert sorted((a.agent_id, a.status) for a in st.agents) == [
        (f"t{i}", "completed") for i in range(4)
    ]
    seqs = [e["seq"] for e in run.events]
    assert seqs == list(range(1, len(seqs) + 1))
    started = [e["seq"] for e in run.events if e["type"] == "agent:started"]
    ended = [e["seq"] for e in run.events if e["type"] == "agent:completed"]
    assert max(started) < min(ended)  # they overlapped


def test_tqdm_bars_report_while_a_run_is_active(server: Any) -> None:
    original = tqdm_module.std.tqdm.update
    for _ in bar(range(3)):  # no run: nothing happens, nothing breaks
        pass
    with zmqmon.track("Tqdm", state=server.endpoints["state"]) as run:
        assert tqdm_module.std.tqdm.update is not original  # wrapped while the run is active
        with run.agent("train"):
            for _ in bar(range(4), desc="epochs"):
                for _ in bar(range(3), desc="batches"):  # nested: leaves the agent alone
                    pass
        for _ in bar(range(5), desc="eval set"):  # outside an agent: an agent of its own
            pass
        manual = bar(total=10, desc="download")
        manual.update(4)
        manual.close()
        for _ in bar(range(3), disable=True):  # disabled: nothing
            pass
        for _ in zmqmon.track.tqdm(range(2), file=io.StringIO(), desc="explicit"):
            pass
    assert tqdm_module.std.tqdm.update is original or zmqmon.track.tqdm is not None
    st = final_state(run)
    rows = {a.agent_id: (a.agent_name, a.status) for a in st.agents}
    assert rows == {
        "train": ("train", "completed"),
        "eval-set": ("eval set", "completed"),
        "download": ("download", "completed"),
        "explicit": ("explicit", "completed"),
    }
    train = [
        e["data"]
        for e in run.events
        if e["type"] == "agent:progress" and e["data"]["agentId"] == "train"
    ]
    assert train[-1]["message"] == "4/4" and train[-1]["progress"] == 100
    assert all("/4" in d["message"] for d in train[1:])  # the epochs bar, never the batches
    download = [
        e["data"]
        for e in run.events
        if e["type"] == "agent:progress" and e["data"]["agentId"] == "download"
    ]
    assert download[-1]["progress"] == 40


def test_the_embedded_service_and_reading_back(tmp_path: Any) -> None:
    with zmqmon.track("Embedded", agents=["a"]) as run:
        assert run.endpoints is not None  # watchable: zmqmon.monitor(run), the notebook view
        with run.agent("a") as a:
            a.progress(50)
    st = final_state(run)
    assert st.status == "completed" and st.workflow_name == "Embedded"
    events = zmqmon.records(run)
    assert [r["seq"] for r in events] == list(range(1, len(events) + 1))
    assert zmqmon.records(run, "agents")[0]["agentId"] == "a"
    assert zmqmon.records(run, "executions")[0]["status"] == "completed"


def test_a_cancel_from_the_service_reaches_the_run(server: Any) -> None:
    state = server.endpoints["state"]
    run = zmqmon.track("Cancelled", state=state)
    with run, run.agent("loop") as loop:
        loop.progress(1)
        with StateClient(state) as client:
            wait_for(lambda: run._reporter.last_seq >= 2, message="reported")
            client.cancel(run.id, "stop it")
        wait_for(lambda: run.cancelled, message="the run learned it")  # at its next report
        with pytest.raises(ExecutionCancelledError):
            run.check_cancelled()
    with StateClient(state) as client:
        st = client.snapshot(run.id)
        events, _ = client.events(run.id)
    assert st.status == "cancelled"
    assert events[-1].type == "execution:cancelled"  # nothing the run sent after it


def dealer(endpoint: str) -> Any:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def ask(sock: Any, **request: Any) -> dict[str, Any]:
    sock.send(json.dumps({"op": "report", "workflowId": "w", **request}).encode())
    assert sock.poll(5000)
    return dict(json.loads(sock.recv()))


def test_a_reporter_cannot_report_for_an_execution_it_did_not_open(server: Any) -> None:
    state = server.endpoints["state"]
    with zmqmon.track("Mine", state=state) as run, run.agent("a"):
        pass
    mine = len(final_state(run) and run.events)
    sock = dealer(state)
    forged = {
        "type": "execution:failed",
        "data": {"error": "forged", "errorType": "X", "agentId": None},
    }
    reply = ask(sock, executionId=run.id, key="forged-key-0123456789", batch=99, events=[forged])
    assert reply.get("error", {}).get("code") == "conflict", reply
    handle = server.submit(
        {
            "name": "Wf",
            "agents": [
                {"id": "a", "uses": "zmqmon.demo:work", "params": {"seconds": 0, "steps": 1}}
            ],
        }
    )
    handle.wait(20)
    started = {"type": "execution:started", "data": {"workflowName": "x", "agentCount": 0}}
    for events in ([started], [forged]):
        reply = ask(sock, executionId=handle.id, key="k" * 20, batch=1, events=events)
        assert reply["error"]["code"] == "conflict"
    sock.close(0)
    assert len(run.events) == mine and handle.state.status == "completed"


def test_a_silent_reporter_is_failed_as_lost(server: Any) -> None:
    server.service.reports.lost_after = 0.3
    sock = dealer(server.endpoints["state"])
    started = {"type": "execution:started", "data": {"workflowName": "Gone", "agentCount": 0}}
    assert ask(sock, executionId="gone-1", key="k" * 20, batch=1, events=[started])["ok"]
    sock.close(0)
    with StateClient(server.endpoints["state"]) as client:
        wait_for(lambda: client.snapshot("gone-1").status == "failed", message="given up")
        events, _ = client.events("gone-1")
    assert events[-1].data.error_type == "ReporterLost"  # type: ignore[union-attr]


def test_without_a_service_nothing_blocks_or_raises_and_drops_are_counted() -> None:
    nobody = f"tcp://127.0.0.1:{free_port()}"
    with zmqmon.track("Alone", state=nobody, capacity=20) as run:
        for i in range(200):
            with run.agent(f"a{i}") as agent:
                for _ in agent.iter(range(100)):
                    pass
    assert run.finished and run.dropped > 0
    assert not run.flush(0.2)  # still waiting for a service; the program went on
