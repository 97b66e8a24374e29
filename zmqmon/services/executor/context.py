"""AgentContext: what an agent receives — params, inputs, dependency results, progress, cancel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zmqmon.errors import ExecutionCancelledError
from zmqmon.services.executor.progress import ProgressCoalescer

__all__ = ["AgentContext"]


class AgentContext:
    """The one argument of an agent callable.

    * ``params`` — the agent's params (a dict);
    * ``inputs`` — the workflow's inputs (a dict);
    * ``results`` — the results of the agents it depends on (agent id → what they returned);
    * ``agent_id``, ``agent_name``, ``execution_id``, ``workflow_id``;
    * ``progress(percent, message=None)`` — report progress (coalesced, cheap to call often);
    * ``cancelled`` / ``check_cancelled()`` — cancellation (or a timeout) was asked: a sync agent
      should look now and then and stop; an async agent is also cancelled at its next ``await``.
    """

    __slots__ = (
        "_cancelled",
        "_coalescer",
        "agent_id",
        "agent_name",
        "execution_id",
        "inputs",
        "params",
        "results",
        "workflow_id",
    )

    def __init__(
        self,
        *,
        agent_id: str,
        agent_name: str,
        execution_id: str,
        workflow_id: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, Any],
        results: Mapping[str, Any],
        coalescer: ProgressCoalescer | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.agent_name = agent_name
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.params: dict[str, Any] = dict(params)
        self.inputs: dict[str, Any] = dict(inputs)
        self.results: dict[str, Any] = dict(results)
        self._coalescer = coalescer
        self._cancelled = False

    def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress, 0–100 (clamped; fractions truncated). Coalesced: call it freely."""
        coalescer = self._coalescer
        if coalescer is not None:
            coalescer.report(percent, message)

    @property
    def cancelled(self) -> bool:
        """True once the execution was cancelled, failed elsewhere, or this agent timed out."""
        return self._cancelled

    def check_cancelled(self) -> None:
        """Raise :class:`~zmqmon.errors.ExecutionCancelledError` if :attr:`cancelled`."""
        if self._cancelled:
            raise ExecutionCancelledError(f"agent {self.agent_id!r}: execution cancelled")

    def _cancel(self) -> None:
        self._cancelled = True

    def __repr__(self) -> str:
        return f"<AgentContext {self.agent_id!r} of execution {self.execution_id!r}>"
