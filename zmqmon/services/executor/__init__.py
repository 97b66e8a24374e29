"""The workflow executor: runs agents of a workflow DAG and emits the contract's events.

* :class:`WorkflowEngine` — the engine, on any :class:`~zmqmon.core.emitter.EventEmitter`;
* :class:`Executor` — the embedded executor for scripts and notebooks (owns a full server);
* :class:`Workflow`, :class:`Agent` — the Python API; JSON definitions work as well;
* :class:`AgentContext` — what an agent receives;
* :class:`ExecutionHandle` — what ``submit`` returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zmqmon.services.executor.api import Agent, Workflow
from zmqmon.services.executor.context import AgentContext
from zmqmon.services.executor.engine import WorkflowEngine
from zmqmon.services.executor.handle import ExecutionHandle
from zmqmon.services.executor.progress import ProgressCoalescer
from zmqmon.services.executor.resolve import Plan, compile_workflow, resolve_uses

if TYPE_CHECKING:
    from zmqmon.services.executor.embedded import Executor

__all__ = [
    "Agent",
    "AgentContext",
    "ExecutionHandle",
    "Executor",
    "Plan",
    "ProgressCoalescer",
    "Workflow",
    "WorkflowEngine",
    "compile_workflow",
    "resolve_uses",
]


def __getattr__(name: str) -> Any:
    # Executor composes the server (ZeroMQ, SQLite): imported only when asked for.
    if name == "Executor":
        from zmqmon.services.executor.embedded import Executor

        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
