from __future__ import annotations

import pytest

from zmqmon.core.workflow import parse_workflow, topological_order
from zmqmon.errors import WorkflowError


def _wf(*agents: dict) -> dict:
    return {"name": "W", "agents": list(agents)}


def test_valid_diamond_orders_dependencies_first() -> None:
    wf = parse_workflow(
        _wf(
            {"id": "d", "uses": "m:f", "dependsOn": ["b", "c"]},
            {"id": "b", "uses": "m:f", "dependsOn": ["a"]},
            {"id": "c", "uses": "m:f", "dependsOn": ["a"]},
            {"id": "a", "uses": "m:f", "params": {"seconds": 1}, "timeoutSeconds": 5},
        )
    )
    order = topological_order(wf)
    assert order.index("a") < order.index("b") < order.index("d")
    assert order.index("c") < order.index("d")
    assert wf.agents[3].timeout_seconds == 5
    assert wf.agents[0].display_name == "d"


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        (_wf({"id": "a", "uses": "m:f"}, {"id": "a", "uses": "m:f"}), "duplicate agent id 'a'"),
        (_wf({"id": "a", "uses": "m:f", "dependsOn": ["zz"]}), "unknown agent 'zz'"),
        (
            _wf(
                {"id": "a", "uses": "m:f", "dependsOn": ["c"]},
                {"id": "b", "uses": "m:f", "dependsOn": ["a"]},
                {"id": "c", "uses": "m:f", "dependsOn": ["b"]},
            ),
            "dependency cycle: a -> c -> b -> a",
        ),
        (_wf({"id": "a", "uses": "m:f", "dependsOn": ["a"]}), "depends on itself"),
        (_wf({"id": "a", "uses": "not a path"}), "agents.0.uses"),
        (_wf({"id": "a", "uses": "m:f", "params": [1]}), "agents.0.params"),
        (_wf({"id": "a", "uses": "m:f", "dependOn": ["x"]}), "agents.0.dependOn: Extra inputs"),
        (_wf({"id": "a", "uses": "m:f", "timeoutSeconds": -1}), "agents.0.timeoutSeconds"),
        ({"name": "W", "agents": []}, "agents: List should have at least 1 item"),
        ("{oops", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_invalid_definitions_name_the_fault(source: object, fragment: str) -> None:
    with pytest.raises(WorkflowError, match=fragment):
        parse_workflow(source)  # type: ignore[arg-type]
