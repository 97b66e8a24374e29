"""Hypothesis strategies for hostile input: JSON of every shape, objects that look almost right,
and bytes that are not JSON at all. Shared by the property tests of every parser that takes
outside input (the profile that bounds them is in tests/conftest.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import strategies as st


@contextmanager
def no_logged_errors() -> Iterator[None]:
    """Fail if anything logs an ERROR or a traceback meanwhile: caplog's check, usable inside a
    ``@given`` test (hypothesis refuses function-scoped fixtures there)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:  # checked whether the code under test returned or raised
        root.removeHandler(handler)
        bad = [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
        assert not bad, [r.getMessage() for r in bad]


#: integers around the edges that matter: 0, negatives, SQLite's 2**63 - 1 and past it
edgy_ints = st.one_of(
    st.integers(min_value=-3, max_value=3),
    st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    edgy_ints,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)

#: any JSON value, nested a little
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=10,
)


def objects(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with some of ``fields`` — each mostly from its strategy, sometimes any JSON
    value at all — and now and then an unknown key: the shapes a parser meets when input is
    nearly right."""
    optional = {
        name: st.one_of(strategy, strategy, strategy, json_values)
        for name, strategy in fields.items()
    }
    known = st.fixed_dictionaries({}, optional=optional)
    unknown = st.one_of(
        st.just({}), st.just({}), st.just({}), st.dictionaries(st.text(max_size=8), json_values,
                                                                min_size=1, max_size=1)
    )  # fmt: skip
    return st.tuples(known, unknown).map(lambda pair: {**pair[1], **pair[0]})


def _garble(data: bytes, cut: int, flip: int) -> bytes:
    if not data:
        return data
    cut %= len(data) + 1
    head = bytearray(data[:cut])
    if head:
        head[flip % len(head)] ^= 0x5A
    return bytes(head)


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Frames a peer may send: mostly the JSON of ``values``; else that JSON cut short or with a
    byte flipped, or arbitrary bytes."""
    as_json = values.map(lambda v: json.dumps(v).encode())
    garbled = st.builds(_garble, as_json, st.integers(min_value=0), st.integers(min_value=0))
    return st.one_of(as_json, as_json, as_json, garbled, st.binary(max_size=64))


_IDENT = st.from_regex(r"\A[a-z][a-z0-9_.-]{0,5}\Z")

#: agent entries of workflow definitions, nearly right (``uses`` mostly refused by a service)
AGENTS = objects(
    {
        "id": st.one_of(_IDENT, st.text(max_size=4)),
        "name": st.text(max_size=6),
        "uses": st.sampled_from(
            ["zmqmon.demo:work", "zmqmon.demo:fail", "m:f", "sys:exit", "zmqmon.demo:__dict__",
             "zmqmon.demo:asyncio.sleep", "venv.__main__:main", "no colon", ":"]
        ),
        "params": st.one_of(
            st.fixed_dictionaries({}, optional={"seconds": st.floats(0, 0.05), "steps": edgy_ints}),
            json_values,
        ),
        "dependsOn": st.one_of(st.just([]), st.lists(st.one_of(_IDENT, json_values), max_size=2)),
        "timeoutSeconds": st.one_of(st.floats(allow_nan=False), edgy_ints),
    }
)  # fmt: skip


def _good_workflow(ids: list[str], draw_deps: list[list[bool]], uses: list[str]) -> dict[str, Any]:
    agents = []
    for n, agent_id in enumerate(ids):
        deps = [ids[k] for k in range(n) if draw_deps[n][k]]
        agents.append({"id": agent_id, "uses": uses[n], "dependsOn": deps,
                       "params": {"seconds": 0, "steps": 1}})  # fmt: skip
    return {"name": "W", "agents": agents}


#: valid definitions (a DAG of demo agents that finish at once), so the happy path is fuzzed too
GOOD_WORKFLOWS = st.lists(_IDENT, min_size=1, max_size=4, unique=True).flatmap(
    lambda ids: st.builds(
        _good_workflow,
        st.just(ids),
        st.lists(st.lists(st.booleans(), min_size=len(ids), max_size=len(ids)),
                 min_size=len(ids), max_size=len(ids)),
        st.lists(st.sampled_from(["zmqmon.demo:work", "zmqmon.demo:fail"]),
                 min_size=len(ids), max_size=len(ids)),
    )
)  # fmt: skip

#: workflow definitions: valid ones, and nearly right ones
WORKFLOWS = st.one_of(
    GOOD_WORKFLOWS,
    objects(
        {
            "name": st.text(max_size=8),
            "description": st.text(max_size=8),
            "agents": st.lists(AGENTS, max_size=4),
        }
    ),
)

_REQUEST_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.one_of(st.text(max_size=6), edgy_ints),
    "executionId": st.text(max_size=8),
    "workflowId": st.text(max_size=8),
    "afterSeq": st.one_of(st.integers(0, 50), edgy_ints),
    "limit": st.one_of(st.integers(1, 2000), edgy_ints),
    "status": st.sampled_from(["running", "completed", "sleeping"]),
    "workflow": WORKFLOWS,
    "inputs": st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    "userId": st.text(max_size=6),
    "reason": st.text(max_size=6),
}
_OP_FIELDS = [
    ("ping", []),
    ("snapshot", ["executionId"]),
    ("events", ["executionId", "afterSeq", "limit"]),
    ("executions", ["status", "workflowId", "limit"]),
    ("create_workflow", ["workflow"]),
    ("workflows", ["limit"]),
    ("execute", ["workflow", "inputs", "userId"]),
    ("execute", ["workflowId", "inputs", "userId"]),
    ("cancel", ["executionId", "reason"]),
]


def _request(op: str, names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {name: _REQUEST_FIELDS[name] for name in ["id", *names]}
    return objects(fields).map(lambda body: {"op": op, **body})


def requests_for(*ops: str) -> st.SearchStrategy[dict[str, Any]]:
    """Requests of these ops only, each with its own fields (good and bad values)."""
    return st.one_of(*(_request(op, names) for op, names in _OP_FIELDS if op in ops))


#: state-service requests: each op with its own fields (good and bad values), or anything at all
REQUESTS = st.one_of(
    requests_for(*(op for op, _ in _OP_FIELDS)),
    objects({"op": st.sampled_from(["launch", "", "PING"]), **_REQUEST_FIELDS}),
)
