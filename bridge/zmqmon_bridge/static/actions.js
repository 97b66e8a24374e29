/*
 * zmqmon dashboard actions, over the bridge's HTTP API (contract §8), beside app.js:
 * - run a workflow: one of the service's (GET /api/workflows) or a pasted definition
 *   (POST /api/workflows first), with inputs as JSON → POST /api/workflows/{id}/execute;
 *   the new execution is then selected;
 * - cancel the selected execution while it runs, where this user may (auth off: anyone; auth on:
 *   its owner or an admin — the bridge checks again);
 * - filter the list by status and workflow;
 * - page back through history: older executions (GET /api/executions?before=…), 100 at a time,
 *   with the filters applied by the service.
 * Uses the token app.js uses (Authorization: Bearer). Nothing fetched from elsewhere.
 */
(function () {
  "use strict";

  var D = window.zmqmonDashboard;
  var $ = function (id) { return document.getElementById(id); };
  var PAGE = 100;
  var filters = { status: "", workflow: "" };
  var workflows = [];        // from GET /api/workflows (each with its service)
  var services = [];         // from GET /api/services: where requests can go
  var cursor = null;         // the oldest execution the history pages reached
  var exhausted = false;
  var pasting = false;

  // ---- HTTP -------------------------------------------------------------------------------

  function api(method, path, body) {
    var headers = {};
    var t = D.token();
    if (t) headers.Authorization = "Bearer " + t;
    var init = { method: method, headers: headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (payload) {
        if (!r.ok) {
          var e = (payload && payload.error) || {};
          throw new Error((e.code || r.status) + ": " + (e.message || r.statusText));
        }
        return payload;
      });
    });
  }

  function me() {  // the token's claims, for what to offer (the bridge decides what is allowed)
    var t = D.token();
    if (!t) return null;
    try {
      var part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (err) { return null; }
  }

  function mayCancel(state) {
    if (!state || (state.status !== "running" && state.status !== "pending")) return false;
    if (!D.authOn()) return true;
    var claims = me();
    if (!claims) return false;
    var roles = Array.isArray(claims.roles) ? claims.roles : [];
    return roles.indexOf("admin") >= 0 || claims.sub === state.userId;
  }

  // ---- running a workflow -----------------------------------------------------------------

  function showError(text) {
    $("run-error").textContent = text || "";
    $("run-error").hidden = !text;
  }

  function setTab(paste) {
    pasting = paste;
    $("tab-stored").setAttribute("aria-selected", String(!paste));
    $("tab-paste").setAttribute("aria-selected", String(paste));
    $("stored-pane").hidden = paste;
    $("paste-pane").hidden = !paste;
    $("service-pane").hidden = !(paste && services.length > 1);
    showError("");
  }

  function describe(w) {
    var text = (w.name || w.workflowId) + " · " + w.agentCount + (w.agentCount === 1 ? " agent" : " agents");
    return services.length > 1 && w.service ? text + " · " + w.service : text;
  }

  function keyOf(w) {  // a workflow id, and its service when several executors report here
    return services.length > 1 ? w.workflowId + "@" + w.service : w.workflowId;
  }

  function options(select, items, label, value) {
    var frag = document.createDocumentFragment();
    items.forEach(function (item) {
      var o = document.createElement("option");
      o.value = value(item);
      o.textContent = label(item);
      frag.appendChild(o);
    });
    select.replaceChildren(frag);
  }

  function loadServices() {  // several executors behind a proxy: offer where to run
    return api("GET", "/api/services").then(function (body) {
      services = (body.services || []).map(function (s) { return s.endpoint; });
      var same = function (s) { return s; };
      options($("run-service"), services, same, same);
      $("service-pane").hidden = !(pasting && services.length > 1);
    });
  }

  function loadWorkflows() {
    return loadServices().then(function () {
      return api("GET", "/api/workflows");
    }).then(function (body) {
      workflows = body.workflows || [];
      var select = $("run-workflow");
      options(select, workflows, describe, keyOf);
      select.disabled = !workflows.length;
      $("run-workflow-info").textContent = workflows.length
        ? "" : "This service has no stored workflow yet: paste a definition.";
      if (!workflows.length) setTab(true);
      updateInfo();
      renderFilters();
    });
  }

  function chosen() {
    var key = $("run-workflow").value;
    return workflows.filter(function (w) { return keyOf(w) === key; })[0];
  }

  function updateInfo() {
    var w = chosen();
    if (w) $("run-workflow-info").textContent = (w.description || "") + " id " + w.workflowId;
  }

  function parseJson(text, what) {
    try { return JSON.parse(text); } catch (err) { throw new Error(what + " is not valid JSON: " + err.message); }
  }

  function run(e) {
    e.preventDefault();
    showError("");
    var inputs, definition;
    try {
      inputs = parseJson($("run-inputs").value.trim() || "{}", "Inputs");
      if (!inputs || typeof inputs !== "object" || Array.isArray(inputs)) throw new Error("Inputs must be a JSON object.");
      if (pasting) definition = parseJson($("run-definition").value, "The definition");
    } catch (err) { showError(err.message); return; }
    var button = $("run-submit");
    button.disabled = true;
    var service = services.length > 1 ? $("run-service").value : null;
    var at = function (s) { return s ? "?service=" + encodeURIComponent(s) : ""; };
    var target = pasting
      ? api("POST", "/api/workflows" + at(service), definition)
      : Promise.resolve(chosen() || {});
    target.then(function (w) {  // a stored workflow runs on the service that has it
      if (!w.workflowId) throw new Error("Choose a workflow.");
      return api("POST", "/api/workflows/" + encodeURIComponent(w.workflowId) + "/execute" +
                 at(services.length > 1 ? w.service : null), { inputs: inputs });
    }).then(function (body) {
      $("run-dialog").close();
      D.notice("");
      D.select(body.executionId);
      if (pasting) loadWorkflows();
    }).catch(function (err) { showError(err.message); })
      .then(function () { button.disabled = false; });
  }

  // ---- cancelling -------------------------------------------------------------------------

  var selectedId = null;

  function cancelSelected() {
    var id = selectedId;
    if (!id) return;
    var button = $("cancel-btn");
    button.disabled = true;
    button.textContent = "Cancelling…";
    api("POST", "/api/executions/" + encodeURIComponent(id) + "/cancel").catch(function (err) {
      D.notice("Cancel failed: " + err.message, true);
    }).then(function () {
      button.disabled = false;
      button.textContent = "Cancel execution";
    });
  }

  // ---- filters and history ----------------------------------------------------------------

  function accepts(state) {
    return (!filters.status || state.status === filters.status) &&
      (!filters.workflow || state.workflowId === filters.workflow);
  }

  function renderFilters() {
    var select = $("f-workflow");
    var names = {};
    workflows.forEach(function (w) { names[w.workflowId] = w.name || w.workflowId; });
    Object.keys(D.states).forEach(function (id) {
      var s = D.states[id];
      if (s.workflowId && !names[s.workflowId]) names[s.workflowId] = s.workflowName || s.workflowId;
    });
    var ids = Object.keys(names).sort(function (a, b) { return names[a].localeCompare(names[b]); });
    if (select.options.length - 1 === ids.length) return;  // unchanged (ids only grow)
    var frag = document.createDocumentFragment();
    var all = document.createElement("option");
    all.value = "";
    all.textContent = "All workflows";
    frag.appendChild(all);
    ids.forEach(function (id) {
      var o = document.createElement("option");
      o.value = id;
      o.textContent = names[id];
      frag.appendChild(o);
    });
    select.replaceChildren(frag);
    select.value = filters.workflow;
  }

  function oldestShown() {
    var ids = Object.keys(D.states).filter(function (id) { return accepts(D.states[id]); });
    ids.sort(function (a, b) {
      var x = D.states[a].startedAt || "", y = D.states[b].startedAt || "";
      return x < y ? -1 : x > y ? 1 : 0;
    });
    return ids[0] || null;
  }

  function loadOlder() {
    var before = cursor || oldestShown();
    var query = "?limit=" + PAGE + (before ? "&before=" + encodeURIComponent(before) : "");
    if (filters.status) query += "&status=" + encodeURIComponent(filters.status);
    if (filters.workflow) query += "&workflowId=" + encodeURIComponent(filters.workflow);
    $("older").disabled = true;
    api("GET", "/api/executions" + query).then(function (body) {
      var page = body.executions || [];
      page.forEach(function (s) {
        var cur = D.states[s.executionId];
        if (!cur || cur.lastSeq < s.lastSeq) D.states[s.executionId] = s;
      });
      if (page.length) cursor = page[page.length - 1].executionId;
      exhausted = page.length < PAGE;
      D.hooks.rowLimit += page.length;
      $("older-note").textContent = exhausted ? "That is all of them." : page.length + " more loaded.";
      D.render();
    }).catch(function (err) { D.notice("Loading older executions failed: " + err.message, true); })
      .then(function () { $("older").disabled = exhausted; });
  }

  function filtersChanged() {
    filters.status = $("f-status").value;
    filters.workflow = $("f-workflow").value;
    cursor = null;
    exhausted = false;
    $("older").disabled = false;
    $("older-note").textContent = "";
    D.render();
  }

  // ---- wiring -----------------------------------------------------------------------------

  D.hooks.accepts = accepts;
  D.hooks.onRender.push(function (states, selected) {
    selectedId = selected;
    var button = $("cancel-btn");
    button.hidden = !mayCancel(selected && states[selected]);
    renderFilters();
    // History is worth offering once the list is full (the page is seeded with the newest
    // PAGE), or under a filter, which the service applies to older executions too.
    var filtered = filters.status || filters.workflow;
    $("older").hidden = !filtered && !cursor && Object.keys(states).length < PAGE;
  });

  $("run-open").addEventListener("click", function () {
    showError("");
    loadWorkflows().catch(function (err) { showError(err.message); });
    $("run-dialog").showModal();
  });
  $("run-cancel").addEventListener("click", function () { $("run-dialog").close(); });
  $("tab-stored").addEventListener("click", function () { setTab(false); });
  $("tab-paste").addEventListener("click", function () { setTab(true); });
  $("run-workflow").addEventListener("change", updateInfo);
  $("run-form").addEventListener("submit", run);
  $("cancel-btn").addEventListener("click", cancelSelected);
  $("f-status").addEventListener("change", filtersChanged);
  $("f-workflow").addEventListener("change", filtersChanged);
  $("older").addEventListener("click", loadOlder);
  loadWorkflows().catch(function () { /* auth not given yet: the dialog asks again */ });
})();
