"""Where things go in the DAG view, and the critical path: a pure function of a state.

The dashboard's ``static/layout.js`` mirrors this module and :mod:`zmqmon.core.timeline` rule for
rule (as ``reducer.js`` mirrors the reducer); both are tested on ``tests/fixtures/layout/``, so
the page and the notebook draw the same picture of the same state. Sizes are whole pixels and
every division is the last step of its formula, so the two languages round alike.

The graph (:func:`dag_layout`), left to right by dependency:

1. Layers: an agent's layer is one more than its deepest dependency's (longest path from the
   sources). Unknown and self dependencies are ignored; a cycle (a definition never has one, but
   a state is outside input) is broken at the first agent, in state order, still waiting.
2. Order within a layer: state order, then up to ``sweeps`` barycenter passes — down (each agent
   to the mean position of its dependencies), then up (of its dependents); positions measured
   from each layer's centre, ties kept in the current order. The order with the fewest crossings
   between adjacent layers wins (the starting one included).
3. Coordinates: one column per layer, one fixed-height slot per agent, each column centred on
   the tallest: nodes never overlap, whatever the graph.

The critical path (:func:`critical_path`): the dependency chain with the greatest total of agent
durations (a finished agent's end − start, a running one's up to ``now``, a pending one's 0); ties
go to the first dependency listed and the first agent in topological order.

:func:`execution_layout` puts the graph, its critical path and the timeline together: what the
views draw beside the state itself (statuses, names, errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from zmqmon.core.state import ExecutionState
from zmqmon.core.timeline import TimelineLayout, TimelineOptions, agent_span, timeline_layout

__all__ = [
    "DagLayout",
    "ExecutionLayout",
    "Graph",
    "LayoutOptions",
    "Node",
    "critical_path",
    "crossings",
    "dag_layout",
    "execution_layout",
    "graph_of",
]

#: An agent in the graph: its id and the ids it depends on.
Node = tuple[str, Sequence[str]]


@dataclass(frozen=True)
class LayoutOptions(TimelineOptions):
    """The graph's sizes in whole pixels (both languages must compute the same coordinates),
    and the timeline's (:class:`~zmqmon.core.timeline.TimelineOptions`)."""

    node_width: int = 168
    node_height: int = 24
    layer_gap: int = 48
    node_gap: int = 6
    margin: int = 8
    sweeps: int = 4


@dataclass(frozen=True)
class Graph:
    """The graph's adjacency, with cycles broken: ``preds`` are the dependencies used (each
    earlier in ``topo``), ``edges`` every known dependency (a broken one included)."""

    ids: tuple[str, ...]
    preds: Mapping[str, tuple[str, ...]]
    succs: Mapping[str, tuple[str, ...]]
    topo: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DagLayout:
    """Layers (ids, top to bottom), each node's ``(layer, index, x, y)``, edge end points."""

    graph: Graph
    layers: tuple[tuple[str, ...], ...]
    nodes: Mapping[str, tuple[int, int, float, float]]
    width: int
    height: int
    options: LayoutOptions = field(default_factory=LayoutOptions)

    def edge_points(self, src: str, dst: str) -> tuple[float, float, float, float]:
        """From the middle of ``src``'s right side to the middle of ``dst``'s left side."""
        o = self.options
        _, _, x1, y1 = self.nodes[src]
        _, _, x2, y2 = self.nodes[dst]
        return x1 + o.node_width, y1 + o.node_height / 2, x2, y2 + o.node_height / 2

    def reading_order(self) -> list[str]:
        """Layer by layer, top to bottom: the order the timeline's rows follow."""
        return [v for layer in self.layers for v in layer]


@dataclass(frozen=True)
class ExecutionLayout:
    """Everything the two views draw, beside the state itself (statuses, names, errors)."""

    dag: DagLayout
    critical: tuple[str, ...]
    critical_ms: int
    timeline: TimelineLayout

    def to_json_dict(self) -> dict[str, Any]:
        """The form ``layout.js`` returns (camelCase), which the fixtures hold."""
        dag, tl, cp = self.dag, self.timeline, self.critical
        on_path = set(pairwise(cp))
        return {
            "dag": {
                "width": dag.width,
                "height": dag.height,
                "layers": [list(layer) for layer in dag.layers],
                "nodes": [
                    {"id": v, "layer": n[0], "index": n[1], "x": n[2], "y": n[3]}
                    for v, n in dag.nodes.items()
                ],
                "edges": [
                    {
                        "from": a,
                        "to": b,
                        "points": list(dag.edge_points(a, b)),
                        "critical": (a, b) in on_path,
                    }
                    for a, b in dag.graph.edges
                ],
            },
            "critical": {"path": list(cp), "ms": self.critical_ms},
            "timeline": {
                "width": tl.width,
                "height": tl.height,
                "startMs": tl.scale.start_ms,
                "endMs": tl.scale.end_ms,
                "stepMs": tl.scale.step_ms,
                "ticks": [{"ms": t, "x": x, "label": label} for t, x, label in tl.scale.ticks],
                "rows": [
                    {
                        "id": r.agent_id,
                        "y": r.y,
                        "startMs": r.start_ms,
                        "endMs": r.end_ms,
                        "open": r.open,
                        "x0": r.x0,
                        "x1": r.x1,
                    }
                    for r in tl.rows
                ],
            },
        }


# --- the graph ---------------------------------------------------------------------------------


def graph_of(nodes: Sequence[Node]) -> Graph:
    """Adjacency and a topological order (Kahn's, first-in first-out, in the nodes' order)."""
    ids = tuple(dict.fromkeys(v for v, _ in nodes))
    known = set(ids)
    deps: dict[str, tuple[str, ...]] = {}
    for v, ds in nodes:
        if v not in deps:  # the first mention of an id wins, as in the reducer
            deps[v] = tuple(dict.fromkeys(d for d in ds if d in known and d != v))
    edges = tuple((d, v) for v in ids for d in deps[v])
    waiting = {v: len(deps[v]) for v in ids}
    dependents: dict[str, list[str]] = {v: [] for v in ids}
    for d, v in edges:
        dependents[d].append(v)
    queue = [v for v in ids if waiting[v] == 0]
    queued = set(queue)
    placed: set[str] = set()
    topo: list[str] = []
    while len(topo) < len(ids):
        if len(topo) == len(queue):  # only a cycle is left: break it at its first agent
            v = next(v for v in ids if v not in queued)
            queue.append(v)
            queued.add(v)
        v = queue[len(topo)]
        topo.append(v)
        placed.add(v)
        for w in dependents[v]:
            waiting[w] -= 1
            if waiting[w] == 0 and w not in queued:
                queue.append(w)
                queued.add(w)
    position = {v: i for i, v in enumerate(topo)}
    preds = {v: tuple(d for d in deps[v] if position[d] < position[v]) for v in ids}
    succs: dict[str, list[str]] = {v: [] for v in ids}
    for v in ids:
        for d in preds[v]:
            succs[d].append(v)
    return Graph(ids, preds, {v: tuple(s) for v, s in succs.items()}, tuple(topo), edges)


def _layer_of(graph: Graph) -> dict[str, int]:
    layer: dict[str, int] = {}
    for v in graph.topo:
        layer[v] = 1 + max((layer[d] for d in graph.preds[v]), default=-1)
    return layer


def crossings(layers: Sequence[Sequence[str]], graph: Graph) -> int:
    """Edge crossings between adjacent layers (an edge spanning more layers is not counted)."""
    layer = {v: n for n, vs in enumerate(layers) for v in vs}
    index = {v: i for vs in layers for i, v in enumerate(vs)}
    total = 0
    for n, upper in enumerate(layers):
        # Edges sorted by both ends; two cross when their lower ends are inverted.
        ends = sorted(
            (index[u], index[v]) for u in upper for v in graph.succs[u] if layer[v] == n + 1
        )
        total += _inversions([b for _, b in ends])
    return total


def _inversions(values: list[int]) -> int:
    """Pairs i < j with values[i] > values[j] (a Fenwick tree: O(n log n))."""
    size = max(values, default=-1) + 2
    tree = [0] * (size + 1)
    count = 0
    for seen, value in enumerate(values):
        # how many seen so far are <= value
        i, at_most = value + 1, 0
        while i > 0:
            at_most += tree[i]
            i -= i & -i
        count += seen - at_most
        i = value + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count


def _centred(index: Mapping[str, int], size: Mapping[str, int], v: str) -> float:
    # Positions measured from the layer's centre: layers are drawn centred on the tallest.
    return index[v] - (size[v] - 1) / 2


def _sweep(
    layers: list[list[str]],
    neighbours: Mapping[str, tuple[str, ...]],
    order: range,
    index: dict[str, int],
    size: Mapping[str, int],
) -> None:
    for n in order:
        keys = {}
        for v in layers[n]:
            near = neighbours[v]
            if near:
                total = 0.0
                for u in near:
                    total += _centred(index, size, u)
                keys[v] = (total / len(near), index[v])
            else:
                keys[v] = (_centred(index, size, v), index[v])
        layers[n].sort(key=keys.__getitem__)
        for i, v in enumerate(layers[n]):
            index[v] = i


def dag_layout(nodes: Sequence[Node], options: LayoutOptions | None = None) -> DagLayout:
    """Layers, order and coordinates of a graph (see the module docstring)."""
    o = options or LayoutOptions()
    graph = graph_of(nodes)
    layer_of = _layer_of(graph)
    layers: list[list[str]] = [[] for _ in range(max(layer_of.values(), default=-1) + 1)]
    for v in graph.ids:
        layers[layer_of[v]].append(v)
    size = {v: len(layers[layer_of[v]]) for v in graph.ids}
    index = {v: i for layer in layers for i, v in enumerate(layer)}
    best = [list(layer) for layer in layers]
    fewest = crossings(best, graph)
    for _ in range(o.sweeps):
        if fewest == 0:
            break
        _sweep(layers, graph.preds, range(1, len(layers)), index, size)
        _sweep(layers, graph.succs, range(len(layers) - 2, -1, -1), index, size)
        count = crossings(layers, graph)
        if count < fewest:
            best, fewest = [list(layer) for layer in layers], count
    tallest = max((len(layer) for layer in best), default=0)
    pitch = o.node_height + o.node_gap
    placed: dict[str, tuple[int, int, float, float]] = {}
    for n, layer in enumerate(best):
        top = o.margin + (tallest - len(layer)) * pitch / 2
        for i, v in enumerate(layer):
            placed[v] = (n, i, o.margin + n * (o.node_width + o.layer_gap), top + i * pitch)
    width = 2 * o.margin + (len(best) * (o.node_width + o.layer_gap) - o.layer_gap if best else 0)
    height = 2 * o.margin + (tallest * pitch - o.node_gap if tallest else 0)
    nodes_in_order = {v: placed[v] for v in graph.ids}
    return DagLayout(graph, tuple(map(tuple, best)), nodes_in_order, width, height, o)


def critical_path(graph: Graph, durations: Mapping[str, int]) -> tuple[tuple[str, ...], int]:
    """The chain of dependencies with the greatest total duration, and that total (ms).

    Nothing (``()``, 0) while no agent has taken any time.
    """
    total: dict[str, int] = {}
    via: dict[str, str | None] = {}
    end, longest = None, 0
    for v in graph.topo:
        best, before = None, 0
        for d in graph.preds[v]:
            if best is None or total[d] > before:
                best, before = d, total[d]
        total[v] = before + durations.get(v, 0)
        via[v] = best
        if total[v] > longest:
            end, longest = v, total[v]
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = via[end]
    return tuple(reversed(path)), longest


def execution_layout(
    state: ExecutionState,
    now_ms: int,
    options: LayoutOptions | None = None,
    dag: DagLayout | None = None,
) -> ExecutionLayout:
    """Both views' geometry for ``state`` at ``now_ms`` (epoch ms; it only moves running bars).

    ``dag`` may be handed in (the graph changes only when agents are announced): callers cache
    it by the agents' ids and dependencies.
    """
    o = options or LayoutOptions()
    if dag is None:
        dag = dag_layout([(a.agent_id, a.depends_on) for a in state.agents], o)
    durations: dict[str, int] = {}
    for row in state.agents:
        start, end, _ = agent_span(row, now_ms)
        if start is not None and end is not None:
            durations[row.agent_id] = end - start
    path, longest = critical_path(dag.graph, durations)
    timeline = timeline_layout(state, dag.reading_order(), now_ms, o)
    return ExecutionLayout(dag, path, longest, timeline)
