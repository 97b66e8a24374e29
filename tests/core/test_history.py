"""Replay by seq in Python (core/history.py): the state at any seq is the reducer's fold."""

from __future__ import annotations

import pytest

from tests.layout_cases import T0, fan_out_in, run_events, stamp
from zmqmon.core.events import Event, parse_event
from zmqmon.core.history import History
from zmqmon.core.state import replay
from zmqmon.core.timeline import timestamp_ms

EVENTS: list[Event] = [
    parse_event(e) for e in run_events(fan_out_in(6), {}, progress_steps=9)
]  # 8 agents × 11 + 2 = 90 events


@pytest.mark.parametrize("checkpoint", [1, 7, 256])
def test_state_at_every_seq_is_the_fold_of_the_events_up_to_it(checkpoint: int) -> None:
    history = History(checkpoint)
    assert history.extend(EVENTS) == len(EVENTS)
    assert (history.first_seq, history.last_seq) == (1, len(EVENTS))
    assert history.state_at(0) is None
    for seq in range(1, len(EVENTS) + 3):
        assert history.state_at(seq) == replay(EVENTS[:seq]), seq


def test_extending_in_pages_ignores_what_it_holds_and_keeps_answering() -> None:
    history = History(checkpoint=10)
    for start in range(0, len(EVENTS), 25):
        page = EVENTS[max(0, start - 5) : start + 25]  # overlapping pages
        history.extend(page)
        assert history.state_at(history.last_seq) == replay(EVENTS[: history.last_seq])
        assert history.state_at(start // 2 + 1) == replay(EVENTS[: start // 2 + 1])
    assert [e.seq for e in history.events] == list(range(1, len(EVENTS) + 1))


def test_a_gap_is_folded_as_the_reducer_folds_it() -> None:
    holed = EVENTS[:30] + EVENTS[40:]
    history = History(checkpoint=8)
    history.extend(holed)
    assert history.state_at(35) == replay(EVENTS[:30])  # nothing between 31 and 40
    assert history.state_at(60) == replay(holed[:50])


def test_time_and_log_at_a_seq() -> None:
    history = History()
    history.extend(EVENTS)
    assert history.time_at(0) is None
    assert history.time_at(1) == timestamp_ms(stamp(0)) == int(T0.timestamp() * 1000)
    assert history.time_at(50) == timestamp_ms(EVENTS[49].timestamp)
    assert [e.seq for e in history.events_upto(50, 5)] == [46, 47, 48, 49, 50]
    assert [e.seq for e in history.events_upto(2, 5)] == [1, 2]


def test_checkpoint_must_be_positive() -> None:
    with pytest.raises(ValueError):
        History(0)
