"""The bridge's routing tables, without sockets: lanes, indexes and upstream refcounts."""

from __future__ import annotations

from zmqmon_bridge.protocol import Subscription
from zmqmon_bridge.routing import Change, Routes


def test_add_and_remove_say_what_is_needed_upstream_once() -> None:
    routes: Routes[str] = Routes()
    x = Subscription("execution", "x")
    assert routes.add("a", x, "log") == Change(("topic", "exec/x/"), "exec/x/")
    assert routes.add("a", x, "log") == Change()  # held already
    assert routes.add("b", x, "log") == Change()  # refcounted
    assert routes.add("c", x, "state") == Change(("topic", "exec/x/"), None)  # other lane
    topic = Subscription("topic", "exec/x/")
    assert routes.add("d", topic, "log") == Change()  # the same prefix as execution x
    wf = Subscription("workflow", "w")
    assert routes.add("a", wf, "log") == Change(("workflow", "w"), "exec/")
    assert routes.upstream_prefixes == {"exec/x/": 4, "exec/": 1}
    assert routes.remove("a", x, "log") == Change()
    assert routes.remove("b", x, "log") == Change()
    assert routes.remove("d", topic, "log") == Change(("topic", "exec/x/"), None)
    assert routes.remove("c", x, "state") == Change(("topic", "exec/x/"), "exec/x/")
    assert routes.remove("c", x, "state") == Change()  # not held any more
    assert routes.remove("a", wf, "log") == Change(("workflow", "w"), "exec/")
    assert routes.upstream_prefixes == {}
    assert routes.members("log") == {} and routes.members("state") == {}


def test_targets_split_own_holders_from_others_per_lane() -> None:
    routes: Routes[str] = Routes()
    routes.add("own", Subscription("execution", "x"), "log")
    routes.add("all", Subscription("topic", "exec/"), "log")
    routes.add("agents", Subscription("topic", "exec/x/agent:"), "log")
    routes.add("wf", Subscription("workflow", "w"), "log")
    routes.add("both", Subscription("execution", "x"), "log")
    routes.add("both", Subscription("topic", "exec/"), "log")
    routes.add("stateful", Subscription("topic", "exec/"), "state")
    own, others = routes.targets("log", "x", "w", "agent:progress")
    assert own == {"own", "both"} and others == {"all", "agents", "wf"}
    own, others = routes.targets("log", "x", "w", "execution:started")
    assert others == {"all", "wf"}  # not the agent-only prefix
    own, others = routes.targets("log", "y", "other", "agent:progress")
    assert own == set() and others == {"all", "both"}
    assert routes.targets("state", "x", "w", "agent:progress") == (set(), {"stateful"})
    own, others = routes.targets("log", "x", None, None)  # a snapshot: any type selects
    assert others == {"all", "agents"}
    assert routes.members("log") == {"own": 1, "all": 1, "agents": 1, "wf": 1, "both": 2}
