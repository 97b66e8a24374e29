/*
 * The timeline (Gantt) view: one row per agent in the graph's reading order, a bar from its
 * start to its end (a running bar ends at "now" and grows), failures (✕) and cancellations (⊘)
 * marked at the bar's end, the critical path outlined, a time axis with the ticks layout.js
 * chose, and a tooltip (<title>) per row with the agent's duration and error.
 *
 * Rows are built once per set of agents and then only updated (svg.js `set` skips unchanged
 * attributes); the axis is redrawn only when its ticks change.
 */
(function (root) {
  "use strict";

  var S = root.ZmqmonSvg;
  var MARKS = { failed: "✕", cancelled: "⊘" };

  function create(container) {
    var svg = S.el("svg", { class: "timeline", role: "img", "aria-label": "agent timeline" });
    container.appendChild(svg);
    var axis = S.el("g", { class: "axis" }, svg);
    var body = S.el("g", { class: "rows" }, svg);
    var records = new Map();   // agentId -> {g, band, name, bar, mark, tip}
    var tickKey = null;

    function buildRows(tl, o) {  // rows, placed once per graph and width
      body.replaceChildren();
      records.clear();
      tl.rows.forEach(function (r, i) {
        var g = S.el("g", { class: "row" }, body), mid = r.y + o.rowHeight / 2;
        g.dataset.agentId = r.id;
        records.set(r.id, {
          g: g,
          band: S.el("rect", { class: i % 2 ? "band odd" : "band", x: 0, y: r.y, width: tl.width,
                               height: o.rowHeight }, g),
          name: S.el("text", { class: "name", x: o.labelWidth - 8, y: mid + 4,
                               "text-anchor": "end" }, g),
          bar: S.el("rect", { class: "span", rx: 2, y: r.y + 5, height: o.rowHeight - 10 }, g),
          mark: S.el("text", { class: "mark", y: mid + 4 }, g),
          tip: S.el("title", null, g),
        });
      });
    }

    function drawAxis(tl, o) {
      axis.replaceChildren();
      tl.ticks.forEach(function (t) {
        S.el("line", { class: "tick", x1: t.x, x2: t.x, y1: o.axisHeight - 6,
                       y2: tl.height - o.bottomPad }, axis);
        var label = S.el("text", { class: "tick-label", x: t.x, y: o.axisHeight - 10,
                                   "text-anchor": t.ms === 0 ? "start" : "middle" }, axis);
        label.textContent = t.label;
      });
      S.el("line", { class: "baseline", x1: o.labelWidth, x2: tl.width - o.rightPad,
                     y1: o.axisHeight - 0.5, y2: o.axisHeight - 0.5 }, axis);
    }

    var rowsOf = null, rowsWidth = 0;

    function update(state, layout, nowMs, o) {
      var tl = layout.timeline;
      S.set(svg, "width", tl.width);
      S.set(svg, "height", tl.height);
      S.set(svg, "viewBox", "0 0 " + tl.width + " " + tl.height);
      if (rowsOf !== layout.dag || rowsWidth !== tl.width) {  // rows follow the graph's order
        buildRows(tl, o);
        rowsOf = layout.dag;
        rowsWidth = tl.width;
      }
      var ticks = tl.height + "|" +
        tl.ticks.map(function (t) { return t.x.toFixed(1) + t.label; }).join();
      if (ticks !== tickKey) { drawAxis(tl, o); tickKey = ticks; }
      var agents = new Map();
      (state.agents || []).forEach(function (a) { agents.set(a.agentId, a); });
      var onPath = new Set(layout.critical.path);
      tl.rows.forEach(function (r) {
        var rec = records.get(r.id), a = agents.get(r.id);
        if (!rec || !a) return;
        var crit = onPath.has(r.id);
        rec.ms = r.startMs === null ? null : r.endMs - r.startMs;  // (for the tooltip)
        if (rec.agent !== a || rec.crit !== crit) {  // only the rows an event changed
          rec.agent = a;
          rec.crit = crit;
          S.set(rec.g, "class",
                "row s-" + a.status + (crit ? " critical" : "") + (r.open ? " open" : ""));
          S.set(rec.g, "data-status", a.status);
          var name = a.agentName || a.agentId;
          if (rec.fitted !== name) {
            rec.fitted = name;
            S.text(rec.name, S.fit(name, o.labelWidth - 14, 6.6));
          }
        }
        // Every frame: the scale moves while the run goes on.
        if (r.x0 === null) {
          S.set(rec.bar, "visibility", "hidden");
        } else {
          S.set(rec.bar, "visibility", "visible");
          S.set(rec.bar, "x", r.x0);
          S.set(rec.bar, "width", Math.max(2, r.x1 - r.x0));  // a 3 ms agent is still seen
        }
        var mark = r.x0 === null ? "" : MARKS[a.status] || "";
        S.text(rec.mark, mark);
        if (mark) S.set(rec.mark, "x", Math.max(r.x0 + 2, r.x1) + 4);
      });
    }

    // Tooltips are written when the pointer comes, not every frame.
    svg.addEventListener("mouseover", function (e) {
      var g = e.target.closest && e.target.closest(".row");
      var rec = g && records.get(g.dataset.agentId);
      if (rec && rec.agent) S.text(rec.tip, S.agentTip(rec.agent, rec.ms, rec.crit));
    });

    return { update: update, svg: svg };
  }

  root.ZmqmonTimeline = { create: create };
})(typeof self !== "undefined" ? self : this);
