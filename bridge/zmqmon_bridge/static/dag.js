/*
 * The graph view: an execution's agents as boxes laid out by layout.js (left to right by
 * dependency), coloured by status (style.css: .node.s-<status>), each with its progress, its
 * duration, and a tooltip (<title>) with its error; the critical path outlined.
 *
 * The SVG is built once per graph structure and then only updated: a frame at 500 agents sets
 * the few attributes that changed (svg.js `set` skips the rest).
 */
(function (root) {
  "use strict";

  var S = root.ZmqmonSvg;
  var GLYPHS = { failed: "✕", cancelled: "⊘" };  // not by colour alone

  function create(container) {
    var svg = S.el("svg", { class: "dag", role: "img", "aria-label": "workflow graph" });
    container.appendChild(svg);
    var records = new Map();   // agentId -> {g, box, bar, label, meta, tip}
    var edges = [];            // [{path, from, to}]
    var structure = null;

    function build(dag, o) {
      svg.replaceChildren();
      records.clear();
      edges = [];
      var defs = S.el("defs", null, svg);
      ["arrow", "arrow-critical"].forEach(function (id) {
        var m = S.el("marker", { id: "zm-" + id, class: id, viewBox: "0 0 8 8", refX: 8, refY: 4,
                                 markerWidth: 8, markerHeight: 8, markerUnits: "userSpaceOnUse",
                                 orient: "auto" }, defs);
        S.el("path", { d: "M0,0 L8,4 L0,8 z" }, m);
      });
      S.set(svg, "width", dag.width);
      S.set(svg, "height", dag.height);
      S.set(svg, "viewBox", "0 0 " + dag.width + " " + dag.height);
      var eg = S.el("g", { class: "edges" }, svg);
      dag.graph.edges.forEach(function (e) {
        var p = root.ZmqmonLayout.edgePoints(dag, e[0], e[1]), mid = (p[0] + p[2]) / 2;
        var path = S.el("path", {
          class: "edge",
          d: "M" + p[0] + "," + p[1] + " C" + mid + "," + p[1] + " " + mid + "," + p[3] + " " +
             p[2] + "," + p[3],
          "marker-end": "url(#zm-arrow)",
        }, eg);
        edges.push({ path: path, key: e[0] + "\u0000" + e[1] });
      });
      var ng = S.el("g", { class: "nodes" }, svg);
      dag.nodes.forEach(function (n) {
        var g = S.el("g", { class: "node", transform: "translate(" + n.x + "," + n.y + ")" }, ng);
        g.dataset.agentId = n.id;
        var rec = {
          g: g,
          box: S.el("rect", { class: "box", width: o.nodeWidth, height: o.nodeHeight, rx: 6 }, g),
          bar: S.el("rect", { class: "bar", x: 1, y: o.nodeHeight - 4, height: 3, rx: 1.5,
                              width: 0 }, g),
          label: S.el("text", { class: "label", x: 9, y: o.nodeHeight / 2 + 4 }, g),
          meta: S.el("text", { class: "meta", x: o.nodeWidth - 8, y: o.nodeHeight / 2 + 4,
                               "text-anchor": "end" }, g),
          tip: S.el("title", null, g),
        };
        records.set(n.id, rec);
      });
    }

    /* state: the shown execution state; layout: ZmqmonLayout.frameLayout(...), whose graph
       (layout.dag, cached by views.js) is rebuilt here only when it is a new one; o: the
       layout's options. */
    var pathKey = null, lastNow = 0;

    function msOf(a, nowMs) {  // reported duration, or start to end (to now while running)
      if (a.durationMs !== null && a.durationMs !== undefined) return a.durationMs;
      var span = root.ZmqmonLayout.agentSpan(a, nowMs);
      return span[0] !== null ? span[1] - span[0] : null;
    }

    function update(state, layout, nowMs, o) {
      lastNow = nowMs;
      if (structure !== layout.dag) {
        build(layout.dag, o);
        structure = layout.dag;
        pathKey = null;
      }
      var path = layout.critical.path, key = path.join("\u0000");
      var onPath = new Set(path);
      if (key !== pathKey) {  // the edges change only with the critical path
        pathKey = key;
        var critEdges = new Set();
        for (var i = 1; i < path.length; i++) critEdges.add(path[i - 1] + "\u0000" + path[i]);
        edges.forEach(function (e) {
          var crit = critEdges.has(e.key);
          S.set(e.path, "class", crit ? "edge critical" : "edge");
          S.set(e.path, "marker-end", crit ? "url(#zm-arrow-critical)" : "url(#zm-arrow)");
        });
      }
      (state.agents || []).forEach(function (a) {
        var rec = records.get(a.agentId);
        if (!rec) return;
        var crit = onPath.has(a.agentId);
        // The reducer replaces only the rows an event changed: the others are skipped.
        if (rec.agent === a && rec.crit === crit) return;
        rec.agent = a;
        rec.crit = crit;
        S.set(rec.g, "class", "node s-" + a.status + (crit ? " critical" : ""));
        S.set(rec.g, "data-status", a.status);
        var pct = Math.max(0, Math.min(100, a.progress || 0));
        S.set(rec.bar, "width", a.status === "running" ? pct * (o.nodeWidth - 2) / 100 : 0);
        var ms = msOf(a, nowMs);
        var meta = a.status === "running" ? pct + "%"
          : a.status === "pending" || ms === null ? "" : S.fmtDuration(ms);
        if (GLYPHS[a.status]) meta = GLYPHS[a.status] + (meta ? " " + meta : "");
        S.text(rec.meta, meta);
        var name = a.agentName || a.agentId;
        var room = o.nodeWidth - 18 - (meta ? meta.length * 7 + 6 : 0);
        if (rec.fitted !== name + "\u0000" + room) {  // (the label changes rarely: fit it then)
          rec.fitted = name + "\u0000" + room;
          S.text(rec.label, S.fit(name, room, 7));
        }
      });
    }

    // Tooltips are written when the pointer comes, not every frame: 500 strings a frame saved.
    svg.addEventListener("mouseover", function (e) {
      var g = e.target.closest && e.target.closest(".node");
      var rec = g && records.get(g.dataset.agentId);
      if (rec && rec.agent) {
        var a = rec.agent;
        S.text(rec.tip, S.agentTip(a, a.status === "pending" ? null : msOf(a, lastNow), rec.crit));
      }
    });

    return { update: update, svg: svg };
  }

  root.ZmqmonDag = { create: create };
})(typeof self !== "undefined" ? self : this);
