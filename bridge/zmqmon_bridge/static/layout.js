/*
 * Where things go in the DAG and timeline views: a pure function of an execution's state.
 *
 * Mirrors zmqmon/core/layout.py and zmqmon/core/timeline.py rule for rule, and is tested on the
 * same fixtures (tests/fixtures/layout/*.json): executionLayout(state, nowMs, options) returns
 * what ExecutionLayout.to_json_dict() does. Sizes are whole pixels, times whole epoch ms, every
 * division the last step of its formula, so both languages compute the same numbers.
 *
 * Graph: layer = 1 + the deepest dependency's layer (unknown and self dependencies ignored, a
 * cycle broken at the first agent still waiting); order within a layer: state order, then up to
 * `sweeps` barycenter passes (down, then up; positions from the layer's centre; ties keep the
 * current order), the order with the fewest adjacent-layer crossings kept; one column per layer,
 * one slot per agent, columns centred on the tallest. Critical path: the dependency chain with
 * the greatest total duration. Timeline: rows in the graph's reading order, a bar per started
 * agent (a running one ends at now), an axis with "nice" ticks labelled as offsets.
 */
(function (root) {
  "use strict";

  var DEFAULTS = {
    timelineWidth: 720, labelWidth: 150, rightPad: 16, rowHeight: 22, axisHeight: 24,
    bottomPad: 8, minTickPx: 72, minSpanMs: 100,
    nodeWidth: 168, nodeHeight: 24, layerGap: 48, nodeGap: 6, margin: 8, sweeps: 4,
  };
  var NICE_STEPS_MS = [
    1, 2, 5, 10, 20, 50, 100, 200, 500,
    1000, 2000, 5000, 10000, 15000, 30000,
    60000, 120000, 300000, 600000, 900000, 1800000,
    3600000, 7200000, 10800000, 21600000, 43200000, 86400000,
  ];
  var DAY = 86400000;
  var TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

  function options(given) {
    return Object.assign({}, DEFAULTS, given || {});
  }

  // ---- time (zmqmon/core/timeline.py) ------------------------------------------------------

  var stampCache = new Map();

  function timestampMs(ts) {
    if (!ts || !TIMESTAMP.test(ts)) return null;
    var hit = stampCache.get(ts);
    if (hit !== undefined) return hit;
    var y = +ts.slice(0, 4), mo = +ts.slice(5, 7), d = +ts.slice(8, 10);
    var h = +ts.slice(11, 13), mi = +ts.slice(14, 16), s = +ts.slice(17, 19);
    var days = new Date(Date.UTC(2000, mo, 0)).getUTCDate();  // in that month (leap: below)
    if (mo === 2) days = (y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)) ? 29 : 28;
    var ok = y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= days && h < 24 && mi < 60 && s < 60;
    var out = null;
    if (ok) {
      var date = new Date(0);
      date.setUTCFullYear(y, mo - 1, d);  // (Date.UTC maps years 0-99 to 1900-1999)
      date.setUTCHours(h, mi, s, +ts.slice(20, 23));
      out = date.getTime();
    }
    if (stampCache.size > 8192) stampCache.clear();
    stampCache.set(ts, out);
    return out;
  }

  function agentSpan(row, nowMs) {
    var start = timestampMs(row.startedAt);
    if (start === null) return [null, null, false];
    var end = timestampMs(row.finishedAt);
    if (end === null) return [start, Math.max(start, nowMs), true];
    return [start, Math.max(start, end), false];
  }

  function pad2(n) { return n < 10 ? "0" + n : String(n); }

  function formatOffset(ms, stepMs) {
    if (ms === 0) return "0";
    var days = Math.floor(ms / DAY), hours = Math.floor(ms / 3600000) % 24;
    var minutes = Math.floor(ms / 60000) % 60, seconds = Math.floor(ms / 1000) % 60;
    var rest = ms % 1000;
    if (days) return days + " d" + (hours ? " " + hours + " h" : "");
    if (hours) return hours + " h" + (minutes ? " " + pad2(minutes) + " m" : "");
    if (minutes) return minutes + " m" + (seconds ? " " + pad2(seconds) + " s" : "");
    if (rest && stepMs < 1000) {
      var digits = stepMs % 100 === 0 ? 1 : stepMs % 10 === 0 ? 2 : 3;
      var frac = String(rest).padStart(3, "0").slice(0, digits).replace(/0+$/, "");
      return seconds + "." + frac + " s";
    }
    return seconds + " s";
  }

  function timeScale(startMs, endMs, x0, width, minTickPx) {
    var span = endMs - startMs;
    var step = 0, i, k;
    for (i = 0; i < NICE_STEPS_MS.length; i++) {
      if (NICE_STEPS_MS[i] * width >= minTickPx * span) { step = NICE_STEPS_MS[i]; break; }
    }
    for (k = 0; !step; k++) {  // more than a day per tick: 1, 2, 5, 10, 20 ... days
      var days = [1, 2, 5][k % 3] * Math.pow(10, Math.floor(k / 3));
      if (DAY * days * width >= minTickPx * span) step = DAY * days;
    }
    var ticks = [];
    for (var t = 0; t <= span; t += step) {
      ticks.push({ ms: t, x: x0 + t * width / span, label: formatOffset(t, step) });
    }
    return { startMs: startMs, endMs: endMs, x0: x0, width: width, stepMs: step, ticks: ticks };
  }

  function scaleX(scale, t) {
    return scale.x0 + (t - scale.startMs) * scale.width / (scale.endMs - scale.startMs);
  }

  function timelineLayout(state, order, nowMs, given) {
    var o = options(given);
    var byId = new Map();
    (state.agents || []).forEach(function (row) { byId.set(row.agentId, row); });
    var ids = [], listed = new Set();
    order.forEach(function (v) {
      if (byId.has(v) && !listed.has(v)) { listed.add(v); ids.push(v); }
    });
    byId.forEach(function (_, v) { if (!listed.has(v)) ids.push(v); });
    var spans = new Map(), starts = [], ends = [];
    ids.forEach(function (v) {
      var sp = agentSpan(byId.get(v), nowMs);
      spans.set(v, sp);
      if (sp[0] !== null) starts.push(sp[0]);
      if (sp[1] !== null) ends.push(sp[1]);
    });
    var begin = timestampMs(state.startedAt);
    var t0 = begin !== null ? begin : starts.length ? starts[0] : nowMs;
    starts.forEach(function (t) { t0 = Math.min(t0, t); });  // (no apply: 100k agents)
    var finished = timestampMs(state.finishedAt);
    var t1 = finished !== null ? finished : nowMs;
    ends.forEach(function (t) { t1 = Math.max(t1, t); });
    t1 = Math.max(t1, t0 + o.minSpanMs);
    var plot = o.timelineWidth - o.labelWidth - o.rightPad;
    var scale = timeScale(t0, t1, o.labelWidth, plot, o.minTickPx);
    var rows = ids.map(function (v, i) {
      var sp = spans.get(v), y = o.axisHeight + i * o.rowHeight;
      if (sp[0] === null || sp[1] === null) {
        return { id: v, y: y, startMs: null, endMs: null, open: false, x0: null, x1: null };
      }
      return { id: v, y: y, startMs: sp[0], endMs: sp[1], open: sp[2],
               x0: scaleX(scale, sp[0]), x1: scaleX(scale, sp[1]) };
    });
    return {
      width: o.timelineWidth, height: o.axisHeight + ids.length * o.rowHeight + o.bottomPad,
      startMs: t0, endMs: t1, stepMs: scale.stepMs, ticks: scale.ticks, rows: rows,
    };
  }

  // ---- the graph (zmqmon/core/layout.py) ---------------------------------------------------

  function graphOf(nodes) {  // nodes: [[id, dependsOn], ...]
    var ids = [], deps = new Map();
    nodes.forEach(function (n) { if (!deps.has(n[0])) { deps.set(n[0], null); ids.push(n[0]); } });
    nodes.forEach(function (n) {
      if (deps.get(n[0]) !== null) return;  // the first mention of an id wins
      var seen = new Set(), ds = [];
      (n[1] || []).forEach(function (d) {
        if (deps.has(d) && d !== n[0] && !seen.has(d)) { seen.add(d); ds.push(d); }
      });
      deps.set(n[0], ds);
    });
    var edges = [], waiting = new Map(), dependents = new Map();
    ids.forEach(function (v) { waiting.set(v, deps.get(v).length); dependents.set(v, []); });
    ids.forEach(function (v) {
      deps.get(v).forEach(function (d) { edges.push([d, v]); dependents.get(d).push(v); });
    });
    var queue = ids.filter(function (v) { return waiting.get(v) === 0; });
    var queued = new Set(queue), topo = [];
    while (topo.length < ids.length) {
      if (topo.length === queue.length) {  // only a cycle is left: break it at its first agent
        for (var i = 0; i < ids.length; i++) {
          if (!queued.has(ids[i])) { queue.push(ids[i]); queued.add(ids[i]); break; }
        }
      }
      var v = queue[topo.length];
      topo.push(v);
      dependents.get(v).forEach(function (w) {
        waiting.set(w, waiting.get(w) - 1);
        if (waiting.get(w) === 0 && !queued.has(w)) { queue.push(w); queued.add(w); }
      });
    }
    var position = new Map();
    topo.forEach(function (v, i) { position.set(v, i); });
    var preds = new Map(), succs = new Map();
    ids.forEach(function (v) {
      preds.set(v, deps.get(v).filter(function (d) { return position.get(d) < position.get(v); }));
      succs.set(v, []);
    });
    ids.forEach(function (v) { preds.get(v).forEach(function (d) { succs.get(d).push(v); }); });
    return { ids: ids, preds: preds, succs: succs, topo: topo, edges: edges };
  }

  function layerOf(graph) {
    var layer = new Map();
    graph.topo.forEach(function (v) {
      var deepest = -1;
      graph.preds.get(v).forEach(function (d) { deepest = Math.max(deepest, layer.get(d)); });
      layer.set(v, 1 + deepest);
    });
    return layer;
  }

  function inversions(values) {  // pairs i < j with values[i] > values[j] (a Fenwick tree)
    var size = 1;
    values.forEach(function (v) { size = Math.max(size, v + 2); });
    var tree = new Array(size + 1).fill(0), count = 0;
    values.forEach(function (value, seen) {
      var i = value + 1, atMost = 0;
      for (; i > 0; i -= i & -i) atMost += tree[i];
      count += seen - atMost;
      for (i = value + 1; i <= size; i += i & -i) tree[i] += 1;
    });
    return count;
  }

  function crossings(layers, graph) {
    var layer = new Map(), index = new Map(), total = 0;
    layers.forEach(function (vs, n) {
      vs.forEach(function (v, i) { layer.set(v, n); index.set(v, i); });
    });
    layers.forEach(function (upper, n) {
      var ends = [];
      upper.forEach(function (u) {
        graph.succs.get(u).forEach(function (v) {
          if (layer.get(v) === n + 1) ends.push([index.get(u), index.get(v)]);
        });
      });
      ends.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; });
      total += inversions(ends.map(function (e) { return e[1]; }));
    });
    return total;
  }

  function sweep(layers, neighbours, order, index, size) {
    order.forEach(function (n) {
      var keys = new Map();
      layers[n].forEach(function (v) {
        var near = neighbours.get(v);
        if (near.length) {
          var total = 0;
          near.forEach(function (u) { total += index.get(u) - (size.get(u) - 1) / 2; });
          keys.set(v, [total / near.length, index.get(v)]);
        } else {
          keys.set(v, [index.get(v) - (size.get(v) - 1) / 2, index.get(v)]);
        }
      });
      layers[n].sort(function (a, b) {
        var ka = keys.get(a), kb = keys.get(b);
        return ka[0] - kb[0] || ka[1] - kb[1];
      });
      layers[n].forEach(function (v, i) { index.set(v, i); });
    });
  }

  function range(from, to, step) {
    var out = [];
    for (var i = from; step > 0 ? i < to : i > to; i += step) out.push(i);
    return out;
  }

  function dagLayout(nodes, given) {
    var o = options(given);
    var graph = graphOf(nodes), layerMap = layerOf(graph), count = 0;
    layerMap.forEach(function (n) { count = Math.max(count, n + 1); });
    var layers = [];
    for (var n = 0; n < count; n++) layers.push([]);
    graph.ids.forEach(function (v) { layers[layerMap.get(v)].push(v); });
    var size = new Map(), index = new Map();
    graph.ids.forEach(function (v) { size.set(v, layers[layerMap.get(v)].length); });
    layers.forEach(function (vs) { vs.forEach(function (v, i) { index.set(v, i); }); });
    var copy = function (ls) { return ls.map(function (l) { return l.slice(); }); };
    var best = copy(layers), fewest = crossings(best, graph);
    for (var s = 0; s < o.sweeps && fewest !== 0; s++) {
      sweep(layers, graph.preds, range(1, layers.length, 1), index, size);
      sweep(layers, graph.succs, range(layers.length - 2, -1, -1), index, size);
      var c = crossings(layers, graph);
      if (c < fewest) { best = copy(layers); fewest = c; }
    }
    var tallest = 0;
    best.forEach(function (l) { tallest = Math.max(tallest, l.length); });
    var pitch = o.nodeHeight + o.nodeGap, placed = new Map();
    best.forEach(function (layer, n) {
      var top = o.margin + (tallest - layer.length) * pitch / 2;
      layer.forEach(function (v, i) {
        placed.set(v, { id: v, layer: n, index: i, x: o.margin + n * (o.nodeWidth + o.layerGap),
                        y: top + i * pitch });
      });
    });
    return {
      graph: graph,
      layers: best,
      nodes: graph.ids.map(function (v) { return placed.get(v); }),
      byId: placed,
      width: 2 * o.margin +
        (best.length ? best.length * (o.nodeWidth + o.layerGap) - o.layerGap : 0),
      height: 2 * o.margin + (tallest ? tallest * pitch - o.nodeGap : 0),
      options: o,
    };
  }

  function criticalPath(graph, durations) {
    var total = new Map(), via = new Map(), end = null, longest = 0;
    graph.topo.forEach(function (v) {
      var best = null, before = 0;
      graph.preds.get(v).forEach(function (d) {
        if (best === null || total.get(d) > before) { best = d; before = total.get(d); }
      });
      total.set(v, before + (durations.get(v) || 0));
      via.set(v, best);
      if (total.get(v) > longest) { end = v; longest = total.get(v); }
    });
    var path = [];
    for (; end !== null; end = via.get(end)) path.push(end);
    return { path: path.reverse(), ms: longest };
  }

  function readingOrder(dag) {  // layer by layer, top to bottom (kept on the cached graph)
    if (!dag.order) {
      dag.order = [];
      dag.layers.forEach(function (l) { l.forEach(function (v) { dag.order.push(v); }); });
    }
    return dag.order;
  }

  function edgePoints(dag, from, to) {  // right middle of `from` to left middle of `to`
    var o = dag.options, a = dag.byId.get(from), b = dag.byId.get(to);
    return [a.x + o.nodeWidth, a.y + o.nodeHeight / 2, b.x, b.y + o.nodeHeight / 2];
  }

  function graphNodes(state) {
    return (state.agents || []).map(function (a) { return [a.agentId, a.dependsOn || []]; });
  }

  /* What a frame draws: the graph (`dag`, from dagLayout(graphNodes(state), options), may be
     handed in: it changes only when agents are announced, so callers cache it), its critical
     path and the timeline at nowMs. */
  function frameLayout(state, nowMs, given, dag) {
    var o = options(given);
    if (!dag) dag = dagLayout(graphNodes(state), o);
    var durations = new Map();
    (state.agents || []).forEach(function (row) {
      var sp = agentSpan(row, nowMs);
      if (sp[0] !== null && sp[1] !== null) durations.set(row.agentId, sp[1] - sp[0]);
    });
    return {
      dag: dag,
      critical: criticalPath(dag.graph, durations),
      timeline: timelineLayout(state, readingOrder(dag), nowMs, o),
    };
  }

  /* frameLayout in the form ExecutionLayout.to_json_dict() gives (what the fixtures hold). */
  function executionLayout(state, nowMs, given, dag) {
    var f = frameLayout(state, nowMs, given, dag), cp = f.critical, onPath = new Set();
    for (var i = 1; i < cp.path.length; i++) onPath.add(cp.path[i - 1] + "\u0000" + cp.path[i]);
    return {
      dag: {
        width: f.dag.width,
        height: f.dag.height,
        layers: f.dag.layers.map(function (l) { return l.slice(); }),
        nodes: f.dag.nodes.map(function (n) {
          return { id: n.id, layer: n.layer, index: n.index, x: n.x, y: n.y };
        }),
        edges: f.dag.graph.edges.map(function (e) {
          return { from: e[0], to: e[1], points: edgePoints(f.dag, e[0], e[1]),
                   critical: onPath.has(e[0] + "\u0000" + e[1]) };
        }),
      },
      critical: { path: cp.path, ms: cp.ms },
      timeline: f.timeline,
    };
  }

  var api = {
    DEFAULTS: DEFAULTS, NICE_STEPS_MS: NICE_STEPS_MS,
    timestampMs: timestampMs, agentSpan: agentSpan, formatOffset: formatOffset,
    timeScale: timeScale, timelineLayout: timelineLayout,
    graphOf: graphOf, crossings: crossings, dagLayout: dagLayout, criticalPath: criticalPath,
    graphNodes: graphNodes, edgePoints: edgePoints, frameLayout: frameLayout,
    executionLayout: executionLayout,
  };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.ZmqmonLayout = api;
  }
})(typeof self !== "undefined" ? self : this);
