/*
 * The detail panel's graph, timeline and replay scrubber, fed by app.js with the state it
 * already keeps (no second data path): app.js asks `shown(id, live, log)` which state to draw
 * (the live one, or the one as of the scrubbed seq, folded by reducer.js), `seqLimit(id)` how
 * far its event log goes, `nowFor(id)` the instant running durations run to, and calls
 * `render(id, state, log)` from its requestAnimationFrame-coalesced render. Nothing here
 * renders on an event: a frame draws once whatever the event rate.
 *
 * The graph's layout (layout.js) is cached by the agents' ids and dependencies: a frame only
 * computes the timeline and the critical path, and the views update only what changed.
 */
(function (root) {
  "use strict";

  var L = root.ZmqmonLayout;
  var $ = function (id) { return document.getElementById(id); };

  var replaySeq = {};   // executionId -> seq being shown (absent: live)
  var histories = {};   // executionId -> ZmqmonReplay.History
  var graph = { sig: null, dag: null };
  var dagView = null, timelineView = null, requestRender = function () {};
  var width = 720;      // the timeline's container, from a ResizeObserver (no layout reads)
  var current = null;   // the execution last rendered
  var drawn = null;     // … and the state drawn (for scripts and tests: ZmqmonViews.drawn())

  function history(id) {
    return histories[id] || (histories[id] = new root.ZmqmonReplay.History(root.ZmqmonReducer));
  }

  function attach(render) {
    requestRender = render;
    dagView = root.ZmqmonDag.create($("dag"));
    timelineView = root.ZmqmonTimeline.create($("timeline"));
    new ResizeObserver(function (entries) {
      var w = Math.floor(entries[0].contentRect.width);
      if (w > 0 && Math.abs(w - width) >= 4) { width = w; requestRender(); }
    }).observe($("timeline"));
    $("replay-seq").addEventListener("input", function (e) {
      if (!current) return;
      replaySeq[current] = +e.target.value;
      requestRender();
    });
    $("replay-live").addEventListener("click", function () { live(current); });
  }

  function live(id) {
    if (id) delete replaySeq[id];
    requestRender();
  }

  function scrub(id, seq) {  // (also for scripts and tests: window.ZmqmonViews.scrub)
    replaySeq[id] = seq;
    requestRender();
  }

  function replaying(id) { return replaySeq[id] !== undefined; }

  function shown(id, live, log) {
    if (!replaying(id) || !log) return live;
    var h = history(id), range = h.range(log);
    if (!range) return live;
    var seq = Math.max(range[0], Math.min(replaySeq[id], range[1]));
    replaySeq[id] = seq;
    return h.stateAt(log, seq) || live;
  }

  function seqLimit(id) { return replaying(id) ? replaySeq[id] : Infinity; }

  function nowFor(id, state, log) {
    if (replaying(id) && log) {
      var t = history(id).timeAt(log, replaySeq[id]);
      if (!isNaN(t)) return t;
    }
    // live: the browser's clock, never behind the last thing the state records
    var now = Date.now(), last = L.timestampMs(state.finishedAt);
    return last !== null ? Math.max(now, last) : now;
  }

  function options() {
    return Object.assign({}, L.DEFAULTS, { timelineWidth: Math.max(480, width) });
  }

  function dagFor(state, o) {
    var nodes = L.graphNodes(state);
    var sig = nodes.map(function (n) { return n[0] + "<" + n[1].join(","); }).join("\u0000");
    if (sig !== graph.sig) graph = { sig: sig, dag: L.dagLayout(nodes, o) };
    return graph.dag;
  }

  function renderScrubber(id, state, log, live) {
    var input = $("replay-seq"), on = replaying(id);
    var last = Math.max(live && live.lastSeq || 0, state.lastSeq || 0);
    var first = 1;
    var r = on && log ? history(id).range(log) : null;
    if (r) { first = r[0]; last = Math.max(last, r[1]); }
    input.min = String(first);
    input.max = String(Math.max(first, last));
    input.value = String(on ? replaySeq[id] : last);
    input.disabled = last < 1;
    $("replay-live").disabled = !on;
    $("detail").dataset.mode = on ? "replay" : "live";
    if (on) $("detail").dataset.replaySeq = String(replaySeq[id]);
    else delete $("detail").dataset.replaySeq;
    $("replay-at").textContent = on ? "seq " + replaySeq[id] + " of " + last
      : "live · seq " + last;
  }

  function render(id, state, log, live) {
    current = id;
    drawn = state;
    var o = options();
    var now = nowFor(id, state, log);
    var dag = dagFor(state, o);
    var layout = L.frameLayout(state, now, o, dag);
    dagView.update(state, layout, now, o);
    timelineView.update(state, layout, now, o);
    renderScrubber(id, state, log, live);
    var path = layout.critical.path;
    var names = {};
    (state.agents || []).forEach(function (a) { names[a.agentId] = a.agentName || a.agentId; });
    $("critical").textContent = path.length
      ? "critical path " + root.ZmqmonSvg.fmtDuration(layout.critical.ms) + ": " +
        path.map(function (v) { return names[v]; }).join(" → ")
      : "critical path: nothing has run yet";
    return layout;
  }

  root.ZmqmonViews = {
    attach: attach, shown: shown, seqLimit: seqLimit, nowFor: nowFor, render: render,
    scrub: scrub, live: live, replaying: replaying,
    drawn: function () { return drawn; },
  };
})(typeof self !== "undefined" ? self : this);
