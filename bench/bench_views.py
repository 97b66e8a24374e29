"""The dashboard's graph and timeline under a flood: 500 agents, 10,000 events/s, in Chromium.

A publisher *process* runs a real service (store, PUB, state service) and publishes one synthetic
execution — 500 agents in 10 layers of 50, each waiting for two of the layer before — at
~10,000 events/s (agents start, report progress round-robin, complete, layer after layer). A real
bridge relays it to the dashboard in Debian's Chromium, with the execution open in the detail
panel (state mode, as the page subscribes).

Measured in the page with the Performance API (``performance.now`` around each
requestAnimationFrame callback, each WebSocket message handler and each ``ZmqmonViews.render``;
Long Animation Frames from a ``PerformanceObserver``), with the views, and — as the baseline —
the same page with ``window.ZmqmonViews`` kept from loading (list, agent table and log only):

- script time of a frame's render: the graph and timeline alone, and the whole render;
- renders per second against events per second: rendering follows the frame rate
  (requestAnimationFrame coalescing), not the event rate;
- script time spent handling messages per second (the reducer per event: unchanged by the views).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid
from pathlib import Path
from typing import Any

from bench import Row

SUITE = "views"
SHOTS = Path(__file__).parents[1] / "artifacts" / "views"  # (ignored by git)
AGENTS, LAYERS = 500, 10
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Before the page's scripts: timing hooks; with views=false, views.js's global never lands.
_HOOKS = """
(() => {
  const S = window.__bench = {frames: [], views: [], handle: 0, messages: 0, events: 0,
                              loaf: [], on: false};
  if (!__VIEWS__) Object.defineProperty(window, "ZmqmonViews", {get() {}, set(v) {}});
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = cb => raf(t => {
    const t0 = performance.now();
    cb(t);
    if (S.on) S.frames.push(performance.now() - t0);
  });
  const Native = window.WebSocket;
  function Timed(url, protocols) {
    const ws = new Native(url, protocols);
    let handler = null;
    Object.defineProperty(ws, "onmessage", {
      get() { return handler; },
      set(fn) {
        handler = fn;
        ws.addEventListener("message", e => {
          const t0 = performance.now();
          fn.call(ws, e);
          if (S.on) { S.handle += performance.now() - t0; S.messages++;
                      if (e.data.indexOf('"seq"') >= 0) S.events++; }
        });
      },
    });
    return ws;
  }
  Timed.prototype = Native.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Timed[k] = Native[k];
  window.WebSocket = Timed;
  try {
    new PerformanceObserver(list => {
      if (S.on) for (const e of list.getEntries()) S.loaf.push(e.scriptDuration || 0);
    }).observe({type: "long-animation-frame", buffered: false});
  } catch (err) { S.loaf = null; }
})();
"""
_WRAP_VIEWS = """() => {
  const V = window.ZmqmonViews, S = window.__bench, render = V.render;
  V.render = function () {
    const t0 = performance.now();
    const out = render.apply(this, arguments);
    if (S.on) S.views.push(performance.now() - t0);
    return out;
  };
}"""


def _agents() -> list[dict[str, Any]]:
    per = AGENTS // LAYERS
    out = []
    for layer in range(LAYERS):
        for i in range(per):
            deps = (
                [f"a{layer - 1}-{(i + k) % per}" for k in (0, 7)] if layer else []
            )  # two of the layer before
            out.append({"agentId": f"a{layer}-{i}", "agentName": f"Agent {layer}.{i}",
                        "dependsOn": deps})  # fmt: skip
    return out


def _publisher(conn: Any) -> None:
    """Child process: a service on free ports; publishes one flood per request."""
    from zmqmon.services.server import Server

    server = Server("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", None).start()
    pub = server.publisher
    conn.send(server.endpoints)
    agents = _agents()
    per = AGENTS // LAYERS
    try:
        while True:
            cmd = conn.recv()
            if cmd is None:
                break
            execution_id, n, rate = cmd
            wf = "wf-bench-views"
            pub.emit_execution_started(execution_id, wf, workflow_name="Flood 500",
                                       agent_count=AGENTS, agents=agents)  # fmt: skip
            server.store.flush()
            conn.send("started")
            conn.recv()  # the page shows the execution
            sent, start = 0, time.perf_counter()
            share = n // LAYERS
            for layer in range(LAYERS):
                group = agents[layer * per : (layer + 1) * per]
                for a in group:
                    pub.emit_agent_started(execution_id, wf, a["agentId"], a["agentName"])
                    sent += 1
                steps = max(1, share - 2 * per)
                for k in range(steps):
                    a = group[k % per]
                    pub.emit_agent_progress(execution_id, wf, a["agentId"], a["agentName"],
                                            min(99, 100 * k // steps))  # fmt: skip
                    sent += 1
                    if sent % 200 == 0:  # keep to the rate
                        ahead = sent / rate - (time.perf_counter() - start)
                        if ahead > 0:
                            time.sleep(ahead)
                for a in group:
                    pub.emit_agent_completed(execution_id, wf, a["agentId"], a["agentName"],
                                             result=None, duration_ms=1)  # fmt: skip
                    sent += 1
            elapsed = time.perf_counter() - start
            pub.emit_execution_completed(execution_id, wf, duration_ms=1, results={})
            conn.send((elapsed, sent + 2))
    finally:
        server.stop()


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(conn: Any, url: str, views: bool, n: int, rate: float) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    execution_id = f"views-{uuid.uuid4()}"
    conn.send((execution_id, n, rate))
    conn.recv()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.add_init_script(_HOOKS.replace("__VIEWS__", "true" if views else "false"))
            page.goto(url)
            page.wait_for_selector('#conn[data-state="connected"]', timeout=15_000)
            row = f'tr[data-exec-id="{execution_id}"]'
            page.wait_for_selector(row, timeout=15_000)
            page.click(row)
            page.wait_for_selector(f"#agent-rows tr >> nth={AGENTS - 1}", timeout=15_000)
            if views:
                page.wait_for_function(
                    f"() => document.querySelectorAll('.dag .node').length === {AGENTS}",
                    timeout=15_000,
                )
                page.evaluate(_WRAP_VIEWS)
            page.evaluate(
                "() => { window.__bench.on = true; window.__bench.t0 = performance.now(); }"
            )
            conn.send("go")
            elapsed, published = conn.recv()
            page.wait_for_selector('#detail[data-status="completed"]', timeout=120_000)
            stats = page.evaluate(
                "() => { const S = window.__bench; S.on = false;"
                " S.span = performance.now() - S.t0; return S; }"
            )
            if views:
                assert page.locator(".dag .node.s-completed").count() == AGENTS
                SHOTS.mkdir(parents=True, exist_ok=True)  # for a human to look at
                page.screenshot(path=str(SHOTS / "bench-500.png"))
                page.locator("#dag").screenshot(path=str(SHOTS / "bench-500-graph.png"))
        finally:
            browser.close()
    stats.update(elapsed=elapsed, published=published)
    return dict(stats)


def run(quick: bool) -> list[Row]:
    """Measure the page with and without the views on the same 10,000 events/s stream."""
    from zmqmon_bridge.server import Bridge

    rate = 10_000.0
    n = int(rate * (3 if quick else 8))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_publisher, args=(child,), daemon=True)
    proc.start()
    try:
        endpoints = parent.recv()
        bridge = Bridge(endpoints["events"], endpoints["state"], "127.0.0.1", 0).start()
        try:
            url = bridge.http_url + "/"
            with_views = _measure(parent, url, True, n, rate)
            without = _measure(parent, url, False, n, rate)
        finally:
            bridge.stop()
    finally:
        parent.send(None)
        proc.join(30)
    return _rows(with_views, without)


def _rows(v: dict[str, Any], base: dict[str, Any]) -> list[Row]:
    span_s, base_s = v["span"] / 1000, base["span"] / 1000
    loaf = v["loaf"]
    note = (
        f"{v['published']} events published in {v['elapsed']:.2f} s"
        f" ({v['published'] / v['elapsed']:,.0f}/s); the page got {v['events']} event messages"
        f" in {v['messages']} (state mode: a snapshot stands for what it skips);"
        f" {len(v['frames'])} frames rendered in {span_s:.1f} s"
        f" (baseline {len(base['frames'])} in {base_s:.1f} s); graph+timeline max"
        f" {max(v['views'], default=0):.2f} ms; times are wall clock (performance.now), so a"
        " busy machine stretches them;"
        + (f" long animation frames: {len(loaf)}" if loaf is not None else "")
    )
    return [
        Row(SUITE, "stream rate", v["published"] / v["elapsed"], None, "events/s", note=note),
        Row(
            SUITE,
            "graph+timeline render p50 (500 agents)",
            _p(v["views"], 0.5),
            None,
            "ms",
            "≤ 16 ms",
            target_value=16.0,
        ),
        Row(
            SUITE,
            "graph+timeline render p95 (500 agents)",
            _p(v["views"], 0.95),
            None,
            "ms",
            "≤ 16 ms",
            target_value=16.0,
        ),
        Row(
            SUITE,
            "frame script time p50, whole render",
            _p(v["frames"], 0.5),
            _p(base["frames"], 0.5),
            "ms",
            "≤ 16 ms (baseline: no views)",
            target_value=16.0,
        ),
        Row(
            SUITE,
            "frame script time p95, whole render",
            _p(v["frames"], 0.95),
            _p(base["frames"], 0.95),
            "ms",
            "≤ 16 ms (baseline: no views)",
            target_value=16.0,
        ),
        Row(
            SUITE,
            "frame script time max, whole render",
            max(v["frames"], default=0.0),
            max(base["frames"], default=0.0),
            "ms",
            "(baseline: no views)",
        ),
        Row(
            SUITE,
            "renders/s",
            len(v["frames"]) / span_s,
            v["events"] / span_s,
            "1/s",
            "≤ 60/s, not the event rate",
            target_value=61.0,
        ),
        Row(
            SUITE,
            "message handling",
            v["handle"] / span_s,
            base["handle"] / base_s,
            "ms/s",
            "unchanged by the views",
            target_ratio=1.5,
        ),
    ]


if __name__ == "__main__":
    from bench import format_table

    print(format_table(run(quick=True)))
