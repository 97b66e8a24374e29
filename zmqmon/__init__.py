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

__all__ = [
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
    "ExecutionState",
    "InternalError",
    "NotFoundError",
    "ProtocolError",
    "PublisherLostError",
    "ServiceError",
    "ServiceUnavailableError",
    "StoreError",
    "WorkflowDefinition",
    "WorkflowError",
    "ZmqmonError",
    "__version__",
    "apply_event",
    "parse_event",
    "parse_workflow",
    "replay",
]
