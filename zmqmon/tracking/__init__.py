"""Watching your own code (contract §9): ``zmqmon.track``.

::

    import zmqmon
    with zmqmon.track("Nightly ETL", state="tcp://127.0.0.1:5557") as run:   # execution:started
        with run.agent("load") as load:                                        # agent:started
            for row in load.iter(rows):                                        # agent:progress
                ...
        with run.agent("train", name="Trainer") as train:
            train.progress(50, "epoch 5/10")
    # agent:completed / execution:completed; an exception fails the agent and the run
    # (agent:failed, execution:failed) and goes on

Any code becomes an execution with the same events, store, stream and views as a workflow's:
the dashboard, ``zmqmon tail``, the notebook monitors and the HTTP API show it like any other.
``zmqmon.track`` is *another producer* of the contract's events: it reports them to a state
service (``report``, zmqmon's addition to §4), which numbers, stores and publishes them.

* ``state=None``: the events go to a service embedded in this process (started on first use,
  free loopback ports, a temporary store), so a notebook shows ``run`` as its live monitor;
  ``ZMQMON_TRACK_STATE`` names a service instead. ``state="tcp://…"``: that service.
* Reporting never blocks and never raises into the watched code. A service that is away delays
  the events — kept in a bounded buffer (``capacity`` events; progress is coalesced, the latest
  per agent), what had to be dropped counted in :attr:`Run.dropped` and in the last event's
  ``droppedEvents`` — and the program runs on. At exit, up to ``ZMQMON_TRACK_LINGER`` seconds
  (default 5) are given to send what is left.
* tqdm: while a run is active, tqdm's bars — in your loops or inside libraries — report as the
  progress of the current agent, or as agents of their own (``tqdm=False`` to leave tqdm alone;
  :attr:`track.tqdm <Track.tqdm>` is a tqdm class that always reports).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from zmqmon.tracking.run import Run, TrackedAgent, current_agent, current_run, pending_runs

__all__ = ["Run", "Track", "TrackedAgent", "current_agent", "current_run", "track"]

_embedded: Any = None
_embedded_lock = threading.Lock()


def embedded_service() -> Any:
    """The service this process's runs report to when no ``state`` is named (started once)."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            from zmqmon.core.workflow import AgentAllowList
            from zmqmon.services.server import Server

            _embedded = Server(
                "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", None, agents=AgentAllowList.ANY
            ).start()
        return _embedded


def _linger() -> float:
    try:
        return max(0.0, float(os.environ.get("ZMQMON_TRACK_LINGER", "5")))
    except ValueError:
        return 5.0


@atexit.register
def _at_exit() -> None:
    """Runs left open are ended; what is not sent yet gets ``ZMQMON_TRACK_LINGER`` seconds."""
    for run in pending_runs():
        if not run.finished:
            run._end_at_exit()
    deadline = time.monotonic() + _linger()
    for run in pending_runs():
        run.flush(max(0.0, deadline - time.monotonic()))
    global _embedded
    with _embedded_lock:
        server, _embedded = _embedded, None
    if server is not None:
        with contextlib.suppress(Exception):
            server.stop()


class Track:
    """``zmqmon.track``: call it to start a run; ``zmqmon.track.tqdm`` is a reporting tqdm."""

    def __call__(
        self,
        name: str,
        *,
        state: str | None = None,
        user_id: str | None = None,
        agents: Sequence[str] | Mapping[str, str] = (),
        workflow_id: str | None = None,
        progress_interval: float = 0.05,
        capacity: int = 10_000,
        tqdm: bool = True,
    ) -> Run:
        """Start a run named ``name``: ``execution:started`` now; use it in a ``with`` block
        (or call :meth:`Run.finish`).

        ``state``: the state service to report to (None: ``ZMQMON_TRACK_STATE``, else a service
        embedded in this process). ``user_id``: recorded as the execution's ``userId``.
        ``agents``: ids of the agents to come (or id → name), shown as pending from the start.
        ``workflow_id``: what groups runs (default: derived from ``name``, so runs of one name
        are one workflow). ``progress_interval``: seconds between progress events per agent.
        ``capacity``: events kept while the service is away. ``tqdm``: report tqdm's bars.
        """
        events = None
        endpoint = state or os.environ.get("ZMQMON_TRACK_STATE") or None
        if endpoint is None:
            server = embedded_service()
            endpoint, events = server.endpoints["state"], server.endpoints["events"]
        run = Run(
            name,
            endpoint,
            events_endpoint=events,
            user_id=user_id,
            agents=agents,
            workflow_id=workflow_id,
            progress_interval=progress_interval,
            capacity=capacity,
        )
        if tqdm:
            from zmqmon.tracking import tqdm as tqdm_support

            tqdm_support.watch(run)
        return run

    @property
    def tqdm(self) -> Any:
        """A ``tqdm.tqdm`` subclass whose bars report to the current run (needs tqdm)."""
        from zmqmon.tracking.tqdm import tqdm

        return tqdm

    def __repr__(self) -> str:
        return "<zmqmon.track>"


#: ``zmqmon.track(name, …)``: watch any code as an execution (see the module doc)
track = Track()
