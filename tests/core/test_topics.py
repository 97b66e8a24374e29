"""Topic-prefix matching: every kind of prefix, against a brute-force ``startswith``."""

from __future__ import annotations

import random

from zmqmon.core.topics import TopicIndex

TYPES = ["execution:started", "agent:progress", "agent:completed", "execution:completed"]


def test_each_kind_of_prefix_matches_what_startswith_would() -> None:
    rng = random.Random(3)
    ids = ["abc1", "abc2", "abd", "zz"]
    prefixes = [
        "exec/",
        "ex",
        "exec/abc",
        "exec/abc1/",
        "exec/abc1/agent:",
        "exec/zz/execution:completed",
        "sys/",
        "exec/abd/agent:progress",
    ]
    for _ in range(50):
        held = rng.sample(prefixes, rng.randint(0, len(prefixes)))
        index: TopicIndex[str] = TopicIndex()
        for p in held:
            index.set(p, p)
        for p in rng.sample(held, len(held) // 2):  # and some dropped again
            assert index.remove(p) == p
            held.remove(p)
        assert len(index) == len(held)
        for eid in ids:
            for t in TYPES:
                topic = f"exec/{eid}/{t}"
                expected = sorted(p for p in held if topic.startswith(p))
                assert sorted(index.match(eid, t)) == expected
                assert index.matches(eid, t) == bool(expected)
            assert index.may_select(eid) == any(
                f"exec/{eid}/{t}".startswith(p) for p in held for t in TYPES
            ) or any(p.startswith(f"exec/{eid}/") for p in held)


def test_execution_of_names_the_one_execution_a_prefix_selects() -> None:
    assert TopicIndex.execution_of("exec/x/") == "x"
    assert TopicIndex.execution_of("exec/x/agent:") == "x"
    assert TopicIndex.execution_of("exec/") is None
    assert TopicIndex.execution_of("exec/x") is None  # a partial id: many
    assert TopicIndex.execution_of("sys/heartbeat") is None
    index: TopicIndex[int] = TopicIndex()
    assert index.remove("exec/nothing/") is None
    index.set("exec/x/", 1)
    index.set("exec/x/", 2)  # replaced, not added twice
    assert index.get("exec/x/") == 2 and len(index) == 1 and "exec/x/" in index
