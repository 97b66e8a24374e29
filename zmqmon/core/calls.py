"""The state client's sans-I/O core: each request as a :class:`Call` (what to send, how to read
the reply), shared by the sync :class:`~zmqmon.shells.client.StateClient` and the asyncio
:class:`~zmqmon.shells.client.AsyncStateClient` so that both faces are a thin socket loop.

Pure: no sockets, no clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from zmqmon.core.events import Event, parse_event
from zmqmon.core.requests import encode_request, parse_reply
from zmqmon.core.state import ExecutionState
from zmqmon.core.wire import dumps, loads
from zmqmon.core.workflow import WorkflowDefinition
from zmqmon.errors import ProtocolError

__all__ = [
    "Call",
    "cancel",
    "create_workflow",
    "events",
    "events_payloads",
    "events_raw",
    "execute",
    "executions",
    "ping",
    "reply_id",
    "snapshot",
    "workflows",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request: its op, its fields (camelCase, None = absent) and its reply reader.

    ``read_raw``, if given, reads the reply's bytes first and may answer without parsing them
    (a relay that keeps events as bytes); it returns None for anything it does not read itself
    (an error reply, an unexpected shape), which ``read`` then decides as usual.
    """

    op: str
    fields: Mapping[str, Any]
    read: Callable[[dict[str, Any]], T]
    read_raw: Callable[[bytes], T | None] | None = None

    def encode(self, request_id: int) -> bytes:
        """The request frame, carrying ``request_id``."""
        return encode_request(self.op, request_id, **self.fields)

    def result(self, reply: bytes) -> T:
        """Decode a reply: raises the matching ``ServiceError`` or :class:`ProtocolError`."""
        if self.read_raw is not None:
            fast = self.read_raw(reply)
            if fast is not None:
                return fast
        obj = parse_reply(reply)
        try:
            return self.read(obj)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed {self.op} reply: {exc}") from exc


def reply_id(reply: bytes) -> Any:
    """The ``id`` a reply echoes, or None (a reply that is not even JSON has none)."""
    try:
        obj = loads(reply)
    except ProtocolError:
        return None
    return obj.get("id") if isinstance(obj, dict) else None


def _state(obj: Any) -> ExecutionState:
    return ExecutionState.model_validate(obj)


def ping() -> Call[str]:
    """``ping`` → the service's version."""
    return Call("ping", {}, lambda r: str(r["version"]))


def _fresh(fresh: bool) -> bool | None:
    return None if fresh else False  # the default is left off the wire


def snapshot(execution_id: str, *, fresh: bool = True) -> Call[ExecutionState]:
    """``snapshot`` → the execution's state. ``fresh=False``: what is committed, at once (for
    a repair: it goes on from there)."""
    return Call(
        "snapshot",
        {"executionId": execution_id, "fresh": _fresh(fresh)},
        lambda r: _state(r["execution"]),
    )


def _events(reply: dict[str, Any]) -> tuple[list[Event], int]:
    return [parse_event(e) for e in reply["events"]], int(reply["lastSeq"])


def events(
    execution_id: str, after_seq: int = 0, limit: int = 1000, *, fresh: bool = True
) -> Call[tuple[list[Event], int]]:
    """``events`` → (events with seq > ``after_seq``, the execution's ``lastSeq``).
    ``fresh=False``: what is committed, at once (for a repair, which asks again for more)."""
    return Call("events", _events_fields(execution_id, after_seq, limit, fresh), _events)


def _events_fields(execution_id: str, after_seq: int, limit: int, fresh: bool) -> dict[str, Any]:
    return {
        "executionId": execution_id,
        "afterSeq": after_seq,
        "limit": limit,
        "fresh": _fresh(fresh),
    }


def _events_raw(reply: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    items = reply["events"]
    if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
        raise TypeError("events must be a list of objects")
    return items, int(reply["lastSeq"])


def events_raw(
    execution_id: str, after_seq: int = 0, limit: int = 1000, *, fresh: bool = True
) -> Call[tuple[list[dict[str, Any]], int]]:
    """``events`` as wire dicts, not validated (for a relay that validates what it relays and
    keeps the bytes): (events with seq > ``after_seq``, the execution's ``lastSeq``)."""
    return Call("events", _events_fields(execution_id, after_seq, limit, fresh), _events_raw)


def _events_payloads(reply: dict[str, Any]) -> tuple[list[bytes], int]:
    items, last = _events_raw(reply)
    return [dumps(e) for e in items], last


def events_payloads(
    execution_id: str,
    after_seq: int = 0,
    limit: int = 1000,
    *,
    fresh: bool = True,
    read_raw: Callable[[bytes], tuple[list[bytes], int] | None] | None = None,
) -> Call[tuple[list[bytes], int]]:
    """``events`` as each event's JSON, not validated: (payloads with seq > ``after_seq``, the
    execution's ``lastSeq``). The service splices the stored bytes into its reply; ``read_raw``
    (see :class:`Call`) may cut them out as they are, else the reply is parsed and each event
    encoded again."""
    return Call(
        "events",
        _events_fields(execution_id, after_seq, limit, fresh),
        _events_payloads,
        read_raw,
    )


def executions(
    *,
    status: str | None = None,
    workflow_id: str | None = None,
    user_id: str | None = None,
    before: str | None = None,
    limit: int | None = None,
) -> Call[list[ExecutionState]]:
    """``executions`` → states, newest first (``user_id``: one user's; ``before``: older than
    that execution)."""
    return Call(
        "executions",
        {
            "status": status,
            "workflowId": workflow_id,
            "userId": user_id,
            "before": before,
            "limit": limit,
        },
        lambda r: [_state(s) for s in r["executions"]],
    )


def _definition(definition: Mapping[str, Any] | WorkflowDefinition) -> dict[str, Any]:
    if isinstance(definition, WorkflowDefinition):
        return definition.to_json_dict()
    return dict(definition)


def create_workflow(definition: Mapping[str, Any] | WorkflowDefinition) -> Call[str]:
    """``create_workflow`` → the new ``workflowId``."""
    return Call(
        "create_workflow", {"workflow": _definition(definition)}, lambda r: str(r["workflowId"])
    )


def workflows() -> Call[list[dict[str, Any]]]:
    """``workflows`` → stored workflows."""
    return Call("workflows", {}, lambda r: [dict(w) for w in r["workflows"]])


def execute(
    workflow_id: str | None = None,
    *,
    workflow: Mapping[str, Any] | WorkflowDefinition | None = None,
    inputs: Mapping[str, Any] | None = None,
    user_id: str | None = None,
) -> Call[str]:
    """``execute`` (a stored ``workflow_id`` or an inline ``workflow``) → the ``executionId``."""
    return Call(
        "execute",
        {
            "workflowId": workflow_id,
            "workflow": None if workflow is None else _definition(workflow),
            "inputs": None if inputs is None else dict(inputs),
            "userId": user_id,
        },
        lambda r: str(r["executionId"]),
    )


def cancel(execution_id: str, reason: str | None = None) -> Call[None]:
    """``cancel`` → nothing; ``ConflictError`` if already finished."""
    return Call("cancel", {"executionId": execution_id, "reason": reason}, lambda r: None)
