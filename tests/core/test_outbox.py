"""The reporter's outbox (zmqmon.track): bounded, coalescing, once and in order."""

from __future__ import annotations

from typing import Any

from zmqmon.core.outbox import Outbox


def ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "data": data, "timestamp": None}


def test_batches_are_numbered_and_resent_until_acked() -> None:
    box = Outbox(batch_size=2)
    for i in range(3):
        box.add(ev("agent:started", agentId=f"a{i}", agentName="A"))
    first = box.take()
    assert first is not None and first[0] == 1 and len(first[1]) == 2
    assert box.take() == first  # not acked: the same batch, the same number
    box.acked(1)
    second = box.take()
    assert second is not None and second[0] == 2 and len(second[1]) == 1
    box.acked(2)
    assert box.take() is None and box.idle
    assert box.keepalive() == (3, [])  # an empty batch says "still here"


def test_progress_is_coalesced_per_agent_while_it_waits() -> None:
    box = Outbox()
    box.add(ev("agent:started", agentId="a", agentName="A"))
    for p in range(100):
        box.add(ev("agent:progress", agentId="a", agentName="A", progress=p, message=None))
        box.add(ev("execution:progress", progress=p, currentAgent="a"))
    box.add(ev("agent:started", agentId="b", agentName="B"))
    box.add(ev("agent:progress", agentId="b", agentName="B", progress=5, message=None))
    batch = box.take()
    assert batch is not None
    kinds = [(e["type"], e["data"].get("agentId"), e["data"].get("progress")) for e in batch[1]]
    assert kinds == [
        ("agent:started", "a", None),
        ("agent:progress", "a", 99),
        ("execution:progress", None, 99),
        ("agent:started", "b", None),
        ("agent:progress", "b", 5),
    ]
    # a taken (in-flight) progress event is never changed: later progress waits behind it
    box.add(ev("agent:progress", agentId="b", agentName="B", progress=6, message=None))
    assert box.take() == batch
    box.acked(batch[0])
    nxt = box.take()
    assert nxt is not None and [e["data"]["progress"] for e in nxt[1]] == [6]


def test_progress_after_an_agents_end_is_not_merged_before_it() -> None:
    box = Outbox()
    box.add(ev("agent:progress", agentId="a", agentName="A", progress=50, message=None))
    box.add(ev("agent:completed", agentId="a", agentName="A", result=None, durationMs=1))
    box.add(ev("agent:progress", agentId="a", agentName="A", progress=100, message=None))
    batch = box.take()
    assert batch is not None
    assert [e["type"] for e in batch[1]] == ["agent:progress", "agent:completed", "agent:progress"]


def test_bounded_drops_are_counted_and_the_terminal_event_always_gets_in() -> None:
    box = Outbox(capacity=3)
    for i in range(10):
        box.add(ev("agent:started", agentId=f"a{i}", agentName="A"))
    assert box.pending == 3 and box.dropped == 7
    assert box.add(ev("execution:completed", durationMs=1, results={}))
    assert box.pending == 4 and box.ended
    assert not box.add(ev("agent:started", agentId="late", agentName="L"))  # nothing after it
    assert box.abandon() == 4 and box.idle


def test_batches_stop_at_their_byte_budget() -> None:
    box = Outbox(batch_bytes=10, size=lambda item: 4)
    for i in range(5):
        box.add(ev("agent:started", agentId=f"a{i}", agentName="A"))
    batch = box.take()
    assert batch is not None and len(batch[1]) == 2
