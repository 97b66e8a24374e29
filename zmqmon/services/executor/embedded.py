"""The embedded executor: a whole zmqmon service inside a script or a notebook.

::

    import zmqmon
    with zmqmon.Executor() as ex:            # free loopback ports, a temporary SQLite file
        run = ex.submit(zmqmon.demo.DEMO_WORKFLOWS["fan-out"])
        run                                   # in a notebook: the live monitor
        print(run.result)

It owns a :class:`zmqmon.services.server.Server` — event stream (PUB), state service (ROUTER),
store — so anything else can watch its executions: ``zmqmon tail --events …``, the bridge, a
notebook monitor in another kernel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from zmqmon.services.executor.handle import ExecutionHandle
from zmqmon.services.executor.resolve import WorkflowLike

__all__ = ["Executor"]


class Executor:
    """Embedded executor: owns a started :class:`~zmqmon.services.server.Server`.

    ``events``/``state``: endpoints to bind (port 0 = a free one); ``db``: SQLite file (None: a
    temporary file, removed on :meth:`close`). ``max_workers`` threads run sync agents;
    ``progress_interval`` coalesces progress events (seconds; 0 = every call). Agents may come from
    any importable module, through :meth:`submit` and through its state port alike.
    ``dask`` runs every agent on a Dask cluster instead of in this process: a
    ``distributed.Client``, a ``LocalCluster`` or a scheduler address (the workers must import
    the agents' modules, and reach this process at ``dask_channel``).
    """

    def __init__(
        self,
        *,
        events: str = "tcp://127.0.0.1:0",
        state: str = "tcp://127.0.0.1:0",
        db: str | os.PathLike[str] | None = None,
        max_workers: int = 8,
        progress_interval: float = 0.05,
        heartbeat_interval: float = 0.5,
        dask: Any = None,
        dask_channel: str = "tcp://127.0.0.1:0",
    ) -> None:
        from zmqmon.core.workflow import AgentAllowList
        from zmqmon.services.server import Server  # the service layer composes the shells

        self.server = Server(
            events,
            state,
            db,
            heartbeat_interval=heartbeat_interval,
            max_workers=max_workers,
            progress_interval=progress_interval,
            # The user's own process: any module, as ``import`` in their code would. (Its state
            # port is loopback; `zmqmon serve` is where the allow-list matters.)
            agents=AgentAllowList.ANY,
            dask=dask,
            dask_channel=dask_channel,
        ).start()
        if self.server.engine is None:  # pragma: no cover - only if the engine failed to import
            self.server.stop()
            raise RuntimeError("the workflow engine is not available")
        self.server.engine.endpoints = dict(self.server.endpoints)
        self._closed = False

    @property
    def endpoints(self) -> dict[str, str]:
        """``{"events": "tcp://127.0.0.1:…", "state": "tcp://127.0.0.1:…"}``."""
        return dict(self.server.endpoints)

    def submit(
        self,
        workflow: WorkflowLike,
        *,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> ExecutionHandle:
        """Store and start a workflow (a :class:`Workflow`, a definition, or its JSON dict).

        Raises :class:`~zmqmon.errors.WorkflowError` naming the fault before anything runs.
        """
        if self._closed:
            raise RuntimeError("the executor is closed")
        handle: ExecutionHandle = self.server.submit(workflow, inputs=inputs, user_id=user_id)
        return handle

    def cancel(self, execution_id: str, reason: str = "cancelled") -> bool:
        """Cancel an execution; False if it is unknown or already finished."""
        return bool(self.server.engine.cancel(execution_id, reason))

    def close(self) -> None:
        """Cancel what still runs, then stop the service (every event is stored first)."""
        if not self._closed:
            self._closed = True
            self.server.stop()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<zmqmon.Executor {state} events={self.server.endpoints.get('events')}>"
