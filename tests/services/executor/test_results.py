"""Results made JSON-safe and fitted under the 1 MiB wire limit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

from zmqmon.core.wire import MAX_EVENT_BYTES, dumps
from zmqmon.services.executor.results import fit, to_json_safe


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


class Model(BaseModel):
    name: str
    tags: list[str]


class Colour(enum.Enum):
    RED = "red"


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def test_conversions() -> None:
    value = {
        "dc": Point(1, dt.date(2026, 1, 2)),
        "model": Model(name="n", tags=["a"]),
        "set": {3, 1, 2},
        "tuple": (1, "a"),
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "delta": dt.timedelta(seconds=1.5),
        "bytes": b"\x00\x01\x02",
        "enum": Colour.RED,
        "uuid": uuid.UUID(int=1),
        "path": Path("/tmp/x"),
        "decimal": Decimal("1.10"),
        "nan": float("nan"),
        "obj": Opaque(),
        "broken": BrokenRepr(),
        1: "int key",
    }
    out = to_json_safe(value)
    json.dumps(out, allow_nan=False)  # strictly JSON
    assert out["dc"] == {"x": 1, "when": "2026-01-02"}
    assert out["model"] == {"name": "n", "tags": ["a"]}
    assert out["set"] == [1, 2, 3]
    assert out["tuple"] == [1, "a"]
    assert out["when"] == "2026-01-02T03:04:05+00:00"
    assert out["delta"] == 1.5
    assert out["bytes"] == "<bytes: 3 bytes>"
    assert out["enum"] == "red"
    assert out["uuid"] == str(uuid.UUID(int=1))
    assert out["path"] == "/tmp/x"
    assert out["decimal"] == "1.10"
    assert out["nan"] is None
    assert out["obj"] == "<Opaque: Opaque()>"
    assert out["broken"] == "<BrokenRepr: ?>"
    assert out["1"] == "int key"


def test_deep_and_self_referencing_values_do_not_crash() -> None:
    loop: list[object] = []
    loop.append(loop)
    out = to_json_safe(loop)
    dumps(out)


def test_fit_leaves_small_data_alone() -> None:
    data = {"agentId": "a", "result": {"n": 1}}
    assert fit(data) is data


def test_fit_truncates_the_biggest_field_and_says_so() -> None:
    data = {"agentId": "a", "result": "x" * (2 * MAX_EVENT_BYTES), "durationMs": 3}
    out = fit(data)
    assert out["truncated"] is True
    assert out["result"].startswith("<truncated: ")
    assert out["agentId"] == "a" and out["durationMs"] == 3
    assert len(dumps(out)) < MAX_EVENT_BYTES


def test_fit_cuts_only_the_big_results_of_a_results_map() -> None:
    data = {"durationMs": 1, "results": {"small": 1, "big": "y" * (2 * MAX_EVENT_BYTES)}}
    out = fit(data)
    assert out["truncated"] is True
    assert out["results"]["small"] == 1
    assert out["results"]["big"].startswith("<truncated: ")
