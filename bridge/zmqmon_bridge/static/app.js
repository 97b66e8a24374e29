/*
 * zmqmon dashboard: a live list of executions (subscription to the topic "exec/") and the detail
 * of one (subscription by executionId from seq 0: agents, progress, event log). Both in "state"
 * mode: during a flood the bridge sends a fresh snapshot instead of a backlog, so the page stays
 * current instead of replaying it (the log then notes what it skipped).
 * State is derived with reducer.js — the same rules as the Python reducer. Reconnects by itself
 * and resumes each execution subscription with afterSeq, so nothing is missed or doubled.
 * No framework, no build step, nothing fetched from anywhere but this bridge.
 */
(function () {
  "use strict";

  var R = window.ZmqmonReducer;
  var V = window.ZmqmonViews;  // graph, timeline and replay (views.js); optional
  var $ = function (id) { return document.getElementById(id); };

  var states = {};        // executionId -> state (reducer.js form)
  var logs = {};          // executionId -> {seq: event} for executions opened in detail
  var subscribed = {};    // executionId -> true: execution subscriptions to (re)establish
  var selected = null;
  var ws = null;
  var retry = 0;
  var authOn = false;
  var renderQueued = false;
  var expanded = {};      // "execId:seq" -> true
  var MAX_ROWS = 200;     // executions listed
  // Set by actions.js (run, cancel, filters, history): which states the list shows, how many
  // rows, and what to redraw with the page.
  var hooks = { accepts: null, rowLimit: MAX_ROWS, onRender: [] };
  var MAX_LOG = 500;      // event log lines rendered

  // ---- connection -------------------------------------------------------------------------

  function token() {
    return $("token").value.trim() || sessionStorage.getItem("zmqmon-token") || "";
  }

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn-text").textContent = text || state;
  }

  function notice(text, isError) {
    var el = $("notice");
    if (!text) { el.hidden = true; return; }
    el.textContent = text;
    el.className = "notice" + (isError ? " error" : "");
    el.hidden = false;
  }

  function wsUrl() {
    var proto = location.protocol === "https:" ? "wss:" : "ws:";
    var url = proto + "//" + location.host + "/api/ws";
    var t = token();
    return t ? url + "?token=" + encodeURIComponent(t) : url;
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  function lastSeqOf(id) {
    var log = logs[id];
    if (!log) return 0;
    var last = 0;
    for (var k in log) { if (+k > last) last = +k; }
    return last;
  }

  function connect() {
    setConn(retry ? "reconnecting" : "connecting");
    var sock = new WebSocket(wsUrl());
    ws = sock;
    var opened = false;
    sock.onopen = function () {
      opened = true;
      retry = 0;
      setConn("connected");
      notice("");
      send({ type: "subscribe", topic: "exec/", mode: "state" });
      // Resume each execution where its log stops: the bridge sends what was missed, once.
      Object.keys(subscribed).forEach(function (id) {
        send({ type: "subscribe", executionId: id, afterSeq: lastSeqOf(id), mode: "state" });
      });
      seed();
    };
    sock.onmessage = function (e) {
      var msg;
      try { msg = JSON.parse(e.data); } catch (err) { return; }
      onMessage(msg);
    };
    sock.onclose = function (e) {
      if (ws !== sock) return;
      ws = null;
      if (!opened && authOn) {
        setConn("unauthorized", "token refused");
        notice("The bridge refused the connection: enter a valid token.", true);
        $("token-form").hidden = false;
        return;
      }
      retry = Math.min(retry + 1, 6);
      var delay = Math.min(500 * Math.pow(2, retry - 1), 8000);
      setConn("reconnecting", "reconnecting" + (e.code ? " (" + e.code + ")" : ""));
      setTimeout(connect, delay);
    };
  }

  function seed() {
    var t = token();
    var headers = t ? { Authorization: "Bearer " + t } : {};
    fetch("/api/executions", { headers: headers }).then(function (r) {
      return r.ok ? r.json() : { executions: [] };
    }).then(function (body) {
      (body.executions || []).forEach(function (s) {
        var cur = states[s.executionId];
        if (!cur || cur.lastSeq < s.lastSeq) states[s.executionId] = s;
      });
      queueRender();
    }).catch(function () { /* the live stream still fills the list */ });
  }

  // ---- messages ---------------------------------------------------------------------------

  function onMessage(msg) {
    switch (msg.type) {
      case "connected":
      case "subscribed":
      case "unsubscribed":
      case "pong":
        return;
      case "snapshot":
        states[msg.executionId] = msg.execution;
        var log = logs[msg.executionId];
        var at = msg.execution && msg.execution.lastSeq;
        if (log && at && !log[at] && lastSeqOf(msg.executionId) < at) {
          // state mode: the bridge skipped a backlog; the log says so where it resumes
          log[at] = { type: "snapshot", seq: at, executionId: msg.executionId,
                      timestamp: new Date().toISOString(), data: {},
                      execution: msg.execution };  // replay restarts from it
        }
        queueRender();
        return;
      case "error":
        notice(msg.code + ": " + msg.message, true);
        if (msg.executionId && subscribed[msg.executionId]) {
          // a refused subscription (not_found, forbidden): forget it, do not resume it
          delete subscribed[msg.executionId];
          delete logs[msg.executionId];
          if (selected === msg.executionId) selected = null;
          renderNow();
        }
        return;
      default:
        if (typeof msg.seq === "number" && msg.executionId) onEvent(msg);
    }
  }

  function onEvent(ev) {
    var id = ev.executionId;
    states[id] = R.applyEvent(states[id] || null, ev);
    if (logs[id]) logs[id][ev.seq] = ev;
    queueRender();
  }

  // ---- actions ----------------------------------------------------------------------------

  function select(id) {
    selected = id;
    if (!subscribed[id]) {
      subscribed[id] = true;
      logs[id] = {};
      // the log from the start, then live (a snapshot instead of a long backlog)
      send({ type: "subscribe", executionId: id, afterSeq: 0, mode: "state" });
    }
    renderNow();
  }

  function unsubscribe(id) {
    if (!id) return;
    delete subscribed[id];
    send({ type: "unsubscribe", executionId: id });
    if (selected === id) selected = null;
    delete logs[id];
    renderNow();
  }

  // ---- rendering --------------------------------------------------------------------------

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function badge(status) { return el("span", "badge " + status, status); }

  function bar(progress, status, big) {
    var p = el("div", "progress " + status + (big ? " big" : ""));
    var b = el("div", "bar");
    b.style.width = Math.max(0, Math.min(100, progress || 0)) + "%";
    p.appendChild(b);
    return p;
  }

  function progressCell(progress, status) {
    var c = el("div", "cell-progress");
    c.appendChild(bar(progress, status));
    c.appendChild(el("span", "n", (progress || 0) + "%"));
    return c;
  }

  function parseTs(ts) { return ts ? Date.parse(ts) : NaN; }

  function fmtTime(ts) {
    var t = parseTs(ts);
    if (isNaN(t)) return "—";
    var d = new Date(t);
    var same = new Date().toDateString() === d.toDateString();
    var hms = d.toLocaleTimeString([], { hour12: false });
    return same ? hms : d.toLocaleDateString() + " " + hms;
  }

  function fmtClock(ts) {  // local time of day with milliseconds, like the Started column
    var t = parseTs(ts);
    if (isNaN(t)) return "";
    var d = new Date(t), p = function (n, w) { return String(n).padStart(w, "0"); };
    // by hand: toLocaleTimeString costs ~0.1 ms, and a busy log formats hundreds a frame
    return p(d.getHours(), 2) + ":" + p(d.getMinutes(), 2) + ":" + p(d.getSeconds(), 2) + "." +
      p(d.getMilliseconds(), 3);
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60);
    return m + " m " + Math.round(s - 60 * m) + " s";
  }

  function duration(startedAt, finishedAt, running, now) {
    var a = parseTs(startedAt);
    if (isNaN(a)) return null;
    var b = finishedAt ? parseTs(finishedAt) : (running ? (now || Date.now()) : NaN);
    return isNaN(b) ? null : Math.max(0, b - a);
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(function () { renderQueued = false; renderNow(); });
  }

  function renderNow() {
    renderList();
    renderDetail();
    renderSubs();
    hooks.onRender.forEach(function (fn) { fn(states, selected); });
  }

  function renderList() {
    var ids = Object.keys(states).sort(function (a, b) {
      var x = states[a].startedAt || "", y = states[b].startedAt || "";
      return x < y ? 1 : x > y ? -1 : 0;
    });
    var known = ids.length;
    if (hooks.accepts) ids = ids.filter(function (id) { return hooks.accepts(states[id]); });
    $("exec-count").textContent = ids.length === known ? String(known) : ids.length + " of " + known;
    $("empty").hidden = ids.length > 0;
    $("empty").textContent = known ? "No execution matches these filters."
      : "No executions yet. They appear here as soon as they start.";
    var body = $("exec-rows");
    var rows = document.createDocumentFragment();
    // The newest rows (and the selected one): a long-lived page stays fast.
    ids = ids.filter(function (id, i) { return i < hooks.rowLimit || id === selected; });
    ids.forEach(function (id) {
      var s = states[id];
      var tr = el("tr", id === selected ? "selected" : "");
      tr.dataset.execId = id;
      tr.dataset.status = s.status;
      tr.appendChild(el("td")).appendChild(badge(s.status));
      var wf = tr.appendChild(el("td"));
      wf.appendChild(el("div", "wf", s.workflowName || s.workflowId || "—"));
      wf.appendChild(el("div", "id", id));
      tr.appendChild(el("td")).appendChild(progressCell(s.progress, s.status));
      tr.appendChild(el("td", "time", fmtTime(s.startedAt)));
      tr.appendChild(el("td", "num", fmtDuration(duration(s.startedAt, s.finishedAt, s.status === "running"))));
      tr.addEventListener("click", function () { select(id); });
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderDetail() {
    var live = selected && states[selected];
    $("detail").hidden = !selected;
    $("placeholder").hidden = !!selected;
    if (!selected) return;
    var s = live || { executionId: selected, status: "pending", progress: 0, agents: [], lastSeq: 0 };
    // replay: every part of the detail shows the state as of the scrubbed seq
    if (V) s = V.shown(selected, s, logs[selected]);
    var now = V ? V.nowFor(selected, s, logs[selected]) : Date.now();
    $("detail").dataset.status = s.status;
    $("d-name").textContent = s.workflowName || s.workflowId || "Execution";
    $("d-id").textContent = s.executionId;
    var st = $("d-status");
    st.className = "badge " + s.status;
    st.textContent = s.status;
    var prog = $("d-progress");
    prog.className = "progress big " + s.status;
    prog.querySelector(".bar").style.width = (s.progress || 0) + "%";
    $("d-pct").textContent = (s.progress || 0) + "%";
    $("d-started").textContent = fmtTime(s.startedAt);
    $("d-duration").textContent = fmtDuration(duration(s.startedAt, s.finishedAt, s.status === "running", now));
    $("d-user").textContent = s.userId || "—";
    $("d-seq").textContent = String(s.lastSeq || 0);
    $("d-error").hidden = !s.error;
    $("d-error").textContent = s.error || "";

    // One row per agent, kept and updated in place: a frame at 500 agents rebuilds nothing.
    var body = $("agent-rows");
    if (agentDom.id !== selected) { agentDom = { id: selected, rows: {} }; body.replaceChildren(); }
    (s.agents || []).forEach(function (a, i) {
      var r = agentDom.rows[a.agentId] || (agentDom.rows[a.agentId] = agentRow(a));
      if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
      var ms = a.durationMs !== null && a.durationMs !== undefined
        ? a.durationMs : duration(a.startedAt, a.finishedAt, a.status === "running", now);
      updateAgentRow(r, a, fmtDuration(ms));
    });
    while (body.children.length > (s.agents || []).length) body.lastChild.remove();
    if (V) V.render(selected, s, logs[selected], live);
    renderLog(selected);
  }

  var agentDom = { id: null, rows: {} };  // agentId -> the cells of its row

  function agentRow(a) {
    var tr = el("tr"), name = tr.appendChild(el("td"));
    tr.dataset.agentId = a.agentId;
    var r = { tr: tr, name: name.appendChild(el("div", "wf")), id: name.appendChild(el("div", "id")),
              badge: badge(a.status), cell: progressCell(0, a.status),
              dur: el("td", "num"), err: el("td", "err") };
    tr.appendChild(el("td")).appendChild(r.badge);
    tr.appendChild(el("td")).appendChild(r.cell);
    tr.appendChild(r.dur);
    tr.appendChild(r.err);
    return r;
  }

  function setText(e, text) { if (e.textContent !== text) e.textContent = text; }

  function updateAgentRow(r, a, dur) {
    if (r.tr.dataset.status !== a.status) {
      r.tr.dataset.status = a.status;
      r.badge.className = "badge " + a.status;
      r.badge.textContent = a.status;
      r.cell.firstChild.className = "progress " + a.status;
    }
    var pct = Math.max(0, Math.min(100, a.progress || 0));
    var bar = r.cell.firstChild.firstChild;
    if (bar.style.width !== pct + "%") bar.style.width = pct + "%";
    setText(r.cell.lastChild, (a.progress || 0) + "%");
    setText(r.name, a.agentName);
    setText(r.id, a.agentId);
    setText(r.dur, dur);
    setText(r.err, a.error || "");
  }

  function summary(ev) {
    var d = ev.data || {};
    switch (ev.type) {
      case "execution:started": return (d.workflowName || "") + " · " + d.agentCount + " agents";
      case "execution:progress": return d.progress + "%" + (d.currentAgent ? " · " + d.currentAgent : "");
      case "execution:completed": return fmtDuration(d.durationMs);
      case "execution:failed": return d.error || "";
      case "execution:cancelled": return d.reason || "";
      case "agent:progress": return d.agentName + " " + d.progress + "%" + (d.message ? " · " + d.message : "");
      case "agent:failed": return d.agentName + ": " + (d.error || "");
      case "agent:completed": return d.agentName + " · " + fmtDuration(d.durationMs);
      case "snapshot": return "caught up: earlier events skipped (see afterSeq to read them)";
      default: return d.agentName || "";
    }
  }

  // The log's lines, kept while they are shown: each is built once (a frame adds the new ones
  // and drops those past MAX_LOG), and the log is pinned to its end without reading the layout
  // in the middle of a render (that would lay out the whole page every frame).
  var logDom = { id: null, items: {}, more: null };
  var stick = true, pinQueued = false, logSeen = false;  // (logSeen: the log is on screen)

  function logLine(id, seq, ev) {
    var li = el("li", "t-" + ev.type.replace(":", "-"));
    li.dataset.seq = String(seq);
    var line = li.appendChild(el("div", "line"));
    line.appendChild(el("span", "seq", "#" + seq));
    line.appendChild(el("span", "ts", fmtClock(ev.timestamp)));
    line.appendChild(el("span", "type", ev.type));
    line.appendChild(el("span", "summary", summary(ev)));
    if (expanded[id + ":" + seq]) li.appendChild(el("pre", "", JSON.stringify(ev, null, 2)));
    return li;
  }

  function toggleLine(e) {  // one listener for every line (a busy log replaces hundreds a frame)
    var line = e.target.closest(".line"), li = line && line.parentNode;
    if (!li || !li.dataset.seq || !logDom.id) return;
    var key = logDom.id + ":" + li.dataset.seq, pre = li.querySelector("pre");
    if (expanded[key]) { delete expanded[key]; if (pre) pre.remove(); return; }
    expanded[key] = true;
    var ev = (logs[logDom.id] || {})[li.dataset.seq];
    if (ev) li.appendChild(el("pre", "", JSON.stringify(ev, null, 2)));
  }

  function renderLog(id) {
    var log = logs[id] || {}, list = $("log");
    var keys = Object.keys(log);  // integer keys: listed in ascending order, no sort needed
    var limit = V ? V.seqLimit(id) : Infinity;  // replay: the log up to the scrubbed seq
    var end = keys.length;
    if (limit !== Infinity) {
      for (var lo = 0, hi = keys.length; lo < hi;) {
        var mid = (lo + hi) >> 1;
        if (+keys[mid] <= limit) lo = mid + 1; else hi = mid;
      }
      end = lo;
    }
    var start = Math.max(0, end - MAX_LOG);  // the latest MAX_LOG lines: rendering stays cheap
    if (logDom.id !== id) { list.replaceChildren(); logDom = { id: id, items: {}, more: null }; stick = true; }
    var items = logDom.items, shown = {};
    for (var i = start; i < end; i++) shown[keys[i]] = true;
    Object.keys(items).forEach(function (seq) {
      if (!shown[seq]) { items[seq].remove(); delete items[seq]; }
    });
    if (start && !logDom.more) logDom.more = el("li", "more");
    if (logDom.more) {
      if (start) {
        setText(logDom.more, start + " earlier events not shown");
        if (list.firstChild !== logDom.more) list.prepend(logDom.more);
      } else { logDom.more.remove(); logDom.more = null; }
    }
    var prev = logDom.more;
    for (i = start; i < end; i++) {
      var li = items[keys[i]] || (items[keys[i]] = logLine(id, keys[i], log[keys[i]]));
      var at = prev ? prev.nextSibling : list.firstChild;
      if (at !== li) list.insertBefore(li, at);
      prev = li;
    }
    if ((stick || limit !== Infinity) && logSeen) pinLog();
  }

  function pinLog() {  // next frame, before its render: the layout is clean then
    if (pinQueued) return;
    pinQueued = true;
    requestAnimationFrame(function () { pinQueued = false; $("log").scrollTop = $("log").scrollHeight; });
  }

  function renderSubs() {
    var box = $("subs");
    var frag = document.createDocumentFragment();
    frag.appendChild(el("span", "chip", "topic exec/"));
    Object.keys(subscribed).forEach(function (id) {
      var c = el("span", "chip", "execution " + id.slice(0, 8));
      c.title = id;
      c.dataset.sub = id;
      frag.appendChild(c);
    });
    box.replaceChildren(frag);
  }

  // ---- wiring -----------------------------------------------------------------------------

  new IntersectionObserver(function (entries) {  // off screen, the log is not laid out: no pin
    logSeen = entries[0].isIntersecting;
    if (logSeen && stick) pinLog();
  }).observe($("log"));
  $("log").addEventListener("click", toggleLine);
  $("log").addEventListener("scroll", function () {  // follow the end unless scrolled up
    var l = $("log");
    stick = l.scrollHeight - l.scrollTop - l.clientHeight < 40;
  });
  $("subscribe-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var id = $("subscribe-id").value.trim();
    if (id) select(id);
  });
  $("unsubscribe-btn").addEventListener("click", function () {
    unsubscribe($("subscribe-id").value.trim() || selected);
  });
  $("token-form").addEventListener("submit", function (e) {
    e.preventDefault();
    sessionStorage.setItem("zmqmon-token", $("token").value.trim());
    if (ws) ws.close();
    retry = 0;
    connect();
  });
  if (V) V.attach(queueRender);
  setInterval(function () {  // running durations tick
    for (var id in states) { if (states[id].status === "running") { queueRender(); return; } }
  }, 1000);

  fetch("/api/config").then(function (r) { return r.json(); }).then(function (cfg) {
    authOn = !!cfg.auth;
    $("token-form").hidden = !authOn;
    var fromUrl = new URLSearchParams(location.search).get("token");
    if (fromUrl) sessionStorage.setItem("zmqmon-token", fromUrl);
    if (sessionStorage.getItem("zmqmon-token")) {
      $("token").placeholder = "token stored for this tab (paste to replace)";
    }
    connect();
  }).catch(function () { connect(); });

  window.zmqmonDashboard = {
    states: states, logs: logs, select: select, unsubscribe: unsubscribe, hooks: hooks,
    token: token, authOn: function () { return authOn; }, render: renderNow, notice: notice
  };
})();
