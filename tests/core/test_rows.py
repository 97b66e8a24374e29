"""KeyedRows, the persistent vector behind ``ExecutionState.agents``: behaves as a list would,
old versions never change, and one change copies a path, not the rows (structural checks: no
timings in tests — the benchmark measures those)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from zmqmon.core.events import parse_event
from zmqmon.core.rows import KeyedRows
from zmqmon.core.state import ExecutionState, apply_event


@dataclass(frozen=True)
class Row:
    key: str
    value: int = 0


def key(row: Row) -> str:
    return row.key


def test_an_empty_and_a_built_vector_read_like_lists() -> None:
    empty = KeyedRows.from_rows([], key)
    assert len(empty) == 0 and list(empty) == [] and empty == [] and empty.position("x") is None
    for n in (1, 31, 32, 33, 1024, 1025, 33_000):
        rows = [Row(f"k{i}", i) for i in range(n)]
        vec = KeyedRows.from_rows(rows, key)
        assert len(vec) == n and vec == rows and list(vec) == rows
        for i in {0, n // 2, n - 1}:
            assert vec[i] == rows[i] and vec[i - n] == rows[i] and vec.position(f"k{i}") == i
        assert vec[1:3] == rows[1:3]
        with pytest.raises(IndexError):
            vec[n]


def test_random_operations_match_a_list_and_old_versions_never_change() -> None:
    rng = random.Random(5)
    versions: list[tuple[KeyedRows[Row], list[Row]]] = [(KeyedRows.from_rows([], key), [])]
    for step in range(3000):
        # Mostly extend the newest version; sometimes branch off an older one (the reducer is
        # pure: a caller may apply events to any state it kept).
        vec, model = versions[-1] if rng.random() < 0.8 else rng.choice(versions)
        if model and rng.random() < 0.6:
            i = rng.randrange(len(model))
            new_row = Row(model[i].key, step)
            vec, model = vec.replace(i, new_row), [*model[:i], new_row, *model[i + 1 :]]
        else:
            new_row = Row(f"n{step}", step)
            vec, model = vec.append(new_row), [*model, new_row]
        versions.append((vec, model))
    for vec, model in versions:
        assert vec == model and len(vec) == len(model)
        for i in rng.sample(range(len(model)), min(5, len(model))):
            assert vec.position(model[i].key) == i and vec.get(model[i].key) == model[i]
        assert vec.position("absent") is None


def test_two_branches_appending_at_the_same_position_keep_their_own_rows() -> None:
    base = KeyedRows.from_rows([Row("a"), Row("b")], key)
    left = base.append(Row("x"))
    right = base.append(Row("y"))  # base is no longer the tip: right gets its own index
    assert (left.position("x"), left.position("y")) == (2, None)
    assert (right.position("y"), right.position("x")) == (2, None)
    assert left.append(Row("z")).position("z") == 3 and right.position("z") is None
    assert base.position("x") is None and len(base) == 2


def test_one_change_copies_a_path_and_shares_every_other_leaf() -> None:
    n = 20_000
    vec = KeyedRows.from_rows([Row(f"k{i}") for i in range(n)], key)
    changed = vec.replace(12_345, Row("k12345", 1))
    old_leaves, new_leaves = list(vec._leaves()), list(changed._leaves())
    assert len(old_leaves) == len(new_leaves) == (n + 31) // 32
    shared = sum(a is b for a, b in zip(old_leaves, new_leaves, strict=True))
    assert shared == len(old_leaves) - 1  # only the changed row's leaf is new
    for size in (n, n + 1):  # a full last leaf (20,000 = 625 x 32) and a partial one
        vec = KeyedRows.from_rows([Row(f"k{i}") for i in range(size)], key)
        appended = vec.append(Row("new"))
        leaves = list(vec._leaves())
        shared = sum(a is b for a, b in zip(leaves, appended._leaves(), strict=False))
        assert shared >= len(leaves) - 1  # at most the last leaf is rebuilt


def _event(seq: int, kind: str, data: dict[str, object]) -> dict[str, object]:
    return {"type": kind, "executionId": "e", "workflowId": "w", "seq": seq,
            "timestamp": "2026-11-25T10:00:00.000Z", "data": data}  # fmt: skip


def test_an_agent_event_on_a_20000_agent_state_does_not_copy_the_rows() -> None:
    n = 20_000
    agents = [{"agentId": f"a{i}", "agentName": f"A{i}", "dependsOn": []} for i in range(n)]
    data = {"workflowName": "Big", "agentCount": n, "userId": None, "agents": agents}
    state = apply_event(None, parse_event(_event(1, "execution:started", data)))
    assert isinstance(state, ExecutionState) and len(state.agents) == n
    seq = 2
    for agent_id, kind, data in (
        ("a19999", "agent:started", {}),
        ("a7", "agent:progress", {"progress": 50, "message": None}),
        ("a10000", "agent:completed", {"result": 1, "durationMs": 3}),
        ("late", "agent:started", {}),  # an agent no event announced: appended
    ):
        event = parse_event(_event(seq, kind, {"agentId": agent_id, "agentName": agent_id, **data}))
        after = apply_event(state, event)
        seq += 1
        old_leaves, new_leaves = list(state.agents._leaves()), list(after.agents._leaves())
        shared = sum(a is b for a, b in zip(old_leaves, new_leaves, strict=False))
        assert shared >= len(old_leaves) - 1, kind  # at most one leaf of 32 rebuilt, not 20,000
        assert after.agent(agent_id) is not None and state.agent("late") is None
        # the wire form is still the contract's plain list, in order
        assert [a["agentId"] for a in after.to_json_dict()["agents"][:2]] == ["a0", "a1"]
        state = after
    assert state.agent("a7").progress == 50  # type: ignore[union-attr]
    assert ExecutionState.model_validate(state.to_json_dict()) == state
