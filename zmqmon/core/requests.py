"""The state service's request/reply codec (contract §4), without sockets.

A request is one JSON object with an ``op``; a reply is ``{"ok": true, …}`` or
``{"ok": false, "error": {"code", "message"}}``. A request may carry an ``id`` (string or
integer), echoed in its reply so that a DEALER client can match replies to requests.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from zmqmon.core.events import MAX_SEQ, EventType, validation_message
from zmqmon.core.wire import dumps, loads
from zmqmon.errors import BadRequestError, ProtocolError, ServiceError, service_error

__all__ = [
    "OPS",
    "CancelRequest",
    "CreateWorkflowRequest",
    "EventsRequest",
    "ExecuteRequest",
    "ExecutionsRequest",
    "PingRequest",
    "ReportItem",
    "ReportRequest",
    "Request",
    "SnapshotRequest",
    "WorkflowsRequest",
    "encode_error",
    "encode_ok",
    "encode_request",
    "parse_reply",
    "parse_request",
    "request_id_of",
]

OPS = (
    "ping",
    "snapshot",
    "events",
    "executions",
    "create_workflow",
    "workflows",
    "execute",
    "cancel",
    "report",
)

RequestId: TypeAlias = Union[str, int, None]


class _Req(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )
    id: RequestId = None


class PingRequest(_Req):
    """``ping`` → ``version``."""

    op: Literal["ping"]


class SnapshotRequest(_Req):
    """``snapshot`` → ``execution``."""

    op: Literal["snapshot"]
    execution_id: Annotated[str, Field(min_length=1)]
    #: False: answer from what is committed at once (a repair asks again if it needs more)
    fresh: bool = True


class EventsRequest(_Req):
    """``events`` → ``events`` with seq > ``afterSeq`` (at most ``limit``), ``lastSeq``."""

    op: Literal["events"]
    execution_id: Annotated[str, Field(min_length=1)]
    after_seq: Annotated[int, Field(ge=0, le=MAX_SEQ)] = 0
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000
    #: False: answer from what is committed at once (a repair asks again if it needs more)
    fresh: bool = True


class ExecutionsRequest(_Req):
    """``executions`` → ``executions`` (states, newest first)."""

    op: Literal["executions"]
    status: Literal["pending", "running", "completed", "failed", "cancelled"] | None = None
    workflow_id: str | None = None
    #: zmqmon: only this user's executions (a per-user list is filtered here, not after a limit)
    user_id: str | None = None
    #: zmqmon: only executions older than this one (the next page of a list)
    before: str | None = None
    limit: Annotated[int, Field(ge=1, le=10_000)] = 100


class CreateWorkflowRequest(_Req):
    """``create_workflow`` → ``workflowId``."""

    op: Literal["create_workflow"]
    workflow: dict[str, Any]


class WorkflowsRequest(_Req):
    """``workflows`` → ``workflows``: the ``limit`` newest (default 100, at most 1000)."""

    op: Literal["workflows"]
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class ExecuteRequest(_Req):
    """``execute`` (a stored ``workflowId`` or an inline ``workflow``) → ``executionId``."""

    op: Literal["execute"]
    workflow_id: str | None = None
    workflow: dict[str, Any] | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ExecuteRequest:
        if (self.workflow_id is None) == (self.workflow is None):
            raise ValueError("give exactly one of workflowId and workflow")
        return self


class CancelRequest(_Req):
    """``cancel`` → nothing (``conflict`` if the execution already finished)."""

    op: Literal["cancel"]
    execution_id: Annotated[str, Field(min_length=1)]
    reason: str = "cancelled by request"


_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"
#: the most events one ``report`` may carry (a reporter sends more in several)
MAX_REPORT_EVENTS = 1000


class ReportItem(BaseModel):
    """One event of a ``report``: its type, its data and when it happened (the reporter's
    clock; the service's when absent). The service adds the ids and the seq."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    timestamp: Annotated[str, Field(pattern=_TIMESTAMP)] | None = None


class ReportRequest(_Req):
    """``report`` (zmqmon's addition, for ``zmqmon.track``) → ``lastSeq``, ``closed``.

    Events of an execution the reporter runs itself: the first report of an execution starts
    with ``execution:started`` and creates it under ``key``, a secret only that reporter knows;
    every later report must carry the same key. ``batch`` numbers the reports of one execution
    (1, 2, …) so that one sent again after a lost reply is not applied twice. An empty ``events``
    says the reporter is alive.
    """

    op: Literal["report"]
    execution_id: Annotated[str, Field(min_length=1, max_length=200)]
    workflow_id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    key: Annotated[str, Field(min_length=16, max_length=200)]
    batch: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    events: Annotated[list[ReportItem], Field(max_length=MAX_REPORT_EVENTS)]


Request: TypeAlias = Annotated[
    Union[
        PingRequest,
        SnapshotRequest,
        EventsRequest,
        ExecutionsRequest,
        CreateWorkflowRequest,
        WorkflowsRequest,
        ExecuteRequest,
        CancelRequest,
        ReportRequest,
    ],
    Field(discriminator="op"),
]
_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)


def parse_request(data: bytes | str) -> Request:
    """Parse one request. Raises :class:`BadRequestError` saying precisely what is wrong."""
    try:
        obj = loads(data)
    except ProtocolError as exc:
        raise BadRequestError(f"request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequestError(f"request must be a JSON object, got {type(obj).__name__}")
    op = obj.get("op")
    if op is None:
        raise BadRequestError("missing 'op'; expected one of " + ", ".join(OPS))
    if op not in OPS:
        raise BadRequestError(f"unknown op {op!r}; expected one of " + ", ".join(OPS))
    try:
        return _ADAPTER.validate_python(obj)
    except ValidationError as exc:
        raise BadRequestError(f"bad {op} request: {validation_message(exc, tagged=True)}") from None


def request_id_of(data: bytes | str) -> RequestId:
    """Best effort: the ``id`` of a possibly malformed request, to echo in its error reply."""
    try:
        obj = loads(data)
    except ProtocolError:
        return None
    rid = obj.get("id") if isinstance(obj, dict) else None
    return rid if isinstance(rid, (str, int)) else None


def encode_request(op: str, request_id: RequestId = None, **fields: Any) -> bytes:
    """Encode a request (camelCase field names are the caller's)."""
    body: dict[str, Any] = {
        "op": op,
        **{k: v for k, v in fields.items() if v is not None},
    }
    if request_id is not None:
        body["id"] = request_id
    return dumps(body)


def encode_ok(request_id: RequestId = None, **fields: Any) -> bytes:
    """``{"ok": true, …}`` (with ``id`` echoed when the request had one)."""
    body: dict[str, Any] = {"ok": True, **fields}
    if request_id is not None:
        body["id"] = request_id
    return dumps(body)


def encode_error(code: str, message: str, request_id: RequestId = None) -> bytes:
    """``{"ok": false, "error": {"code", "message"}}``."""
    body: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        body["id"] = request_id
    return dumps(body)


def parse_reply(data: bytes | str) -> dict[str, Any]:
    """Decode a reply; an ``ok: false`` reply raises the matching :class:`ServiceError`."""
    obj = loads(data)
    if not isinstance(obj, dict) or "ok" not in obj:
        raise ProtocolError(f"malformed reply: {str(obj)[:200]}")
    if obj["ok"] is not True:
        err = obj.get("error") or {}
        raise service_error(str(err.get("code", "internal")), str(err.get("message", "")))
    return obj


_ = ServiceError  # re-exported for type checkers reading replies
