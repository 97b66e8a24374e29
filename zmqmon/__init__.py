"""zmqmon: a notebook-friendly, reactive monitor for workflow executions, built on ZeroMQ."""

from typing import TYPE_CHECKING

from zmqmon.core.delivery import Delivery, Mode, Snapshot
from zmqmon.core.events import Event, parse_event
from zmqmon.core.state import AgentState, ExecutionState, apply_event, replay
from zmqmon.core.workflow import AgentSpec, WorkflowDefinition, parse_workflow
from zmqmon.errors import (
    AgentFailedError,
    AgentTimeoutError,
    AuthError,
    BadRequestError,
    ConfigError,
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
    "ExecutionMonitor": "zmqmon.widgets",
    "ExecutionsMonitor": "zmqmon.widgets",
    "Executor": "zmqmon.services.executor",
    "Workflow": "zmqmon.services.executor",
    "Agent": "zmqmon.services.executor",
    "ExecutionHandle": "zmqmon.services.executor",
    "AgentContext": "zmqmon.services.executor",
    "Server": "zmqmon.services.server",
    "EventPublisher": "zmqmon.shells.publisher",
    "Subscriber": "zmqmon.shells.subscriber",
    "AsyncSubscriber": "zmqmon.shells.async_subscriber",
    "StateClient": "zmqmon.shells.client",
    "AsyncStateClient": "zmqmon.shells.client",
    "Proxy": "zmqmon.shells.proxy",
    "track": "zmqmon.tracking",
    "records": "zmqmon.analysis",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from zmqmon.analysis import records
    from zmqmon.services.executor import (
        Agent,
        AgentContext,
        ExecutionHandle,
        Executor,
        Workflow,
    )
    from zmqmon.services.server import Server
    from zmqmon.shells.async_subscriber import AsyncSubscriber
    from zmqmon.shells.client import AsyncStateClient, StateClient
    from zmqmon.shells.proxy import Proxy
    from zmqmon.shells.publisher import EventPublisher
    from zmqmon.shells.subscriber import Subscriber
    from zmqmon.tracking import track
    from zmqmon.widgets import ExecutionMonitor, ExecutionsMonitor, monitor


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zmqmon' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Agent",
    "AgentContext",
    "AgentFailedError",
    "AgentSpec",
    "AgentState",
    "AgentTimeoutError",
    "AsyncStateClient",
    "AsyncSubscriber",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "Delivery",
    "Event",
    "EventPublisher",
    "ExecutionCancelledError",
    "ExecutionError",
    "ExecutionHandle",
    "ExecutionMonitor",
    "ExecutionState",
    "ExecutionsMonitor",
    "Executor",
    "InternalError",
    "Mode",
    "NotFoundError",
    "ProtocolError",
    "Proxy",
    "PublisherLostError",
    "Server",
    "ServiceError",
    "ServiceUnavailableError",
    "Snapshot",
    "StateClient",
    "StoreError",
    "Subscriber",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowError",
    "ZmqmonError",
    "__version__",
    "apply_event",
    "monitor",
    "parse_event",
    "parse_workflow",
    "records",
    "replay",
    "track",
]
