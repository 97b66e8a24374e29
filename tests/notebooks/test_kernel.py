"""The monitor in a real Jupyter kernel (nbclient's async cell API), fed by a real service.

- its final state, read back by a later cell AND from the saved widget state (``send_state`` +
  ``set_widgets_metadata``), equals the reducer's state from the full event list — joining at
  the start, joining late, and under a flood of events;
- comm messages reach the front end while a cell is blocked in ``time.sleep`` (watched on iopub
  by a second ``BlockingKernelClient`` in a thread), and their number follows the render rate,
  not the event rate.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime
from math import ceil
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import BlockingKernelClient
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import wait_for
from zmqmon.core.state import replay
from zmqmon.shells.client import StateClient

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(180)]

FLOOD = 20_000
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _workflow(seconds: float, steps: int) -> dict[str, Any]:
    def agent(agent_id: str, *deps: str) -> dict[str, Any]:
        return {
            "id": agent_id,
            "name": agent_id.title(),
            "uses": "zmqmon.demo:work",
            "params": {"seconds": seconds, "steps": steps},
            "dependsOn": list(deps),
        }

    return {"name": "Kernel DAG", "agents": [agent("a"), agent("b", "a"), agent("c", "a")]}


def _expected(state_endpoint: str, execution_id: str) -> dict[str, Any]:
    events = []
    with StateClient(state_endpoint) as client:
        after = 0
        while True:
            page, last = client.events(execution_id, after, 1000)
            events.extend(page)
            if not page or page[-1].seq >= last:
                break
            after = page[-1].seq
    state = replay(events)
    assert state is not None and state.last_seq == len(events)
    return state.to_json_dict()


class IopubWatcher:
    """A second kernel client that records every iopub message, from a thread."""

    def __init__(self, connection_info: dict[str, Any]) -> None:
        self.client = BlockingKernelClient()
        self.client.load_connection_info(connection_info)
        self.client.start_channels(shell=False, iopub=True, stdin=False, hb=False, control=False)
        self.messages: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.client.get_iopub_msg(timeout=0.1)
            except Exception:
                continue
            self.messages.append(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.client.stop_channels()

    def window(self, marker: str) -> list[dict[str, Any]]:
        """The messages between the execute_input of the cell whose code holds ``marker`` and
        that request's ``status: idle`` — i.e. while that cell ran."""
        msgs = list(self.messages)
        start = next(
            i
            for i, m in enumerate(msgs)
            if m["msg_type"] == "execute_input" and marker in m["content"]["code"]
        )
        parent = msgs[start]["parent_header"]["msg_id"]
        end = next(
            i
            for i, m in enumerate(msgs)
            if i > start
            and m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and m["parent_header"].get("msg_id") == parent
        )
        return msgs[start:end]


def _updates(window: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m
        for m in window
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]


def _seconds(msg: dict[str, Any]) -> float:
    date = msg["header"]["date"]
    return (date if isinstance(date, datetime) else datetime.fromisoformat(date)).timestamp()


async def test_monitor_live_in_a_busy_kernel(server: Any, jupyter_env: Path) -> None:
    ep = server.endpoints
    args = f"events={ep['events']!r}, state={ep['state']!r}"
    # Submitted once the kernel is up (below): a slow kernel start must not let them finish
    # before the cells that watch them run. The cells name them through these.
    early_id, late_id = "EARLY_ID", "LATE_ID"
    # The flood: a synthetic execution published straight through the service's publisher.
    pub = server.publisher
    flood_id, flood_wf = "flood-" + uuid.uuid4().hex[:8], "wf-flood"
    pub.emit_execution_started(
        flood_id,
        flood_wf,
        workflow_name="Flood",
        agent_count=1,
        agents=[{"agentId": "x", "agentName": "X", "dependsOn": []}],
    )
    server.store.flush()

    cells = [
        "import json, time, zmqmon",
        f"mon = zmqmon.monitor({early_id!r}, {args})\nmon",
        "# blocking-early\nwhile not mon.state.is_terminal:\n    time.sleep(0.05)",
        f"late = zmqmon.monitor({late_id!r}, {args})\nlate",
        "# blocking-late\nwhile not late.state.is_terminal:\n    time.sleep(0.05)",
        f"flood = zmqmon.monitor({flood_id!r}, {args})\nflood",
        "# blocking-flood\nwhile not flood.state.is_terminal:\n    time.sleep(0.05)",
        "for w in (mon, late, flood):\n    w.wait(10)\n    w.send_state()\n"
        "print(json.dumps({k: [w.model_id, w.value, w.feed_alive] for k, w in "
        "[('early', mon), ('late', late), ('flood', flood)]}))",
    ]
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=60, kernel_name="python3", store_widget_state=True)
    async with client.async_setup_kernel():
        watcher = IopubWatcher(client.kc.get_connection_info())
        try:
            early = server.submit(_workflow(0.8, 16))
            late = server.submit(_workflow(1.2, 12))
            for cell in nb.cells:
                cell.source = cell.source.replace(early_id, early.id).replace(late_id, late.id)
            await client.async_execute_cell(nb.cells[0], 0)
            await client.async_execute_cell(nb.cells[1], 1)
            await client.async_execute_cell(nb.cells[2], 2)
            # Late join: once the second execution is well under way.
            with StateClient(ep["state"]) as sc:
                wait_for(lambda: sc.snapshot(late.id).progress >= 30, 30, message="late progress")
            await client.async_execute_cell(nb.cells[3], 3)
            await client.async_execute_cell(nb.cells[4], 4)
            await client.async_execute_cell(nb.cells[5], 5)

            def flood() -> None:
                for i in range(FLOOD):
                    pub.emit_agent_progress(flood_id, flood_wf, "x", "X", i * 100 // FLOOD)
                    if i % 1000 == 999:
                        time.sleep(0.05)  # ~20k events/s for about a second
                pub.emit_execution_completed(flood_id, flood_wf, duration_ms=1000, results={})

            flooder = threading.Thread(target=flood)
            flooder.start()
            await client.async_execute_cell(nb.cells[6], 6)
            flooder.join()
            await client.async_execute_cell(nb.cells[7], 7)
            wait_for(lambda: any(m["msg_type"] == "status" for m in watcher.messages), 5)
        finally:
            watcher.close()
        client.set_widgets_metadata()

    server.store.flush()
    printed = json.loads(nb.cells[7].outputs[0]["text"])
    saved = nb.metadata["widgets"][WIDGET_STATE]["state"]
    for key, execution_id in [("early", early.id), ("late", late.id), ("flood", flood_id)]:
        model_id, value, alive = printed[key]
        expected = _expected(ep["state"], execution_id)
        assert value == expected, key  # read back by a later cell
        assert saved[model_id]["state"]["value"] == expected, key  # the saved widget state
        assert alive is False, key  # the feed thread ended with the execution
    assert printed["flood"][1]["lastSeq"] == FLOOD + 2

    # Live while blocked: updates arrived while each waiting cell was busy in time.sleep.
    early_updates = _updates(watcher.window("# blocking-early"))
    assert early_updates, "no widget update reached iopub while the cell was blocked"
    bars = [
        u["content"]["data"]["state"]["value"]
        for u in early_updates
        if isinstance(u["content"]["data"]["state"].get("value"), int)  # the progress bars
    ]
    assert any(0 < v < 100 for v in bars), "intermediate progress must show while running"
    assert _updates(watcher.window("# blocking-late"))

    # Bounded by the render rate: per widget, at most one update per 0.1 s (+ edges), and
    # far fewer messages overall than the 20,000 events.
    flood_updates = _updates(watcher.window("# blocking-flood"))
    assert flood_updates
    span = _seconds(flood_updates[-1]) - _seconds(flood_updates[0])
    per_widget: dict[str, int] = {}
    for u in flood_updates:
        comm = u["content"]["comm_id"]
        per_widget[comm] = per_widget.get(comm, 0) + 1
    print(f"flood: {len(flood_updates)} updates over {span:.2f} s for {FLOOD} events: {per_widget}")
    print(f"early: {len(early_updates)} updates while blocked; bar values {bars}")
    assert max(per_widget.values()) <= ceil(span / 0.1) + 3, (per_widget, span)
    assert len(flood_updates) < FLOOD / 20
