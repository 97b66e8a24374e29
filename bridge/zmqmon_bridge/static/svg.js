/*
 * Small helpers shared by the graph and timeline views (dag.js, timeline.js): SVG elements,
 * attribute writes that skip unchanged values (a 500-agent frame touches only what moved),
 * and the text both views show. Colours come from style.css classes, never inline styles: the
 * page's CSP allows no style attributes.
 */
(function (root) {
  "use strict";

  var NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent) {
    var e = document.createElementNS(NS, tag);
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  // Set an attribute only when it changed (the last value is remembered on the element).
  function set(e, name, value) {
    var memo = e.__z || (e.__z = {});
    var v = typeof value === "number" ? String(Math.round(value * 10) / 10) : String(value);
    if (memo[name] === v) return;
    memo[name] = v;
    e.setAttribute(name, v);
  }

  function text(e, value) {
    var v = String(value);
    if (e.__t === v) return;
    e.__t = v;
    e.textContent = v;
  }

  function fmtDuration(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + " m " + String(Math.round(s - 60 * m)).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " m";
  }

  // Fit a label into `px` pixels at about `charPx` per character (no measuring: it is per frame).
  function fit(label, px, charPx) {
    var max = Math.max(1, Math.floor(px / (charPx || 7)));
    return label.length <= max ? label : label.slice(0, Math.max(1, max - 1)) + "…";
  }

  // What a tooltip says of an agent: name, status, progress or duration, error.
  function agentTip(agent, ms, critical) {
    var lines = [agent.agentName + " (" + agent.agentId + ")", agent.status +
      (agent.status === "running" ? " · " + (agent.progress || 0) + "%" : "") +
      (ms !== null ? " · " + fmtDuration(ms) : "")];
    if (agent.dependsOn && agent.dependsOn.length) {
      lines.push("after " + agent.dependsOn.join(", "));
    }
    if (critical) lines.push("on the critical path");
    if (agent.error) lines.push("error: " + agent.error);
    return lines.join("\n");
  }

  root.ZmqmonSvg = { el: el, set: set, text: text, fmtDuration: fmtDuration, fit: fit,
                     agentTip: agentTip };
})(typeof self !== "undefined" ? self : this);
