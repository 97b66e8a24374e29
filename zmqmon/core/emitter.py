"""EventEmitter: numbers and builds events; what carries them is handed in.

The emitter is the pure heart of the publisher: it assigns each execution's ``seq`` (1, 2, 3 …
with no gap, in emit order), stamps the time from the clock it is given, builds the wire dict and
hands it to ``deliver``. :class:`zmqmon.shells.publisher.EventPublisher` delivers to a ZeroMQ PUB
socket and the store; a test or an embedded tool may deliver to a list.

``emit`` is safe from any thread: numbering and delivery happen under one lock, so the order
of ``seq`` is the order of delivery.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from zmqmon.core.events import TERMINAL_TYPES, build_event_dict, format_timestamp

__all__ = ["EventEmitter"]

Deliver = Callable[[dict[str, Any]], None]


class EventEmitter:
    """Assigns per-execution ``seq`` and delivers wire dicts; the ``emit_*`` API of the contract.

    ``deliver`` is called under the emitter's lock with each event dict, in seq order.
    ``clock`` returns epoch seconds (default :func:`time.time`).
    """

    def __init__(self, deliver: Deliver, *, clock: Callable[[], float] = time.time) -> None:
        self._deliver = deliver
        self._clock = clock
        self._lock = threading.Lock()
        self._seq: dict[str, int] = {}
        self._finished: dict[str, float] = {}

    # -- core -----------------------------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        execution_id: str,
        workflow_id: str,
        data: dict[str, Any],
        timestamp: str | None = None,
    ) -> dict[str, Any]:
        """Number, stamp and deliver one event; returns its wire dict. ``timestamp``: when it
        happened, if not now (an event a reporter sends late: ``zmqmon.track``)."""
        with self._lock:
            seq = self._seq.get(execution_id, 0) + 1
            self._seq[execution_id] = seq
            now = self._clock()
            event = build_event_dict(
                event_type,
                execution_id,
                workflow_id,
                seq,
                timestamp or format_timestamp(now),
                data,
            )
            if event_type in TERMINAL_TYPES:
                self._finished[execution_id] = now
            self._deliver(event)
        return event

    def resume(self, execution_id: str, last_seq: int) -> None:
        """Continue an execution's numbering after ``last_seq`` (e.g. after a restart)."""
        with self._lock:
            self._seq[execution_id] = max(self._seq.get(execution_id, 0), last_seq)

    def last_seqs(self, recent_seconds: float = 10.0) -> dict[str, int]:
        """``executionId → lastSeq`` for executions running or finished in the last seconds.

        This is the heartbeat's ``executions``; older finished executions are forgotten here.
        """
        with self._lock:
            horizon = self._clock() - recent_seconds
            for execution_id, finished in list(self._finished.items()):
                if finished < horizon:
                    del self._finished[execution_id]
                    self._seq.pop(execution_id, None)
            return dict(self._seq)

    def last_seq(self, execution_id: str) -> int:
        """The last seq emitted for an execution (0 if none is known)."""
        return self._seq.get(execution_id, 0)

    def now(self) -> float:
        """The emitter's clock."""
        return self._clock()

    # -- the contract's events --------------------------------------------------------------------

    def emit_execution_started(
        self,
        execution_id: str,
        workflow_id: str,
        *,
        workflow_name: str,
        agent_count: int,
        user_id: str | None = None,
        agents: list[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """``execution:started``; ``agents`` ({agentId, agentName, dependsOn}) lets views show
        pending agents before they start."""
        data: dict[str, Any] = {
            "workflowName": workflow_name,
            "agentCount": agent_count,
            "userId": user_id,
            **extra,
        }
        if agents is not None:
            data["agents"] = [dict(a) for a in agents]
        return self.emit("execution:started", execution_id, workflow_id, data)

    def emit_execution_progress(
        self, execution_id: str, workflow_id: str, progress: int, current_agent: str | None = None
    ) -> dict[str, Any]:
        """``execution:progress`` (0–100)."""
        return self.emit(
            "execution:progress",
            execution_id,
            workflow_id,
            {"progress": progress, "currentAgent": current_agent},
        )

    def emit_execution_completed(
        self,
        execution_id: str,
        workflow_id: str,
        *,
        duration_ms: int,
        results: Mapping[str, Any],
        **extra: Any,
    ) -> dict[str, Any]:
        """``execution:completed`` (terminal); ``extra`` keys (``truncated``) join ``data``."""
        return self.emit(
            "execution:completed",
            execution_id,
            workflow_id,
            {"durationMs": duration_ms, "results": dict(results), **extra},
        )

    def emit_execution_failed(
        self,
        execution_id: str,
        workflow_id: str,
        *,
        error: str,
        error_type: str,
        agent_id: str | None = None,
        duration_ms: int | None = None,
    ) -> dict[str, Any]:
        """``execution:failed`` (terminal)."""
        return self.emit(
            "execution:failed",
            execution_id,
            workflow_id,
            {
                "error": error,
                "errorType": error_type,
                "agentId": agent_id,
                "durationMs": duration_ms,
            },
        )

    def emit_execution_cancelled(
        self, execution_id: str, workflow_id: str, reason: str = ""
    ) -> dict[str, Any]:
        """``execution:cancelled`` (terminal)."""
        return self.emit("execution:cancelled", execution_id, workflow_id, {"reason": reason})

    def emit_agent_started(
        self, execution_id: str, workflow_id: str, agent_id: str, agent_name: str
    ) -> dict[str, Any]:
        """``agent:started``."""
        return self.emit(
            "agent:started",
            execution_id,
            workflow_id,
            {"agentId": agent_id, "agentName": agent_name},
        )

    def emit_agent_progress(
        self,
        execution_id: str,
        workflow_id: str,
        agent_id: str,
        agent_name: str,
        progress: int,
        message: str | None = None,
    ) -> dict[str, Any]:
        """``agent:progress`` (0–100)."""
        return self.emit(
            "agent:progress",
            execution_id,
            workflow_id,
            {
                "agentId": agent_id,
                "agentName": agent_name,
                "progress": progress,
                "message": message,
            },
        )

    def emit_agent_completed(
        self,
        execution_id: str,
        workflow_id: str,
        agent_id: str,
        agent_name: str,
        *,
        result: Any,
        duration_ms: int,
        **extra: Any,
    ) -> dict[str, Any]:
        """``agent:completed``; ``result`` should be JSON-safe (the executor makes it so);
        ``extra`` keys (``truncated``) join ``data``."""
        return self.emit(
            "agent:completed",
            execution_id,
            workflow_id,
            {
                "agentId": agent_id,
                "agentName": agent_name,
                "result": result,
                "durationMs": duration_ms,
                **extra,
            },
        )

    def emit_agent_failed(
        self,
        execution_id: str,
        workflow_id: str,
        agent_id: str,
        agent_name: str,
        *,
        error: str,
        error_type: str,
        duration_ms: int | None = None,
    ) -> dict[str, Any]:
        """``agent:failed``."""
        return self.emit(
            "agent:failed",
            execution_id,
            workflow_id,
            {
                "agentId": agent_id,
                "agentName": agent_name,
                "error": error,
                "errorType": error_type,
                "durationMs": duration_ms,
            },
        )
