/*
 * The one reducer, in the browser: (execution state, event) -> execution state.
 *
 * Mirrors zmqmon/core/state.py `apply_event` rule for rule, and is tested on the same fixtures
 * (tests/fixtures/reducer/*.json). States are plain objects in the wire form (camelCase), never
 * mutated: every change returns a new object.
 *
 * 1. An event whose seq is not above lastSeq is a duplicate: the state is returned unchanged.
 * 2. With no state yet, the first event starts one (status pending, nothing else known).
 * 3. Once terminal (completed, failed, cancelled), later events only move lastSeq.
 * 4. execution:started -> running; sets workflowName, userId, startedAt; the agents it announces
 *    (data.agents) get pending rows, in order, with their dependsOn (the first announcement of an
 *    id wins; a row an earlier agent event made is left as it is).
 * 5. execution:progress -> progress. execution:completed -> completed, progress 100.
 *    execution:failed -> failed with error. execution:cancelled -> cancelled. On each of the
 *    three, finishedAt is set and agents still running become cancelled.
 * 6. agent:started -> the agent running from 0 %; agent:progress -> its progress;
 *    agent:completed -> completed, 100 %, durationMs; agent:failed -> failed with error.
 *    An agent not yet known gets a row appended. Any event but started moves a pending
 *    execution to running.
 */
(function (root) {
  "use strict";

  var TERMINAL = { completed: true, failed: true, cancelled: true };

  function nul(v) {
    return v === undefined ? null : v;
  }

  function newState(event) {
    return {
      executionId: event.executionId,
      workflowId: event.workflowId,
      workflowName: null,
      userId: null,
      status: "pending",
      progress: 0,
      startedAt: null,
      finishedAt: null,
      error: null,
      lastSeq: 0,
      agents: [],
    };
  }

  function newAgent(agentId, agentName, dependsOn) {
    return {
      agentId: agentId,
      agentName: agentName,
      dependsOn: dependsOn ? dependsOn.slice() : [],
      status: "pending",
      progress: 0,
      startedAt: null,
      finishedAt: null,
      durationMs: null,
      error: null,
    };
  }

  function findAgent(agents, agentId) {
    for (var i = 0; i < agents.length; i++) {
      if (agents[i].agentId === agentId) return agents[i];
    }
    return null;
  }

  function withAgent(agents, agentId, agentName, changes) {
    var out = agents.slice();
    for (var i = 0; i < out.length; i++) {
      if (out[i].agentId === agentId) {
        out[i] = Object.assign({}, out[i], changes);
        return out;
      }
    }
    out.push(Object.assign(newAgent(agentId, agentName), changes));
    return out;
  }

  function stopRunning(agents, ts) {
    return agents.map(function (row) {
      return row.status === "running"
        ? Object.assign({}, row, { status: "cancelled", finishedAt: ts })
        : row;
    });
  }

  function applyEvent(state, event) {
    if (state === null || state === undefined) {
      state = newState(event);
    } else if (event.seq <= state.lastSeq) {
      return state;
    }
    if (TERMINAL[state.status]) {
      return Object.assign({}, state, { lastSeq: event.seq });
    }
    var ts = event.timestamp;
    var data = event.data || {};
    var u = { lastSeq: event.seq };
    if (state.status === "pending" && event.type !== "execution:started") {
      u.status = "running";
    }
    switch (event.type) {
      case "execution:started": {
        var agents = state.agents.slice();
        (data.agents || []).forEach(function (info) {
          if (!findAgent(agents, info.agentId)) {
            agents.push(newAgent(info.agentId, info.agentName, info.dependsOn));
          }
        });
        u.status = "running";
        u.workflowName = nul(data.workflowName);
        u.userId = nul(data.userId);
        u.startedAt = ts;
        u.agents = agents;
        break;
      }
      case "execution:progress":
        u.progress = data.progress;
        break;
      case "execution:completed":
        u.status = "completed";
        u.progress = 100;
        u.finishedAt = ts;
        u.agents = stopRunning(state.agents, ts);
        break;
      case "execution:failed":
        u.status = "failed";
        u.error = nul(data.error);
        u.finishedAt = ts;
        u.agents = stopRunning(state.agents, ts);
        break;
      case "execution:cancelled":
        u.status = "cancelled";
        u.finishedAt = ts;
        u.agents = stopRunning(state.agents, ts);
        break;
      case "agent:started":
        u.agents = withAgent(state.agents, data.agentId, data.agentName, {
          status: "running",
          progress: 0,
          startedAt: ts,
          finishedAt: null,
          error: null,
        });
        break;
      case "agent:progress": {
        var row = findAgent(state.agents, data.agentId);
        var changes = { progress: data.progress };
        if (row === null || row.status === "pending") {
          changes.status = "running";
          changes.startedAt = ts;
        }
        u.agents = withAgent(state.agents, data.agentId, data.agentName, changes);
        break;
      }
      case "agent:completed":
        u.agents = withAgent(state.agents, data.agentId, data.agentName, {
          status: "completed",
          progress: 100,
          finishedAt: ts,
          durationMs: nul(data.durationMs),
        });
        break;
      case "agent:failed":
        u.agents = withAgent(state.agents, data.agentId, data.agentName, {
          status: "failed",
          error: nul(data.error),
          finishedAt: ts,
          durationMs: nul(data.durationMs),
        });
        break;
      default:
        break; // an unknown type only moves lastSeq
    }
    return Object.assign({}, state, u);
  }

  function replay(events, state) {
    var s = state === undefined ? null : state;
    for (var i = 0; i < events.length; i++) s = applyEvent(s, events[i]);
    return s;
  }

  var api = { applyEvent: applyEvent, replay: replay, TERMINAL: TERMINAL };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.ZmqmonReducer = api;
  }
})(typeof self !== "undefined" ? self : this);
