"""The progress coalescer, pure, on a fake clock."""

from __future__ import annotations

import pytest

from zmqmon.services.executor.progress import ProgressCoalescer, clamp_percent


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(interval: float) -> tuple[ProgressCoalescer, list[tuple[int, str | None]], FakeClock]:
    sent: list[tuple[int, str | None]] = []
    clock = FakeClock()
    return (
        ProgressCoalescer(lambda p, m: sent.append((p, m)), interval=interval, clock=clock),
        sent,
        clock,
    )


def test_a_million_calls_give_bounded_events_latest_wins_last_always_sent() -> None:
    c, sent, clock = make(0.05)
    n = 1_000_000
    for i in range(n):
        clock.now = i * 1e-6  # a million calls over one simulated second
        c.report(i * 100 / n, f"call {i}")
    c.flush()
    # one send per 50 ms of simulated time, plus the first and the final flush
    assert len(sent) <= 1.0 / 0.05 + 2
    assert sent[0] == (0, "call 0")
    assert sent[-1] == (99, f"call {n - 1}")  # the last value is always sent
    values = [p for p, _ in sent]
    assert values == sorted(values)


def test_held_back_value_is_the_latest_one() -> None:
    c, sent, clock = make(1.0)
    c.report(10)
    c.report(20, "b")
    c.report(30, "c")
    assert sent == [(10, None)]
    assert c.pending and c.latest == 30
    clock.now = 1.0
    c.report(40, "d")  # interval passed: the newest value goes out, not the held one
    assert sent[-1] == (40, "d")
    assert not c.pending
    c.flush()  # nothing held back: no duplicate
    assert len(sent) == 2


def test_interval_zero_sends_every_call() -> None:
    c, sent, _ = make(0)
    for i in range(1000):
        c.report(i % 101)
    assert len(sent) == 1000
    c.flush()
    assert len(sent) == 1000


@pytest.mark.parametrize(
    ("given", "expected"),
    [(-5, 0), (0, 0), (12.9, 12), (100, 100), (250, 100), (float("nan"), 0), (float("inf"), 100)],
)
def test_values_are_clamped_to_int_0_100(given: float, expected: int) -> None:
    c, sent, _ = make(0)
    c.report(given)
    assert sent == [(expected, None)]
    assert clamp_percent(given) == expected


def test_non_numbers_raise_type_error() -> None:
    c, _, _ = make(0)
    with pytest.raises(TypeError):
        c.report("50")  # type: ignore[arg-type]


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        ProgressCoalescer(lambda p, m: None, interval=-1, clock=lambda: 0.0)
