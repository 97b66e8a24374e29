/*
 * Replay by seq: an execution's state as of any seq, folded by reducer.js from the events the
 * page already holds (its subscription from afterSeq 0: app.js's log, seq -> event).
 *
 * A state-mode subscription may skip a backlog: the log then holds a "snapshot" marker carrying
 * the state at that seq, and replay restarts from it (seqs inside the skipped stretch show the
 * last state before it). Scrubbing stays cheap on long logs: every CHECKPOINT entries the folded
 * state is kept, so a seq costs at most CHECKPOINT reducer steps; entries appended live extend
 * the checkpoints, anything else rebuilds them.
 *
 * Pure (no DOM): tested in node beside the Python reducer (tests/bridge/test_views_js.py).
 */
(function (root) {
  "use strict";

  var CHECKPOINT = 256;

  function History(reducer) {
    this.R = reducer;
    this.keys = [];      // the log's seqs, ascending, as folded
    this.marks = [];     // [{i, seq, state}]: the state after folding keys[0..i]
    this.state = null;   // after folding every key
  }

  function fold(R, state, entry) {
    if (entry.type === "snapshot") {
      var s = entry.execution;
      return s && (!state || s.lastSeq > state.lastSeq) ? s : state;
    }
    return R.applyEvent(state, entry);
  }

  History.prototype.sync = function (log) {
    // Object.keys lists integer keys in ascending order: the seqs, sorted, for free.
    var keys = Object.keys(log), have = this.keys, n = have.length;
    var appended = keys.length >= n && (n === 0 || keys[n - 1] === have[n - 1]);
    if (!appended) { this.keys = []; this.marks = []; this.state = null; n = 0; }
    for (var i = n; i < keys.length; i++) {
      this.state = fold(this.R, this.state, log[keys[i]]);
      if (i % CHECKPOINT === CHECKPOINT - 1) {
        this.marks.push({ i: i, seq: +keys[i], state: this.state });
      }
    }
    this.keys = keys;
  };

  /* The state after every entry with seq <= `seq` (null before the first). */
  History.prototype.stateAt = function (log, seq) {
    this.sync(log);
    var keys = this.keys, lo = 0, hi = this.marks.length - 1, from = 0, state = null;
    while (lo <= hi) {  // the last checkpoint at or before seq
      var mid = (lo + hi) >> 1;
      if (this.marks[mid].seq <= seq) {
        from = this.marks[mid].i + 1;
        state = this.marks[mid].state;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    for (var i = from; i < keys.length && +keys[i] <= seq; i++) {
      state = fold(this.R, state, log[keys[i]]);
    }
    return state;
  };

  /* The seqs a scrubber can reach: [first, last] of the log (null if empty). */
  History.prototype.range = function (log) {
    this.sync(log);
    var k = this.keys;
    return k.length ? [+k[0], +k[k.length - 1]] : null;
  };

  /* The instant of seq (epoch ms): the timestamp of the last event at or before it. */
  History.prototype.timeAt = function (log, seq) {
    this.sync(log);
    for (var i = this.keys.length - 1; i >= 0; i--) {
      if (+this.keys[i] > seq) continue;
      var e = log[this.keys[i]];
      if (e.type !== "snapshot") return Date.parse(e.timestamp);
    }
    return NaN;
  };

  var api = { History: History, CHECKPOINT: CHECKPOINT };
  if (typeof module !== "undefined" && module.exports) {
    module.exports = api;
  } else {
    root.ZmqmonReplay = api;
  }
})(typeof self !== "undefined" ? self : this);
