"""Invalid workflows are refused before anything runs: no event, an error naming the fault."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from zmqmon.core.emitter import EventEmitter
from zmqmon.core.workflow import AgentAllowList
from zmqmon.errors import WorkflowError
from zmqmon.services.executor import Agent, Workflow, WorkflowEngine, compile_workflow
from zmqmon.services.executor.resolve import resolve_uses

ECHO = "tests.services.executor.agents:echo"


@pytest.fixture
def engine_and_events() -> Iterator[tuple[WorkflowEngine, list[dict[str, Any]]]]:
    events: list[dict[str, Any]] = []
    engine = WorkflowEngine(EventEmitter(events.append))
    yield engine, events
    engine.close()


def wf(*agents: dict[str, Any]) -> dict[str, Any]:
    return {"name": "W", "agents": list(agents)}


CASES = [
    (
        "cycle",
        wf(
            {"id": "a", "uses": ECHO, "dependsOn": ["b"]},
            {"id": "b", "uses": ECHO, "dependsOn": ["a"]},
        ),
        r"dependency cycle: a -> b -> a",
    ),
    (
        "duplicate",
        wf({"id": "a", "uses": ECHO}, {"id": "a", "uses": ECHO}),
        "duplicate agent id 'a'",
    ),
    (
        "unknown dependency",
        wf({"id": "a", "uses": ECHO, "dependsOn": ["ghost"]}),
        "agent 'a' depends on unknown agent 'ghost'",
    ),
    (
        "missing module",
        wf({"id": "a", "uses": "no_such_module_zz:f"}),
        "agent 'a': uses 'no_such_module_zz:f': cannot import module 'no_such_module_zz'",
    ),
    (
        "missing attribute",
        wf({"id": "a", "uses": "tests.services.executor.agents:nope"}),
        "agent 'a': uses 'tests.services.executor.agents:nope': module "
        "'tests.services.executor.agents' has no attribute 'nope'",
    ),
    (
        "not callable",
        wf({"id": "a", "uses": "tests.services.executor.agents:NOT_CALLABLE"}),
        "is a int, not a callable",
    ),
    (
        "bad uses syntax",
        wf({"id": "a", "uses": "not an import path"}),
        "agents.0.uses",
    ),
    ("params not an object", wf({"id": "a", "uses": ECHO, "params": [1, 2]}), "agents.0.params"),
    (
        "params refused by the agent's params_model",
        wf({"id": "w", "uses": "zmqmon.demo:work", "params": {"seconds": "soon"}}),
        "agent 'w': bad params: seconds:",
    ),
    (
        "wrong signature",
        wf({"id": "a", "uses": "tests.services.executor.agents:two_args"}),
        "agent 'a': tests.services.executor.agents:two_args must accept one argument",
    ),
    ("misspelt key", wf({"id": "a", "uses": ECHO, "dependOn": []}), "agents.0.dependOn"),
    ("no agents", {"name": "W", "agents": []}, "agents"),
]


@pytest.mark.parametrize(("case", "definition", "fault"), CASES, ids=[c[0] for c in CASES])
def test_invalid_definitions_are_refused_before_anything_runs(
    engine_and_events: tuple[WorkflowEngine, list[dict[str, Any]]],
    case: str,
    definition: dict[str, Any],
    fault: str,
) -> None:
    engine, events = engine_and_events
    with pytest.raises(WorkflowError) as info:
        engine.submit(definition)
    assert fault in str(info.value)
    assert events == []
    assert engine.running() == []


def test_python_api_workflow_errors_name_the_fault(
    engine_and_events: tuple[WorkflowEngine, list[dict[str, Any]]],
) -> None:
    engine, events = engine_and_events
    with pytest.raises(WorkflowError, match=r"agents\.0\.params"):
        engine.submit(Workflow("W", [Agent("a", lambda ctx: 1, params=[1])]))  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="dependency cycle"):
        engine.submit(
            Workflow("W", [Agent("a", ECHO, depends_on=["b"]), Agent("b", ECHO, depends_on=["a"])])
        )
    with pytest.raises(WorkflowError, match="inputs must be an object"):
        engine.submit(wf({"id": "a", "uses": ECHO}), inputs=[1])  # type: ignore[arg-type]
    assert events == []


def test_a_valid_plan_resolves_callables_and_kinds() -> None:
    async def run_async(ctx: object) -> None:
        return None

    plan = compile_workflow(
        Workflow(
            "W",
            [
                Agent("a", ECHO),
                Agent("b", run_async, depends_on=["a"]),
                Agent("c", "zmqmon.demo:work", depends_on=["a", "b"]),
            ],
        )
    )
    assert plan.order == ["a", "b", "c"]
    assert plan.is_async == {"a": False, "b": True, "c": True}
    assert plan.functions["a"] is resolve_uses(ECHO)
    assert plan.definition.agents[1].uses.endswith("run_async")


def test_resolve_uses_rejects_paths_without_colon() -> None:
    with pytest.raises(WorkflowError, match="module:attr"):
        resolve_uses("zmqmon.demo.work")


ALLOW = AgentAllowList.parse("tests.services.executor.agents")


@pytest.mark.parametrize(
    ("uses", "fault"),
    [
        ("sys:exit", "module 'sys' is not an agent module"),
        ("venv.__main__:main", "module 'venv.__main__' is not an agent module"),
        ("unittest.__main__:main", "module 'unittest.__main__' is not an agent module"),
        ("zmqmon.demo_evil:work", "module 'zmqmon.demo_evil' is not an agent module"),
        ("zmqmon:Executor", "module 'zmqmon' is not an agent module"),
        ("tests.services.executor.import_marker:agent", "is not an agent module"),
        ("zmqmon.demo:__builtins__", "dunder"),
        ("zmqmon.demo:work.__globals__", "dunder"),
        ("zmqmon.demo:asyncio.sleep", "leads into module 'asyncio'"),
    ],
)
def test_the_allow_list_refuses_other_modules_before_importing_them(uses: str, fault: str) -> None:
    definition = wf({"id": "ok", "uses": ECHO}, {"id": "a", "uses": uses})
    with pytest.raises(WorkflowError, match=fault):
        compile_workflow(definition, allow=ALLOW)
    assert "tests.services.executor.import_marker" not in sys.modules
    assert "venv.__main__" not in sys.modules and "unittest.__main__" not in sys.modules


def test_the_allow_list_takes_listed_modules_their_submodules_and_the_demo() -> None:
    plan = compile_workflow(
        wf(
            {"id": "a", "uses": ECHO},
            {"id": "b", "uses": "zmqmon.demo:work"},
            {"id": "c", "uses": "tests.services.executor.import_marker:agent"},
        ),
        allow=AgentAllowList.parse("tests.services.executor.agents,tests.services"),
    )
    assert plan.order == ["a", "b", "c"]
    # Callables handed in from Python are the caller's own: never checked against the list.
    compile_workflow(Workflow("W", [Agent("a", lambda ctx: 1)]), allow=AgentAllowList())


def test_a_module_that_exits_on_import_refuses_the_workflow_only() -> None:
    with pytest.raises(WorkflowError, match="SystemExit: this module exits on import") as info:
        compile_workflow(wf({"id": "a", "uses": "tests.services.executor.exits_on_import:x"}))
    assert isinstance(info.value.__cause__, WorkflowError)
    assert isinstance(info.value.__cause__.__cause__, SystemExit)
