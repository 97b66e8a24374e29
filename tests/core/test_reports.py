"""The service's book of reported executions: who may report, once only, in order, lost ones."""

from __future__ import annotations

from typing import Any

import pytest

from zmqmon.core.reports import ReportBook
from zmqmon.core.requests import ReportRequest
from zmqmon.errors import BadRequestError, ConflictError, NotFoundError

KEY = "k" * 32
STARTED = {
    "type": "execution:started",
    "data": {"workflowName": "Run", "agentCount": 0, "userId": None},
}


def report(batch: int, *events: dict[str, Any], key: str = KEY, eid: str = "e1") -> ReportRequest:
    return ReportRequest.model_validate(
        {
            "op": "report",
            "executionId": eid,
            "workflowId": "track-x",
            "key": key,
            "batch": batch,
            "events": list(events),
        }
    )


def agent(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": {"agentId": "a", "agentName": "A", **data}}


def never(eid: str) -> bool:
    return False


def test_a_reporter_opens_an_execution_and_only_it_may_add_to_it() -> None:
    book = ReportBook()
    first = book.accept(report(1, STARTED, agent("agent:started")), 0.0, never)
    assert [e.type for e in first.events] == ["execution:started", "agent:started"]
    assert book.is_open("e1")
    with pytest.raises(ConflictError, match="another reporter"):
        book.accept(report(2, agent("agent:progress", progress=5), key="x" * 32), 1.0, never)
    # an id the store holds (a workflow the executor ran) cannot be opened by a reporter
    with pytest.raises(ConflictError, match="taken"):
        book.accept(report(1, STARTED, eid="stored"), 0.0, lambda eid: True)
    # reporting to an execution never opened
    with pytest.raises(NotFoundError):
        book.accept(report(1, agent("agent:started"), eid="e2"), 0.0, never)
    with pytest.raises(ConflictError, match="closed"):
        book.accept(report(5, agent("agent:started"), eid="old"), 0.0, lambda eid: True)


def test_a_repeated_batch_is_acknowledged_not_applied_twice() -> None:
    book = ReportBook()
    book.accept(report(1, STARTED), 0.0, never)
    again = book.accept(report(1, STARTED), 1.0, never)
    assert again.events == () and not again.closed
    nxt = book.accept(report(2, agent("agent:started")), 1.0, never)
    assert [e.type for e in nxt.events] == ["agent:started"]


@pytest.mark.parametrize(
    "events",
    [
        [STARTED],  # a second start
        [
            {"type": "execution:completed", "data": {"durationMs": 1, "results": {}}},
            agent("agent:started"),
        ],  # something after the end
        [agent("agent:progress", progress=101)],  # not the contract's data
        [{"type": "agent:started", "data": {"agentName": "no id"}}],
    ],
)
def test_events_out_of_the_contracts_order_or_shape_are_bad_requests(
    events: list[dict[str, Any]],
) -> None:
    book = ReportBook()
    book.accept(report(1, STARTED), 0.0, never)
    with pytest.raises(BadRequestError):
        book.accept(report(2, *events), 0.0, never)


def test_the_terminal_event_closes_and_a_cancel_closes_from_outside() -> None:
    book = ReportBook()
    book.accept(report(1, STARTED), 0.0, never)
    done = book.accept(
        report(2, {"type": "execution:completed", "data": {"durationMs": 1, "results": {}}}),
        0.0,
        never,
    )
    assert len(done.events) == 1 and not book.is_open("e1")
    assert not book.accept(report(2), 0.0, never).closed  # its own end, sent again
    book.accept(report(1, STARTED, eid="e2"), 0.0, never)
    assert book.close("e2") == "track-x" and book.close("e2") is None
    late = book.accept(report(2, agent("agent:started"), eid="e2"), 0.0, never)
    assert late.closed and late.events == ()


def test_a_silent_reporter_is_given_up_and_open_executions_are_bounded() -> None:
    book = ReportBook(lost_after=10.0, max_open=2)
    book.accept(report(1, STARTED, eid="a"), 0.0, never)
    book.accept(report(1, STARTED, eid="b"), 0.0, never)
    with pytest.raises(ConflictError, match="open already"):
        book.accept(report(1, STARTED, eid="c"), 0.0, never)
    book.accept(report(2, eid="a"), 8.0, never)  # a keepalive
    assert book.sweep(12.0) == [("b", "track-x")]
    assert book.is_open("a") and not book.is_open("b")
    assert book.accept(report(2, eid="b"), 12.0, never).closed


def test_an_execution_announces_at_most_max_agents() -> None:
    book = ReportBook(max_agents=2)
    agents = [{"agentId": f"a{i}", "agentName": "A"} for i in range(3)]
    big = {
        "type": "execution:started",
        "data": {"workflowName": "Run", "agentCount": 3, "agents": agents},
    }
    with pytest.raises(BadRequestError, match="at most 2"):
        book.accept(report(1, big), 0.0, never)
