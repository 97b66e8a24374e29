"""The notebook monitor's graph and timeline: inline SVG in one HTML string. Pure.

The geometry is :func:`zmqmon.core.layout.execution_layout`'s — the same numbers the dashboard's
``layout.js`` computes — drawn as SVG that any front end renders without a script or a fetch
(JupyterLab, Notebook 7, Voilà, VS Code): colours and sizes come from one ``<style>`` block scoped
to ``.zmqmon-views``, text follows the front end's theme variables (light or dark), and tooltips
are SVG ``<title>`` elements.

:class:`GraphViews` caches the graph's layout by the agents' ids and dependencies, so a render
only lays out the timeline and the critical path.
"""

from __future__ import annotations

from html import escape
from itertools import pairwise
from typing import Final

from zmqmon.core.layout import DagLayout, ExecutionLayout, LayoutOptions, dag_layout
from zmqmon.core.layout import execution_layout as _layout
from zmqmon.core.state import AgentState, ExecutionState
from zmqmon.core.timeline import agent_span
from zmqmon.widgets.view import STATUS_COLOURS, format_duration

__all__ = ["CRITICAL_COLOUR", "GraphViews", "dag_svg", "timeline_svg", "views_html"]

#: the critical path's outline (distinct from every status colour)
CRITICAL_COLOUR: Final = "#8b5cf6"
_GLYPHS: Final = {"failed": "✕", "cancelled": "⊘"}  # not by colour alone
_TEXT: Final = "var(--jp-ui-font-color1, var(--vscode-foreground, #1d2330))"
_MUTED: Final = "var(--jp-ui-font-color2, var(--vscode-descriptionForeground, #6b7385))"
_LINE: Final = "var(--jp-border-color1, rgba(128, 128, 128, 0.45))"
_BAND: Final = "rgba(128, 128, 128, 0.08)"


def _style() -> str:
    rules = [
        ".zmqmon-views{font-family:var(--jp-ui-font-family,sans-serif);margin:0.4em 0;}",
        f".zmqmon-views svg text{{fill:{_TEXT};font-size:12px;"
        "font-family:var(--jp-ui-font-family,sans-serif);}",
        f".zmqmon-views .zm-head{{color:{_MUTED};font-size:0.85em;margin:0.3em 0;}}",
        f".zmqmon-views .zm-wrap{{overflow:auto;max-height:34em;border:1px solid {_LINE};"
        "border-radius:6px;margin-bottom:0.5em;box-sizing:border-box;max-width:100%;}",
        f".zmqmon-views text.zm-muted{{fill:{_MUTED};font-size:11px;}}",
        f".zmqmon-views .zm-edge{{fill:none;stroke:{_MUTED};stroke-opacity:0.6;stroke-width:1.2;}}",
        f".zmqmon-views .zm-edge.zm-crit{{stroke:{CRITICAL_COLOUR};stroke-opacity:1;"
        "stroke-width:2.2;}",
        ".zmqmon-views .zm-box{fill:transparent;stroke-width:1.2;}",
        ".zmqmon-views .zm-s-pending .zm-box{stroke-dasharray:4 3;}",
        f".zmqmon-views .zm-band{{fill:{_BAND};}}",
        f".zmqmon-views .zm-tick{{stroke:{_LINE};}}",
        ".zmqmon-views .zm-open .zm-bar{fill-opacity:0.75;}",
        f".zmqmon-views .zm-crit .zm-box,.zmqmon-views .zm-crit .zm-bar{{stroke:{CRITICAL_COLOUR};"
        "stroke-width:2.2;}",
        ".zmqmon-views .zm-crit text.zm-name{font-weight:600;}",
    ]
    for status, colour in STATUS_COLOURS.items():
        s = f".zmqmon-views .zm-s-{status}"
        rules.append(f"{s} .zm-box{{stroke:{colour};fill:{colour};fill-opacity:0.14;}}")
        rules.append(f"{s} .zm-bar,{s} .zm-prog{{fill:{colour};}}")
        if status in _GLYPHS:
            rules.append(f"{s} text.zm-mark{{fill:{colour};font-weight:700;}}")
    rules.append(f".zmqmon-views .zm-s-failed text.zm-name{{fill:{STATUS_COLOURS['failed']};}}")
    # the critical outline wins over the status stroke (it comes later)
    rules.append(f".zmqmon-views .zm-crit .zm-box{{stroke:{CRITICAL_COLOUR};}}")
    return "<style>" + "".join(rules) + "</style>"


_STYLE: Final = _style()


def _n(x: float) -> str:
    return f"{round(x, 1):g}"


def _fit(label: str, px: float, char_px: float = 7.0) -> str:
    room = max(1, int(px // char_px))
    return label if len(label) <= room else label[: max(1, room - 1)] + "…"


def _elapsed_ms(agent: AgentState, now_ms: int) -> int | None:
    if agent.duration_ms is not None:
        return agent.duration_ms
    start, end, _ = agent_span(agent, now_ms)
    return None if start is None or end is None else end - start


def _tip(agent: AgentState, ms: int | None, critical: bool) -> str:
    head = agent.status + (f" · {agent.progress}%" if agent.status == "running" else "")
    if ms is not None and agent.status != "pending":
        head += f" · {format_duration(ms / 1000)}"
    lines = [f"{agent.agent_name} ({agent.agent_id})", head]
    if agent.depends_on:
        lines.append("after " + ", ".join(agent.depends_on))
    if critical:
        lines.append("on the critical path")
    if agent.error:
        lines.append(f"error: {agent.error}")
    return f"<title>{escape(chr(10).join(lines))}</title>"


def dag_svg(state: ExecutionState, layout: ExecutionLayout, now_ms: int) -> str:
    """The graph: a box per agent (status colour, progress strip, duration), dependency edges,
    the critical path outlined."""
    dag, o = layout.dag, layout.dag.options
    crit_nodes = set(layout.critical)
    crit_edges = set(pairwise(layout.critical))
    parts = [
        f'<svg class="zm-dag" xmlns="http://www.w3.org/2000/svg" width="{dag.width}" '
        f'height="{dag.height}" viewBox="0 0 {dag.width} {dag.height}">'
    ]
    for src, dst in dag.graph.edges:
        x1, y1, x2, y2 = dag.edge_points(src, dst)
        mid = (x1 + x2) / 2
        cls = "zm-edge zm-crit" if (src, dst) in crit_edges else "zm-edge"
        parts.append(
            f'<path class="{cls}" d="M{_n(x1)},{_n(y1)} C{_n(mid)},{_n(y1)} {_n(mid)},{_n(y2)} '
            f'{_n(x2)},{_n(y2)}"/>'
        )
    for agent in state.agents:
        _, _, x, y = dag.nodes[agent.agent_id]
        crit = agent.agent_id in crit_nodes
        ms = _elapsed_ms(agent, now_ms)
        if agent.status == "running":
            meta = f"{agent.progress}%"
        else:
            meta = "" if agent.status == "pending" or ms is None else format_duration(ms / 1000)
        if agent.status in _GLYPHS:
            meta = f"{_GLYPHS[agent.status]} {meta}".strip()
        room = o.node_width - 18 - (len(meta) * 7 + 6 if meta else 0)
        mid_y = o.node_height / 2 + 4
        cls = f"zm-node zm-s-{agent.status}" + (" zm-crit" if crit else "")
        parts.append(
            f'<g class="{cls}" data-agent-id="{escape(agent.agent_id)}" '
            f'transform="translate({_n(x)},{_n(y)})">{_tip(agent, ms, crit)}'
            f'<rect class="zm-box" width="{o.node_width}" height="{o.node_height}" rx="6"/>'
        )
        if agent.status == "running":
            width = max(0, min(100, agent.progress)) * (o.node_width - 2) / 100
            parts.append(
                f'<rect class="zm-prog" x="1" y="{o.node_height - 4}" height="3" '
                f'width="{_n(width)}"/>'
            )
        parts.append(
            f'<text x="9" y="{_n(mid_y)}">{escape(_fit(agent.agent_name or agent.agent_id, room))}'
            f'</text><text class="zm-muted" x="{o.node_width - 8}" y="{_n(mid_y)}" '
            f'text-anchor="end">{escape(meta)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(state: ExecutionState, layout: ExecutionLayout) -> str:
    """The timeline: a row per agent, its bar from start to end (to now while it runs),
    failures and cancellations marked, the critical path outlined, the time axis."""
    tl, o = layout.timeline, layout.dag.options
    crit = set(layout.critical)
    agents = {a.agent_id: a for a in state.agents}
    parts = [
        f'<svg class="zm-timeline" xmlns="http://www.w3.org/2000/svg" width="{tl.width}" '
        f'height="{tl.height}" viewBox="0 0 {tl.width} {tl.height}">'
    ]
    for offset, x, label in tl.scale.ticks:
        anchor = "start" if offset == 0 else "middle"
        parts.append(
            f'<line class="zm-tick" x1="{_n(x)}" x2="{_n(x)}" y1="{o.axis_height - 6}" '
            f'y2="{tl.height - o.bottom_pad}"/><text class="zm-muted" x="{_n(x)}" '
            f'y="{o.axis_height - 10}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    for i, row in enumerate(tl.rows):
        agent = agents[row.agent_id]
        on_path = row.agent_id in crit
        cls = f"zm-row zm-s-{agent.status}" + (" zm-crit" if on_path else "")
        cls += " zm-open" if row.open else ""
        mid = row.y + o.row_height / 2 + 4
        ms = None if row.start_ms is None or row.end_ms is None else row.end_ms - row.start_ms
        parts.append(
            f'<g class="{cls}" data-agent-id="{escape(row.agent_id)}">{_tip(agent, ms, on_path)}'
        )
        if i % 2:
            parts.append(
                f'<rect class="zm-band" x="0" y="{row.y}" width="{tl.width}" '
                f'height="{o.row_height}"/>'
            )
        name = _fit(agent.agent_name or agent.agent_id, o.label_width - 14, 6.6)
        parts.append(
            f'<text class="zm-name" x="{o.label_width - 8}" y="{_n(mid)}" '
            f'text-anchor="end">{escape(name)}</text>'
        )
        if row.x0 is not None and row.x1 is not None:
            parts.append(
                f'<rect class="zm-bar" x="{_n(row.x0)}" y="{row.y + 5}" rx="2" '
                f'width="{_n(max(2.0, row.x1 - row.x0))}" height="{o.row_height - 10}"/>'
            )
            if agent.status in _GLYPHS:
                parts.append(
                    f'<text class="zm-mark" x="{_n(max(row.x0 + 2, row.x1) + 4)}" '
                    f'y="{_n(mid)}">{_GLYPHS[agent.status]}</text>'
                )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def views_html(state: ExecutionState, layout: ExecutionLayout, now_ms: int) -> str:
    """The graph and the timeline with their critical-path line, as one HTML string."""
    names = {a.agent_id: a.agent_name or a.agent_id for a in state.agents}
    if layout.critical:
        head = f"critical path {format_duration(layout.critical_ms / 1000)}: " + " → ".join(
            names[v] for v in layout.critical
        )
    else:
        head = "critical path: nothing has run yet"
    return (
        f'<div class="zmqmon-views">{_STYLE}<div class="zm-head">{escape(head)}</div>'
        f'<div class="zm-wrap">{dag_svg(state, layout, now_ms)}</div>'
        f'<div class="zm-wrap">{timeline_svg(state, layout)}</div></div>'
    )


class GraphViews:
    """Renders :func:`views_html`, keeping the graph's layout while the agents and their
    dependencies stay the same (they change only when an execution announces its agents)."""

    def __init__(self, options: LayoutOptions | None = None) -> None:
        # 700 px: the timeline fits the monitor (56em wide) without a scroll bar
        self.options = options or LayoutOptions(timeline_width=700)
        self._key: tuple[tuple[str, tuple[str, ...]], ...] | None = None
        self._dag: DagLayout | None = None

    def layout(self, state: ExecutionState, now_ms: int) -> ExecutionLayout:
        """The state's layout at ``now_ms`` (epoch ms), the graph from the cache when it can."""
        key = tuple((a.agent_id, a.depends_on) for a in state.agents)
        if key != self._key or self._dag is None:
            self._key, self._dag = key, dag_layout(key, self.options)
        return _layout(state, now_ms, self.options, self._dag)

    def html(self, state: ExecutionState, now_ms: int) -> str:
        """:func:`views_html` of the state at ``now_ms``."""
        return views_html(state, self.layout(state, now_ms), now_ms)
