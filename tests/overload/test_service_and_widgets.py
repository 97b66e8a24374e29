"""The service and the notebook monitors under a burst (contract §4, §5, §6).

* SIGTERM reaches ``zmqmon serve`` in the middle of a flood: it stops promptly, and every event it
  published is in its SQLite file.
* The notebook monitors (``state`` mode) follow a flood — one of them joining in its middle — and
  end with the exact final state, their renders bounded by the throttle whatever the rate.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.overload.conftest import BurstService
from zmqmon.shells.client import StateClient
from zmqmon.widgets import ExecutionMonitor, ExecutionsMonitor

pytestmark = pytest.mark.timeout(90)


def test_sigterm_mid_burst_stops_the_service_with_every_event_stored(tmp_path: Path) -> None:
    service = BurstService(tmp_path / "s.sqlite3", sndhwm=500)
    try:
        ids = service.flood(60, 5)  # far longer than the test: interrupted mid-burst
        with StateClient(service.endpoints["state"]) as client:
            wait_for(lambda: client.snapshot(ids[0]).last_seq > 5000, message="a flood")
        service.proc.send_signal(signal.SIGTERM)
        assert service.proc.wait(10) == 0
        assert service.proc.stdout is not None
        emitted = json.loads(service.proc.stdout.read().strip().splitlines()[-1])["emitted"]
    finally:
        service.close()
    assert set(emitted) == set(ids) and all(n > 5000 for n in emitted.values())
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        for eid, last in emitted.items():
            seqs = [r[0] for r in db.execute(
                "SELECT seq FROM events WHERE execution_id = ? ORDER BY seq", (eid,)
            )]  # fmt: skip
            assert seqs == list(range(1, last + 1))  # every event published, stored
            (stored_last,) = db.execute(
                "SELECT last_seq FROM executions WHERE execution_id = ?", (eid,)
            ).fetchone()
            assert stored_last == last


def test_notebook_monitors_stay_exact_through_a_flood(burst_service: BurstService) -> None:
    endpoints = burst_service.endpoints
    listing = ExecutionsMonitor(events=endpoints["events"], state=endpoints["state"])
    try:
        ids = burst_service.flood(1.5, 3)
        late = ExecutionMonitor(ids[0], events=endpoints["events"], state=endpoints["state"])
        try:
            last = burst_service.flooded()
            with StateClient(endpoints["state"]) as client:
                final = {eid: client.snapshot(eid) for eid in last}
            wait_for(lambda: late.state == final[ids[0]], timeout=30, message="the late monitor")
            wait_for(
                lambda: all(listing.executions.get(e) == s for e, s in final.items()),
                timeout=30,
                message="the executions list",
            )
            assert late.value["lastSeq"] == last[ids[0]]  # what the front end holds, too
            renders = late._feed.throttle.renders
            assert renders < 200  # ~10 a second, not one per event (tens of thousands)
        finally:
            late.close()
    finally:
        listing.close()
