"""The notebook's graph and timeline HTML (widgets/graph.py), from the shared layout fixtures."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from tests.layout_cases import layout_fixtures, run_events
from zmqmon.core.events import parse_event
from zmqmon.core.layout import LayoutOptions
from zmqmon.core.state import ExecutionState, replay
from zmqmon.widgets.graph import GraphViews, views_html

FIXTURES = layout_fixtures()


def _state(events: list[dict]) -> ExecutionState:  # type: ignore[type-arg]
    state = replay(parse_event(e) for e in events)
    assert state is not None
    return state


class _Tags(HTMLParser):
    """Every element (tag, attributes) and the text inside <title> and <text> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.titles: list[str] = []
        self.texts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.titles.append(data)
        elif self._in == "text":
            self.texts.append(data)


def _parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    tags.close()
    return tags


def _with_class(tags: _Tags, cls: str) -> list[dict[str, str | None]]:
    return [a for _, a in tags.tags if cls in (a.get("class") or "").split()]


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["description"] for f in FIXTURES])
def test_every_agent_is_drawn_with_its_status_at_the_layout_s_place(fixture: dict) -> None:  # type: ignore[type-arg]
    state = _state(fixture["events"])
    views = GraphViews(LayoutOptions())  # the fixtures' sizes (the monitor's timeline is narrower)
    layout = views.layout(state, fixture["nowMs"])
    assert layout.to_json_dict() == fixture["expected"]  # the geometry layout.js draws too
    tags = _parse(views.html(state, fixture["nowMs"]))
    nodes = _with_class(tags, "zm-node")
    rows = _with_class(tags, "zm-row")
    statuses = {a.agent_id: a.status for a in state.agents}
    for drawn in (nodes, rows):
        assert {n["data-agent-id"]: _status(n) for n in drawn} == statuses
    expected = {n["id"]: (n["x"], n["y"]) for n in fixture["expected"]["dag"]["nodes"]}
    for node in nodes:
        x, y = re.fullmatch(r"translate\(([\d.]+),([\d.]+)\)", node["transform"] or "").groups()  # type: ignore[union-attr]
        assert (float(x), float(y)) == pytest.approx(expected[node["data-agent-id"]], abs=0.06)
    critical = fixture["expected"]["critical"]["path"]
    assert [n["data-agent-id"] for n in nodes if "zm-crit" in (n["class"] or "")] == [
        v for v in statuses if v in critical
    ]
    assert len(_with_class(tags, "zm-edge")) == len(fixture["expected"]["dag"]["edges"])
    bars = _with_class(tags, "zm-bar")
    assert len(bars) == sum(r["x0"] is not None for r in fixture["expected"]["timeline"]["rows"])
    # no inline style inside the drawing: colours come from the one scoped <style> block
    assert not [t for t, a in tags.tags if "style" in a]
    assert [t for t, _ in tags.tags].count("style") == 1


def _status(node: dict[str, str | None]) -> str:
    return next(c[5:] for c in (node["class"] or "").split() if c.startswith("zm-s-"))


def test_failures_are_marked_and_explained_in_tooltips() -> None:
    fixture = next(f for f in FIXTURES if f["description"] == "fan-out-fan-in-30-failed")
    state = _state(fixture["events"])
    html = GraphViews().html(state, fixture["nowMs"])
    tags = _parse(html)
    failed = [t for t in tags.titles if t.startswith("Worker 07 (w07)")]
    assert len(failed) == 2  # the node's and the row's
    assert all("failed · " in t and "error: boom" in t and "after split" in t for t in failed)
    assert html.count('class="zm-mark"') == 1 and "✕" in html


def test_names_are_escaped_and_long_ones_cut() -> None:
    agents = [("a", "<script>alert(1)</script>", []), ("b", "B" * 80, ["a"])]
    state = _state(run_events(agents, {"a": 100, "b": 100}))
    html = GraphViews().html(state, 0)
    assert "<script>" not in html and "&lt;script&gt;" in html
    labels = [t for t in _parse(html).texts if t.startswith("BBB")]
    assert len(labels) == 2 and all(len(t) < 30 and t.endswith("…") for t in labels)
    assert any("B" * 80 in t for t in _parse(html).titles)  # whole in the tooltips


def test_the_graph_layout_is_cached_until_the_agents_change() -> None:
    fixture = FIXTURES[0]
    state = _state(fixture["events"])
    views = GraphViews(LayoutOptions())
    first = views.layout(state, fixture["nowMs"]).dag
    assert views.layout(state, fixture["nowMs"] + 5).dag is first
    other = _state(run_events([("x", "X", [])], {"x": 10}))
    assert views.layout(other, 0).dag is not first


def test_nothing_run_yet() -> None:
    state = _state(run_events([("a", "A", [])], {"a": 10}, until=0)[:1])
    assert "nothing has run yet" in views_html(state, GraphViews().layout(state, 0), 0)
