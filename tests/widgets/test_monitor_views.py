"""The monitor's graph, timeline and replay bar, against a real service (no kernel: comms inert).

Replay is driven as the front end drives it — by setting the slider's value — and every part of
the monitor must then show the reducer's state after the events up to that seq.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.widgets.test_monitor import _workflow
from zmqmon.core.state import ExecutionState, replay
from zmqmon.shells.client import StateClient
from zmqmon.widgets import ExecutionMonitor

pytestmark = pytest.mark.timeout(60)


def _drawn(html: str) -> dict[str, str]:
    """agent id → status, as drawn in the graph (one <g class="zm-node zm-s-…"> per agent)."""
    return dict(
        (agent, status)
        for status, agent in re.findall(
            r'class="zm-node zm-s-(\w+)[^"]*" data-agent-id="([^"]+)"', html
        )
    )


def _statuses(state: ExecutionState) -> dict[str, str]:
    return {a.agent_id: a.status for a in state.agents}


def test_views_follow_the_run_and_replay_shows_any_seq(server: Any) -> None:
    handle = server.submit(_workflow(seconds=0.8, steps=8))
    mon = ExecutionMonitor(handle.id, **server.endpoints)
    try:
        wait_for(
            lambda: "running" in _drawn(mon._views.value).values(), 15, message="a running node"
        )
        assert "zm-open" in mon._views.value  # a running bar, growing
        final = mon.wait(30)
        assert final.status == "completed"
        assert _drawn(mon._views.value) == _statuses(final)
        assert "critical path" in mon._views.value
        server.store.flush()
        with StateClient(server.endpoints["state"]) as client:
            events, last = client.events(handle.id, 0, 10_000)
        slider = mon._replay.slider
        assert (slider.max, slider.value) == (last, last)  # live: at the end
        assert mon._replay.live_button.disabled
        for seq in sorted({1, 3, last // 2, last - 1, last}):
            slider.value = seq  # as the front end sets it
            want = replay(events[:seq])
            assert want is not None and mon._replay.state == want
            assert _drawn(mon._views.value) == _statuses(want)
            assert [r.bar.value for r in mon._rows] == [a.progress for a in want.agents]
            assert f"#{seq} " in mon._log_view.value.split("\n")[0]  # the log stops at seq
            assert want.status in mon._header.value
            assert f"seq {seq} of {last}" in mon._replay.label.value
            assert not mon._replay.live_button.disabled
            assert mon.value == final.to_json_dict()  # the synced state stays live
        mon._replay.live_button.click()
        assert not mon._replay.replaying and slider.value == last
        assert _drawn(mon._views.value) == _statuses(final)
    finally:
        mon.close()


def test_without_a_state_service_there_is_no_replay(server: Any) -> None:
    handle = server.submit(_workflow(seconds=0.05, steps=1))
    mon = ExecutionMonitor(handle.id, events=server.endpoints["events"], state="")
    try:
        assert mon._replay.slider.disabled
    finally:
        mon.close()
