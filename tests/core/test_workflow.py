from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.strategies import WORKFLOWS, encoded, json_values, no_logged_errors
from zmqmon.core.workflow import (
    AgentAllowList,
    ReadySet,
    parse_workflow,
    parse_workflow_ordered,
    ready_agents,
    topological_order,
    workflow_digest,
)
from zmqmon.errors import ConfigError, WorkflowError


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


def test_allow_list_names_are_exact_and_take_submodules() -> None:
    allow = AgentAllowList.parse("mypkg.agents, other,,")
    assert allow.modules == {"zmqmon.demo", "mypkg.agents", "other"}
    for module in ("zmqmon.demo", "mypkg.agents", "mypkg.agents.sub", "mypkg.agents.a.b", "other"):
        assert allow.allows_module(module), module
    for module in ("zmqmon", "zmqmon.demo_evil", "zmqmon.demox.y", "mypkg", "mypkg.agents_x",
                   "otherwise", "sys", "venv.__main__", ""):  # fmt: skip
        assert not allow.allows_module(module), module
    allow.check_uses("mypkg.agents.sub:run")
    with pytest.raises(WorkflowError, match=r"'zmqmon\.demo_evil' is not an agent module"):
        allow.check_uses("zmqmon.demo_evil:x")
    with pytest.raises(WorkflowError, match="dunder"):
        allow.check_uses("zmqmon.demo:work.__code__")


def test_allow_list_star_allows_any_and_bad_names_are_config_errors() -> None:
    assert AgentAllowList.parse("*").any_module and AgentAllowList.ANY.allows_module("sys")
    AgentAllowList.ANY.check_uses("sys:exit")  # the operator's choice, said at start
    assert str(AgentAllowList.parse("b,a")) == "a,b,zmqmon.demo"
    assert AgentAllowList.parse(None) == AgentAllowList()
    for bad in ("my-pkg", "a..b", "os;rm", ".x"):
        with pytest.raises(ConfigError, match="not a dotted module name"):
            AgentAllowList.parse(bad)


def test_agent_cap_is_checked_first_and_names_the_cap() -> None:
    agents = [{"id": f"a{i}", "uses": "m:f"} for i in range(1001)]
    with pytest.raises(WorkflowError, match="1001 agents; at most 1000 per workflow"):
        parse_workflow({"name": "W", "agents": agents}, max_agents=1000)
    # counted before validation: even invalid agents are not looked at one by one
    with pytest.raises(WorkflowError, match="at most 3"):
        parse_workflow({"name": "W", "agents": [None] * 4}, max_agents=3)
    assert len(parse_workflow({"name": "W", "agents": agents}).agents) == 1001  # no cap given


def test_a_long_chain_is_ordered_without_recursion() -> None:
    n = 5000  # far past Python's recursion limit
    agents = [{"id": f"a{i}", "uses": "m:f", "dependsOn": [f"a{i + 1}"] if i < n - 1 else []}
              for i in range(n)]  # fmt: skip
    order = topological_order(parse_workflow({"name": "Chain", "agents": agents}))
    assert order == [f"a{i}" for i in reversed(range(n))]
    agents[-1]["dependsOn"] = ["a0"]
    with pytest.raises(WorkflowError, match="dependency cycle: a0 -> a1 -> a2"):
        parse_workflow({"name": "Loop", "agents": agents})


def test_names_and_description_are_bounded() -> None:
    for source, fault in (
        ({"name": "n" * 201, "agents": [{"id": "a", "uses": "m:f"}]}, "name"),
        ({"name": "W", "description": "d" * 10_001, "agents": [{"id": "a", "uses": "m:f"}]},
         "description"),
        ({"name": "W", "agents": [{"id": "a", "uses": "m:f", "name": "x" * 201}]}, "agents.0.name"),
    ):  # fmt: skip
        with pytest.raises(WorkflowError, match=fault):
            parse_workflow(source)


def test_digest_is_the_same_for_the_same_content_only() -> None:
    a = parse_workflow({"name": "W", "agents": [{"id": "a", "uses": "m:f"}]})
    b = parse_workflow('{"agents": [{"uses": "m:f", "params": {}, "id": "a"}], "name": "W"}')
    c = parse_workflow({"name": "W", "agents": [{"id": "a", "uses": "m:g"}]})
    assert workflow_digest(a) == workflow_digest(b) != workflow_digest(c)
    assert len(workflow_digest(a)) == 32


# -- property-based: whatever a client submits as a definition --------------------------------


@given(source=st.one_of(WORKFLOWS, json_values), form=st.sampled_from(["dict", "text", "bytes"]))
def test_any_definition_parses_or_gets_a_workflow_error(source: Any, form: str) -> None:
    given_as: Any = source
    if form != "dict":
        text = json.dumps(source)
        given_as = text if form == "text" else text.encode()
    try:
        with no_logged_errors():
            definition = parse_workflow(given_as, max_agents=3)
    except WorkflowError as exc:
        assert str(exc)
        return
    assert 1 <= len(definition.agents) <= 3
    order = topological_order(definition)
    assert sorted(order) == sorted(a.id for a in definition.agents)
    for agent in definition.agents:  # every agent after its dependencies
        assert all(order.index(dep) < order.index(agent.id) for dep in agent.depends_on)
    assert parse_workflow(definition.to_json_dict()) == definition  # round trip
    assert workflow_digest(parse_workflow(json.dumps(definition.to_json_dict()))) == (
        workflow_digest(definition)
    )


@given(raw=encoded(st.one_of(WORKFLOWS, json_values)), as_text=st.booleans())
def test_definitions_from_garbled_bytes_parse_or_are_workflow_errors(
    raw: bytes, as_text: bool
) -> None:
    try:
        with no_logged_errors():
            definition = parse_workflow(raw.decode("utf-8", "replace") if as_text else raw)
    except WorkflowError as exc:
        assert str(exc)
        return
    assert definition.agents and definition.name


@given(uses=st.one_of(st.text(max_size=30), st.from_regex(r"\A[\w.]{1,12}:[\w.]{1,12}\Z")))
def test_the_allow_list_decides_any_uses_without_surprises(uses: str) -> None:
    allow = AgentAllowList.parse("mypkg.agents")
    module = uses.partition(":")[0]
    try:
        allow.check_uses(uses)
    except WorkflowError:
        assert not allow.allows_module(module) or "__" in uses.partition(":")[2]
        return
    assert module in ("zmqmon.demo", "mypkg.agents") or module.startswith(
        ("zmqmon.demo.", "mypkg.agents.")
    )


def test_retries_default_to_zero_and_negative_is_refused() -> None:
    wf = parse_workflow(_wf({"id": "a", "uses": "m:f", "retries": 2}))
    assert wf.agents[0].retries == 2
    plain = parse_workflow(_wf({"id": "a", "uses": "m:f"}))
    assert plain.agents[0].retries is None  # i.e. 0
    assert "retries" not in plain.to_json_dict()["agents"][0]  # digests as before the field
    with pytest.raises(WorkflowError, match="retries"):
        parse_workflow(_wf({"id": "a", "uses": "m:f", "retries": -1}))


def test_ready_agents_of_a_diamond() -> None:
    wf = parse_workflow(
        _wf(
            {"id": "a", "uses": "m:f"},
            {"id": "b", "uses": "m:f", "dependsOn": ["a"]},
            {"id": "c", "uses": "m:f", "dependsOn": ["a"]},
            {"id": "d", "uses": "m:f", "dependsOn": ["b", "c"]},
        )
    )
    assert ready_agents(wf, done=()) == ["a"]
    assert ready_agents(wf, done=(), running={"a"}) == []
    assert ready_agents(wf, done={"a"}) == ["b", "c"]
    assert ready_agents(wf, done={"a", "b"}, running={"c"}) == []
    assert ready_agents(wf, done={"a", "b", "c"}) == ["d"]
    assert ready_agents(wf, done={"a"}, failed={"b"}) == []  # fail-fast
    rs = ReadySet(wf)
    assert rs.start() == ["a"] and rs.running == {"a"}
    assert rs.complete("a") == ["b", "c"]
    assert rs.complete("c") == [] and not rs.finished
    assert rs.complete("b") == ["d"]
    assert rs.complete("d") == [] and rs.finished
    with pytest.raises(ValueError, match="not running"):
        rs.complete("d")


@st.composite
def _dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 12))
    agents = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        agents.append({"id": f"a{i}", "uses": "m:f", "dependsOn": [f"a{d}" for d in sorted(deps)]})
    order = draw(st.permutations(agents))
    return _wf(*order)


@given(_dags(), st.randoms(use_true_random=False), st.booleans())
def test_the_ready_set_agrees_with_the_rule_at_every_step(
    source: dict[str, Any], rnd: Any, fail_one: bool
) -> None:
    wf = parse_workflow(source)
    rs = ReadySet(wf)
    handed = rs.start()
    assert sorted(handed) == sorted(ready_agents(wf, done=()))
    started = set(handed)
    while rs.running:
        agent_id = rnd.choice(sorted(rs.running))
        if fail_one and rnd.random() < 0.2:
            rs.fail(agent_id)
            assert ready_agents(wf, done=rs.done, failed=rs.failed, running=rs.running) == []
            if rs.running:  # what still runs may end, and starts nothing
                assert rs.complete(rnd.choice(sorted(rs.running))) == []
            break
        before = set(rs.running) - {agent_id}
        new = rs.complete(agent_id)
        assert sorted(new) == sorted(ready_agents(wf, done=rs.done, running=before))
        # each agent is handed out once, only after all of its dependencies are done
        assert not started & set(new)
        started |= set(new)
        # nothing ready is left unhanded
        assert ready_agents(wf, done=rs.done, running=rs.running) == []
    if not rs.failed:
        assert rs.finished and rs.done == {a.id for a in wf.agents}


def test_parse_workflow_ordered_gives_the_definition_and_the_order_it_checked() -> None:
    raw = _wf(
        {"id": "c", "uses": "m:f", "dependsOn": ["b"]},
        {"id": "a", "uses": "m:f"},
        {"id": "b", "uses": "m:f", "dependsOn": ["a"]},
    )
    definition, order = parse_workflow_ordered(raw)
    assert definition == parse_workflow(raw)
    assert order == topological_order(definition) == ["a", "b", "c"]
    with pytest.raises(WorkflowError, match="dependency cycle"):
        parse_workflow_ordered(
            _wf(
                {"id": "a", "uses": "m:f", "dependsOn": ["a2"]},
                {"id": "a2", "uses": "m:f", "dependsOn": ["a"]},
            )
        )
