"""zmqmon: a notebook-friendly, reactive monitor for workflow executions, built on ZeroMQ."""

from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import AgentState, ExecutionState, apply_event, replay
from zmqmon.core.workflow import AgentSpec, WorkflowDefinition, parse_workflow
from zmqmon.errors import (
    AgentFailedError,
    AgentTimeoutError,
    AuthError,
    BadRequestError,
    ConflictError,
    ExecutionCancelledError,
    ExecutionError,
    InternalError,
    NotFoundError,
    ProtocolError,
    PublisherLostError,
    ServiceError,
    ServiceUnavailableError,
    StoreError,
    WorkflowError,
    ZmqmonError,
)

__version__ = "0.1.0"

# Names imported on first use, so that ``import zmqmon`` needs none of the optional extras
# (e.g. ``zmqmon.monitor`` needs ipywidgets): name → module that defines it.
_LAZY = {
    "monitor": "zmqmon.widgets",
    "Executor": "zmqmon.services.executor",
    "Workflow": "zmqmon.services.executor",
    "Agent": "zmqmon.services.executor",
    "ExecutionHandle": "zmqmon.services.executor",
    "AgentContext": "zmqmon.services.executor",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zmqmon' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "Agent",
    "AgentContext",
    "AgentFailedError",
    "AgentSpec",
    "AgentState",
    "AgentTimeoutError",
    "AuthError",
    "BadRequestError",
    "ConflictError",
    "Event",
    "ExecutionCancelledError",
    "ExecutionError",
    "ExecutionHandle",
    "ExecutionState",
    "Executor",
    "InternalError",
    "NotFoundError",
    "ProtocolError",
    "PublisherLostError",
    "ServiceError",
    "ServiceUnavailableError",
    "StoreError",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowError",
    "ZmqmonError",
    "__version__",
    "apply_event",
    "monitor",
    "parse_event",
    "parse_workflow",
    "replay",
]
