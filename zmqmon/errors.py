"""The one exception tree of zmqmon.

Every error zmqmon raises on purpose derives from :class:`ZmqmonError`, so
``except ZmqmonError`` catches all of them and nothing else.

::

    ZmqmonError
    ├── ProtocolError            a message on the wire is malformed (bad frames, JSON, schema)
    │   └── (zmqmon_bridge.protocol.ClientMessageError: a WebSocket client's message; has ``code``)
    ├── WorkflowError            a workflow definition is invalid (cycle, duplicate id …)
    ├── ServiceError             the state service answered ``{"ok": false}``; has ``code``
    │   ├── BadRequestError      code ``bad_request``
    │   ├── NotFoundError        code ``not_found``
    │   ├── ConflictError        code ``conflict``
    │   └── InternalError        code ``internal``
    ├── ServiceUnavailableError  the state service did not answer in time
    ├── PublisherLostError       heartbeats stopped: the publisher is gone or unreachable
    ├── StoreError               the SQLite store failed
    ├── AuthError                a token is missing, expired or invalid (bridge)
    ├── ConfigError              a setting given at start is unusable (empty JWT secret, an
    │                            unreadable key, a bad --agents list); also a ValueError
    └── ExecutionError           an execution did not complete (``handle.result``)
        ├── AgentFailedError     an agent raised; ``agent_id``, ``error_type``
        ├── ExecutionCancelledError
        └── AgentTimeoutError    an agent ran past ``timeoutSeconds``
"""

from __future__ import annotations

__all__ = [
    "AgentFailedError",
    "AgentTimeoutError",
    "AuthError",
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ExecutionCancelledError",
    "ExecutionError",
    "InternalError",
    "NotFoundError",
    "ProtocolError",
    "PublisherLostError",
    "ServiceError",
    "ServiceUnavailableError",
    "StoreError",
    "WorkflowError",
    "ZmqmonError",
    "service_error",
]


class ZmqmonError(Exception):
    """Base class of every error zmqmon raises on purpose."""


class ProtocolError(ZmqmonError):
    """A message (ZeroMQ frames, event JSON, request) does not follow the contract."""


class WorkflowError(ZmqmonError):
    """A workflow definition is invalid; the message names the fault."""


class ServiceError(ZmqmonError):
    """The state service refused a request. ``code`` is the contract's error code."""

    code = "internal"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message


class BadRequestError(ServiceError):
    """The request was malformed (``bad_request``)."""

    code = "bad_request"


class NotFoundError(ServiceError):
    """The execution or workflow does not exist (``not_found``)."""

    code = "not_found"


class ConflictError(ServiceError):
    """The request conflicts with the current state, e.g. cancelling a finished execution."""

    code = "conflict"


class InternalError(ServiceError):
    """The service failed while handling a valid request (``internal``)."""

    code = "internal"


_BY_CODE: dict[str, type[ServiceError]] = {
    "bad_request": BadRequestError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "internal": InternalError,
}


def service_error(code: str, message: str) -> ServiceError:
    """Build the :class:`ServiceError` subclass matching an error ``code``."""
    cls = _BY_CODE.get(code, ServiceError)
    return cls(message, code)


class ServiceUnavailableError(ZmqmonError):
    """The state service did not answer within the timeout."""


class PublisherLostError(ZmqmonError):
    """No heartbeat arrived for longer than the allowed interval."""


class StoreError(ZmqmonError):
    """The SQLite store could not read or write."""


class AuthError(ZmqmonError):
    """A token is missing, expired, badly signed or otherwise invalid."""


class ConfigError(ZmqmonError, ValueError):
    """A setting given at start cannot be used; the message names it (never a secret's value).

    Also a :class:`ValueError`, so code that checks settings with ``except ValueError`` keeps
    working. A service refuses to start on it (non-zero exit) rather than guess.
    """


class ExecutionError(ZmqmonError):
    """An execution ended without completing."""


class AgentFailedError(ExecutionError):
    """An agent raised; the execution failed."""

    def __init__(
        self,
        message: str,
        *,
        agent_id: str | None = None,
        error_type: str = "Exception",
    ) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.error_type = error_type


class ExecutionCancelledError(ExecutionError):
    """The execution was cancelled."""


class AgentTimeoutError(ExecutionError):
    """An agent ran longer than its ``timeoutSeconds``."""
