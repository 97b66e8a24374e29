"""The views' pure geometry: layers, order, coordinates, critical path, time scale (no browser).

``layout.js`` is held to the same answers in tests/bridge/test_layout_js.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import combinations, pairwise

import pytest

from tests.layout_cases import T0, fan_out_in, layered, layout_fixtures, run_events, stamp
from zmqmon.core.events import parse_event
from zmqmon.core.layout import (
    LayoutOptions,
    Node,
    critical_path,
    crossings,
    dag_layout,
    execution_layout,
    graph_of,
)
from zmqmon.core.state import ExecutionState, replay
from zmqmon.core.timeline import (
    NICE_STEPS_MS,
    format_offset,
    time_scale,
    timeline_layout,
    timestamp_ms,
)

FIXTURES = layout_fixtures()
T0_MS = int(T0.timestamp() * 1000)


def _state(events: list[dict]) -> ExecutionState:  # type: ignore[type-arg]
    state = replay(parse_event(e) for e in events)
    assert state is not None
    return state


def _initial_layers(nodes: list[Node]) -> list[list[str]]:
    """Layers in input order, before any sweep (what the barycenter passes start from)."""
    layout = dag_layout(nodes, LayoutOptions(sweeps=0))
    return [list(layer) for layer in layout.layers]


def _random_dag(seed: int, n: int) -> list[Node]:
    rng = random.Random(seed)
    nodes: list[Node] = []
    for i in range(n):
        pool = [f"n{j}" for j in range(max(0, i - 25), i)]
        nodes.append((f"n{i}", rng.sample(pool, k=min(len(pool), rng.randint(0, 3)))))
    rng.shuffle(nodes)
    return nodes


# --- layers -------------------------------------------------------------------------------------


def test_layers_follow_the_longest_path_from_the_sources() -> None:
    nodes: list[Node] = [
        ("d", ["b", "c"]),
        ("a", []),
        ("c", ["a"]),
        ("b", ["a"]),
        ("e", ["a", "d"]),
    ]
    layout = dag_layout(nodes)
    assert layout.layers == (("a",), ("c", "b"), ("d",), ("e",))  # e waits for d, not only a
    assert [layout.nodes[v][0] for v in "abcde"] == [0, 1, 1, 2, 3]
    assert layout.graph.topo == ("a", "c", "b", "d", "e")


def test_unknown_self_and_repeated_dependencies_are_ignored() -> None:
    layout = dag_layout([("a", ["ghost", "a"]), ("b", ["a", "a"]), ("a", ["b"])])
    assert layout.layers == (("a",), ("b",))  # the first mention of "a" wins
    assert layout.graph.edges == (("a", "b"),)


def test_a_cycle_is_broken_and_every_agent_is_placed() -> None:
    layout = dag_layout([("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", [])])
    assert sorted(v for layer in layout.layers for v in layer) == ["a", "b", "c", "d"]
    assert layout.layers == (("a", "d"), ("b",), ("c",))  # broken at "a", the first waiting
    assert ("c", "a") in layout.graph.edges  # still drawn, but not used for layering
    assert layout.graph.preds["a"] == ()


# --- order and coordinates ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [50, 120, 500])
def test_no_two_nodes_overlap_and_all_fit_the_drawing(seed: int, n: int) -> None:
    o = LayoutOptions()
    layout = dag_layout(_random_dag(seed, n), o)
    boxes = [(x, y, x + o.node_width, y + o.node_height) for _, _, x, y in layout.nodes.values()]
    assert len(boxes) == n
    for x0, y0, x1, y1 in boxes:
        assert o.margin <= x0 and x1 <= layout.width - o.margin
        assert o.margin <= y0 and y1 <= layout.height - o.margin
    # Sorting by x then y: only neighbours in the same column could overlap.
    for a, b in pairwise(sorted(boxes)):
        if a[0] == b[0]:
            assert b[1] >= a[3] + o.node_gap
    if n <= 120:  # the quadratic check too, where it is cheap
        for a, b in combinations(boxes, 2):
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    # every edge goes left to right (a dependency is always in an earlier column)
    for src, dst in layout.graph.edges:
        assert layout.nodes[src][2] < layout.nodes[dst][2]


def test_layers_are_centred_on_the_tallest() -> None:
    o = LayoutOptions()
    layout = dag_layout([(a, d) for a, _, d in fan_out_in(10)], o)
    middle = [layout.nodes[v][3] + o.node_height / 2 for v in ("split", "merge")]
    column = [layout.nodes[f"w{i:02d}"][3] for i in range(10)]
    centre = (column[0] + column[-1] + o.node_height) / 2
    assert middle == [centre, centre]
    assert layout.height == 2 * o.margin + 10 * (o.node_height + o.node_gap) - o.node_gap


def test_barycenter_untangles_a_tree_listed_in_a_scrambled_order() -> None:
    nodes: list[Node] = [("root", [])]
    nodes += [(f"m{i}", ["root"]) for i in range(4)]
    leaves = [(f"l{i}{j}", [f"m{i}"]) for i in range(4) for j in range(3)]
    random.Random(3).shuffle(leaves)
    nodes += leaves
    assert crossings(_initial_layers(nodes), graph_of(nodes)) > 0
    layout = dag_layout(nodes)
    assert crossings(layout.layers, layout.graph) == 0
    # each middle node's leaves sit together, in the middle nodes' order
    owners = [v[1] for v in layout.layers[2]]
    assert owners == sorted(owners, key=[m[1] for m in layout.layers[1]].index)


@pytest.mark.parametrize("seed", range(8))
def test_barycenter_never_adds_crossings_and_mostly_removes_them(seed: int) -> None:
    agents = layered(seed, [5, 12, 16, 10, 6], skip=0.0)
    nodes: list[Node] = [(a, d) for a, _, d in agents]
    graph = graph_of(nodes)
    before = crossings(_initial_layers(nodes), graph)
    after = crossings(dag_layout(nodes).layers, graph)
    assert after <= before // 2, (before, after)


def test_crossings_counts_inversions_between_adjacent_layers() -> None:
    nodes: list[Node] = [("a", []), ("b", []), ("x", ["b"]), ("y", ["a"]), ("z", ["a", "b"])]
    graph = graph_of(nodes)
    assert crossings([["a", "b"], ["x", "y", "z"]], graph) == 2  # a-y and a-z cross b-x
    assert crossings([["a", "b"], ["y", "z", "x"]], graph) == 0
    assert crossings([["a", "b"], ["y", "z", "x"], []], graph) == 0


# --- critical path ------------------------------------------------------------------------------

DIAMOND: list[Node] = [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]


def test_critical_path_is_the_longest_chain_by_duration() -> None:
    graph = graph_of(DIAMOND)
    assert critical_path(graph, {"a": 1, "b": 5, "c": 3, "d": 2}) == (("a", "b", "d"), 8)
    assert critical_path(graph, {"a": 1, "b": 3, "c": 5, "d": 2}) == (("a", "c", "d"), 8)
    assert critical_path(graph, {"a": 1, "b": 4, "c": 4, "d": 2}) == (("a", "b", "d"), 7)  # tie
    assert critical_path(graph, {"a": 1, "b": 1, "c": 9}) == (("a", "c"), 10)  # d not run
    assert critical_path(graph, {}) == ((), 0)


def test_critical_path_counts_a_running_agent_up_to_now() -> None:
    agents = [("a", "A", []), ("b", "B", ["a"]), ("x", "X", [])]
    durations = {"a": 1000, "b": 3000, "x": 2500}  # a: 5..1005, b: 1010..4010, x: 5..2505
    early = execution_layout(_state(run_events(agents, durations, until=2000)), T0_MS + 2000)
    assert early.critical == ("x",) and early.critical_ms == 1995  # x has run longest so far
    later = execution_layout(_state(run_events(agents, durations, until=3000)), T0_MS + 3000)
    assert later.critical == ("a", "b") and later.critical_ms == 1000 + 1990  # b overtakes x
    o = LayoutOptions()
    a_mid = o.margin + o.node_height / 2  # a tops the first column (a, x); b is centred on it
    b_mid = a_mid + (o.node_height + o.node_gap) / 2
    assert later.to_json_dict()["dag"]["edges"] == [
        {
            "from": "a",
            "to": "b",
            "points": [
                o.margin + o.node_width,
                a_mid,
                o.margin + o.node_width + o.layer_gap,
                b_mid,
            ],
            "critical": True,
        }
    ]


# --- time ----------------------------------------------------------------------------------------


BAD_TIMESTAMPS = [
    None,
    "",
    "2026-11-25T10:00:00Z",
    "2026-11-25 10:00:00.000Z",
    "2026-02-30T00:00:00.000Z",
    "2026-13-01T00:00:00.000Z",
    "2026-11-25T24:00:00.000Z",
    "2026-11-25T10:00:00.0000Z",
    "+026-11-25T10:00:00.000Z",
    "2026-11-25T10:00:00.000z",
]


def test_timestamps_are_exact_milliseconds() -> None:
    for ms in (0, 1, 999, 61_234, 86_400_000 * 400 + 7):
        t = T0 + timedelta(milliseconds=ms)
        assert timestamp_ms(stamp(ms)) == int(t.timestamp()) * 1000 + t.microsecond // 1000
    assert timestamp_ms("1970-01-01T00:00:00.000Z") == 0
    assert timestamp_ms("2024-02-29T23:59:59.999Z") == int(
        datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000 - 1
    )
    for bad in BAD_TIMESTAMPS:
        assert timestamp_ms(bad) is None, bad


@pytest.mark.parametrize(
    ("ms", "step", "label"),
    [
        (0, 1000, "0"),
        (500, 500, "0.5 s"),
        (1500, 500, "1.5 s"),
        (2000, 500, "2 s"),
        (150, 50, "0.15 s"),
        (100, 50, "0.1 s"),
        (7, 1, "0.007 s"),
        (45_000, 5000, "45 s"),
        (90_000, 30_000, "1 m 30 s"),
        (120_000, 60_000, "2 m"),
        (3_900_000, 300_000, "1 h 05 m"),
        (7_200_000, 3_600_000, "2 h"),
        (2 * 86_400_000 + 3 * 3_600_000, 86_400_000, "2 d 3 h"),
    ],
)
def test_tick_labels_are_offsets_from_the_start(ms: int, step: int, label: str) -> None:
    assert format_offset(ms, step) == label


@pytest.mark.parametrize("span", [1, 7, 100, 999, 4_321, 60_000, 3_600_000, 9 * 86_400_000])
@pytest.mark.parametrize("width", [200, 554, 1600])
def test_time_scale_picks_the_smallest_nice_step_that_fits(span: int, width: int) -> None:
    scale = time_scale(T0_MS, T0_MS + span, 150, width, 72)
    step = scale.step_ms
    assert step * width / span >= 72  # ticks at least min_tick_px apart
    smaller = [s for s in NICE_STEPS_MS if s < step]
    if smaller and step in NICE_STEPS_MS:  # … and the next smaller step would not be
        assert smaller[-1] * width / span < 72
    offsets = [t for t, _, _ in scale.ticks]
    assert offsets == list(range(0, span + 1, step))
    xs = [x for _, x, _ in scale.ticks]
    assert xs[0] == 150 and xs[-1] <= 150 + width
    assert all(b - a >= 72 - 1e-9 for a, b in pairwise(xs))
    assert scale.x(T0_MS + span) == 150 + width


def test_timeline_rows_follow_the_graph_and_running_bars_grow() -> None:
    agents = [(a, a.upper(), list(d)) for a, d in DIAMOND]
    state = _state(run_events(agents, {"a": 1000, "b": 3000, "c": 1500, "d": 500}, until=2000))
    o = LayoutOptions()
    order = dag_layout([(a.agent_id, a.depends_on) for a in state.agents], o).reading_order()
    at_2s = timeline_layout(state, order, T0_MS + 2000, o)
    at_4s = timeline_layout(state, order, T0_MS + 4000, o)
    assert [r.agent_id for r in at_2s.rows] == ["a", "b", "c", "d"]
    a, b, c, d = at_2s.rows
    assert (a.start_ms, a.end_ms, a.open) == (T0_MS + 5, T0_MS + 1005, False)
    assert (b.start_ms, b.end_ms, b.open) == (T0_MS + 1010, T0_MS + 2000, True)  # running
    assert c.open and d.x0 is None and d.start_ms is None  # d waits for b and c
    assert a.x0 is not None and a.x1 is not None and b.x1 is not None
    assert a.x1 < b.x1 == at_2s.scale.x0 + at_2s.scale.width  # a running bar reaches "now"
    assert at_4s.rows[1].end_ms == T0_MS + 4000  # … and grows with it
    assert at_2s.scale.end_ms == T0_MS + 2000 and at_4s.scale.end_ms == T0_MS + 4000
    assert [r.y for r in at_2s.rows] == [o.axis_height + i * o.row_height for i in range(4)]


def test_a_finished_run_does_not_move_with_now() -> None:
    fixture = next(f for f in FIXTURES if f["description"] == "fan-out-fan-in-30-completed")
    state = _state(fixture["events"])
    assert state.status == "completed"
    assert (
        execution_layout(state, T0_MS).to_json_dict()
        == execution_layout(state, T0_MS + 10**9).to_json_dict()
    )


# --- the fixtures layout.js is held to ----------------------------------------------------------


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["description"] for f in FIXTURES])
def test_fixtures_hold_the_python_layout(fixture: dict) -> None:  # type: ignore[type-arg]
    state = _state(fixture["events"])
    layout = execution_layout(state, fixture["nowMs"])
    assert layout.to_json_dict() == fixture["expected"]
    # a cached graph gives the same answer
    again = execution_layout(state, fixture["nowMs"], dag=layout.dag)
    assert again.to_json_dict() == fixture["expected"]
