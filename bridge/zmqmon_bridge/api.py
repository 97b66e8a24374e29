"""The HTTP API of contract §8, over the bridge's state-service client and its auth rules.

| route | does |
| --- | --- |
| ``POST /api/workflows`` | a definition → 201 ``{"workflowId"}`` |
| ``GET /api/workflows`` | ``{"workflows": [...]}`` (``?limit=``) |
| ``POST /api/workflows/{id}/execute`` | optional ``{"inputs": {...}}`` → 202 ``{"executionId"}`` |
| ``GET /api/executions`` | ``?status=&workflowId=&limit=&before=`` → ``{"executions": [...]}`` |
| ``GET /api/executions/{id}`` | ``{"execution": state}`` |
| ``GET /api/executions/{id}/events`` | ``?afterSeq=&limit=`` → ``{"events", "lastSeq"}`` |
| ``POST /api/executions/{id}/cancel`` | 202; 409 ``conflict`` if it already finished |
| ``GET /api/services`` | ``{"services": [{"endpoint", "configured"}]}``: where requests can go |

Several state services (executors behind ``zmqmon proxy``, the bridge started with or without
``--state``): the services are the configured one and those heartbeats named lately. An
execution's routes go to the service that owns it (heartbeats, listings and executes say which).
Lists are merged across services, newest first, each item with its ``service``; ``?service=``
asks one (only one the bridge knows: a request never makes it connect elsewhere — 404
otherwise). ``execute`` goes to ``?service=`` or to the first service that has the workflow;
``POST /api/workflows`` to ``?service=``, the configured one, or the only one (else 400).
``before`` pages back through the service that owns that execution.

Owners: with auth on, a user lists, reads and cancels only executions whose ``userId`` is theirs
(an ``admin`` role: all). The list is filtered by the state service (``executions`` with
``userId``), so a user's page is never the newest rows of everyone, filtered down to nothing. An
execution of another user answers 403 ``forbidden``. ``execute`` records the token's ``sub`` as
``userId``; a body cannot claim another user (without auth, a body's ``userId`` is taken as is).

Errors: ``{"error": {"code", "message"}}`` — the state service's codes as 400/404/409/500, 503
``unavailable`` when it does not answer, and the bridge's own 401/403/405/413/415.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from zmqmon.core.calls import Call
from zmqmon.core.wire import loads
from zmqmon.errors import ProtocolError, ServiceError, ServiceUnavailableError
from zmqmon.shells.client import AsyncStateClient
from zmqmon_bridge.front import HttpReply, HttpRequest, error_reply, json_reply
from zmqmon_bridge.protocol import Principal

__all__ = ["STATUS_OF_CODE", "Api", "Services"]

#: the state service's error codes as HTTP statuses (contract §8)
STATUS_OF_CODE: Final = {"bad_request": 400, "not_found": 404, "conflict": 409, "internal": 500}
_STATUSES: Final = ("pending", "running", "completed", "failed", "cancelled")


class _Refused(Exception):
    """An error reply, raised from inside a handler."""

    def __init__(self, reply: HttpReply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def _bad(message: str) -> _Refused:
    return _Refused(error_reply(400, "bad_request", message))


def _int_param(req: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    values = req.query.get(name)
    if not values or values[-1] == "":
        return default
    raw = values[-1]
    # ASCII digits only: str.isdigit() also says yes to "²", which int() refuses
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise _bad(f"{name} must be a whole number from {low} to {high}, got {raw[:40]!r}")
    return int(raw)


def _str_param(req: HttpRequest, name: str) -> str | None:
    values = req.query.get(name)
    return values[-1] if values and values[-1] != "" else None


def json_body(req: HttpRequest, *, required: bool) -> Any:
    """The request's JSON body (None when there is none and none is required)."""
    if not req.body:
        if required:
            raise _bad("a JSON body is required")
        return None
    media = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise _Refused(
            error_reply(
                415,
                "unsupported_media_type",
                f"the body must be application/json, got {media or 'no Content-Type'!r}",
            )
        )
    try:
        return loads(req.body)
    except ProtocolError as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from exc


def _listing(key: str, items: list[dict[str, Any]], down: list[str]) -> dict[str, Any]:
    """A merged list; ``unavailable`` names the services that did not answer (if any)."""
    return {key: items, "unavailable": down} if down else {key: items}


def _raw(op: str, fields: dict[str, Any], key: str | None = None) -> Call[Any]:
    """A request whose reply is relayed as it came (no model round trip)."""
    return Call(op, fields, (lambda r: r[key]) if key else (lambda r: r))


class Services(Protocol):
    """Where the API's requests go (the bridge's hub)."""

    def client_for(self, execution_id: str | None = None) -> AsyncStateClient | None:
        """The service owning an execution, else the configured one."""

    def client_at(self, endpoint: str) -> AsyncStateClient | None:
        """The client of a known service (None for any other endpoint)."""

    def services(self) -> list[str]:
        """The known services, the configured one first."""

    def learn_service(self, execution_id: str, endpoint: str) -> None:
        """Remember the service owning an execution."""


_NO_SERVICE: Final = (
    "no state service for this request (the bridge was started without --state, and no "
    "heartbeat has named one yet)"
)


class Api:
    """The §8 routes. Each handler takes the request, its principal and its path parameters."""

    def __init__(
        self,
        services: Services,
        auth_enabled: bool,
        learn_owner: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.services = services
        self.auth_enabled = auth_enabled
        self.learn_owner = learn_owner

    async def run(self, handler: Callable[..., Awaitable[HttpReply]], *args: Any) -> HttpReply:
        """Call a handler; its refusals and the state service's errors become replies."""
        try:
            return await handler(*args)
        except _Refused as exc:
            return exc.reply
        except ServiceError as exc:
            status = STATUS_OF_CODE.get(exc.code, 500)
            return error_reply(status, exc.code if status != 500 else "internal", exc.message)
        except ServiceUnavailableError as exc:
            return error_reply(503, "unavailable", str(exc))

    async def _call(self, call: Call[Any], execution_id: str | None = None) -> Any:
        client = self.services.client_for(execution_id)
        if client is None:
            raise ServiceUnavailableError(_NO_SERVICE)
        return await client.call(call)

    def _targets(self, req: HttpRequest) -> list[tuple[str, AsyncStateClient]]:
        """``?service=`` (a known one, else 404), or every known service (none: 503)."""
        chosen = _str_param(req, "service")
        if chosen is not None:
            client = self.services.client_at(chosen)
            if client is None:
                raise _Refused(
                    error_reply(
                        404,
                        "not_found",
                        f"no state service {chosen[:200]!r} known here (GET /api/services)",
                    )
                )
            return [(chosen, client)]
        targets = [(e, c) for e in self.services.services() if (c := self.services.client_at(e))]
        if not targets:
            raise ServiceUnavailableError(_NO_SERVICE)
        return targets

    async def _gather(
        self, targets: list[tuple[str, AsyncStateClient]], call: Call[Any]
    ) -> tuple[list[tuple[str, Any]], list[str]]:
        """One call to each service at once: the answers, and the services that did not answer
        (all of them failing: the first one's error)."""
        results = await asyncio.gather(
            *(client.call(call) for _, client in targets), return_exceptions=True
        )
        answers, down = [], []
        for (endpoint, _), result in zip(targets, results, strict=True):
            if isinstance(result, ServiceUnavailableError):
                down.append(endpoint)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append((endpoint, result))
        if not answers:
            raise ServiceUnavailableError(f"no state service answered ({', '.join(down)})")
        return answers, down

    async def list_services(self, req: HttpRequest, principal: Principal) -> HttpReply:
        """``GET /api/services``."""
        configured = self.services.client_for(None) is not None
        items = [
            {"endpoint": e, "configured": configured and i == 0}
            for i, e in enumerate(self.services.services())
        ]
        return json_reply(200, {"services": items})

    async def _owned(self, principal: Principal, execution_id: str) -> dict[str, Any]:
        """The execution's state, if this principal may see it (403 otherwise, 404 if none)."""
        state = await self._call(
            _raw("snapshot", {"executionId": execution_id}, "execution"), execution_id
        )
        owner = state.get("userId") if isinstance(state, dict) else None
        if not principal.can_see(owner):
            raise _Refused(
                error_reply(403, "forbidden", f"execution {execution_id!r} is not yours")
            )
        return dict(state)

    # -- workflows --------------------------------------------------------------------------------

    async def list_workflows(self, req: HttpRequest, principal: Principal) -> HttpReply:
        """``GET /api/workflows``."""
        limit = _int_param(req, "limit", 100, 1, 1000)
        answers, down = await self._gather(
            self._targets(req), _raw("workflows", {"limit": limit}, "workflows")
        )
        merged = [{**w, "service": e} for e, ws in answers for w in ws]
        merged.sort(key=lambda w: str(w.get("createdAt") or ""), reverse=True)
        return json_reply(200, _listing("workflows", merged[:limit], down))

    async def create_workflow(self, req: HttpRequest, principal: Principal) -> HttpReply:
        """``POST /api/workflows``."""
        definition = json_body(req, required=True)
        if not isinstance(definition, dict):
            raise _bad("the body must be a workflow definition (a JSON object)")
        targets = self._targets(req)
        if len(targets) > 1:
            if self.services.client_for(None) is None:
                raise _bad("several state services: choose one with ?service= (GET /api/services)")
            targets = targets[:1]  # the configured one
        endpoint, client = targets[0]
        reply = await client.call(_raw("create_workflow", {"workflow": definition}))
        return json_reply(201, {"workflowId": reply["workflowId"], "service": endpoint})

    async def execute(self, req: HttpRequest, principal: Principal, workflow_id: str) -> HttpReply:
        """``POST /api/workflows/{workflowId}/execute``."""
        body = json_body(req, required=False) or {}
        if not isinstance(body, dict):
            raise _bad('the body must be a JSON object: {"inputs": {...}}')
        unknown = sorted(set(body) - {"inputs", "userId"})
        if unknown:
            raise _bad(f"unknown field(s) {', '.join(unknown)}; expected inputs")
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise _bad("inputs must be a JSON object")
        user = body.get("userId")
        if self.auth_enabled:
            user = principal.user  # the token's user, whatever the body says
        elif user is not None and not isinstance(user, str):
            raise _bad("userId must be a string")
        call = _raw("execute", {"workflowId": workflow_id, "inputs": inputs, "userId": user})
        reply, endpoint = None, ""
        for target, client in self._targets(req):  # the first service that has the workflow
            try:
                reply = await client.call(call)
            except ServiceError as exc:
                if exc.code != "not_found":
                    raise
                continue
            endpoint = target
            break
        if reply is None:
            raise _Refused(
                error_reply(404, "not_found", f"no state service has workflow {workflow_id!r}")
            )
        execution_id = str(reply["executionId"])
        self.services.learn_service(execution_id, endpoint)
        if self.learn_owner is not None:
            self.learn_owner(execution_id, user)
        return json_reply(202, {"executionId": execution_id, "service": endpoint})

    # -- executions -------------------------------------------------------------------------------

    async def list_executions(self, req: HttpRequest, principal: Principal) -> HttpReply:
        """``GET /api/executions``."""
        status = _str_param(req, "status")
        if status is not None and status not in _STATUSES:
            raise _bad(f"status must be one of {', '.join(_STATUSES)}, got {status[:40]!r}")
        before = _str_param(req, "before")
        limit = _int_param(req, "limit", 100, 1, 10_000)
        fields = {
            "status": status,
            "workflowId": _str_param(req, "workflowId"),
            "before": before,
            "limit": limit,
            # filtered by the state service, not after its limit
            "userId": None if principal.admin else principal.user,
        }
        if not principal.admin and principal.user is None:
            return json_reply(200, {"executions": []})
        targets = self._targets(req)
        if before is not None and _str_param(req, "service") is None:
            owner = self.services.client_for(before)  # pages back where that execution lives
            if owner is None:
                raise ServiceUnavailableError(_NO_SERVICE)
            targets = [(owner.endpoint, owner)]
        answers, down = await self._gather(targets, _raw("executions", fields, "executions"))
        merged = []
        for endpoint, states in answers:
            for state in states:
                self.services.learn_service(state["executionId"], endpoint)
                if self.learn_owner is not None:
                    self.learn_owner(state["executionId"], state.get("userId"))
                merged.append({**state, "service": endpoint})
        if len(answers) > 1:  # newest first across services, as each service sorts its own
            merged.sort(key=lambda st: str(st.get("startedAt") or ""), reverse=True)
        return json_reply(200, _listing("executions", merged[:limit], down))

    async def get_execution(
        self, req: HttpRequest, principal: Principal, execution_id: str
    ) -> HttpReply:
        """``GET /api/executions/{executionId}``."""
        return json_reply(200, {"execution": await self._owned(principal, execution_id)})

    async def events(self, req: HttpRequest, principal: Principal, execution_id: str) -> HttpReply:
        """``GET /api/executions/{executionId}/events``."""
        after = _int_param(req, "afterSeq", 0, 0, 2**63 - 1)
        limit = _int_param(req, "limit", 1000, 1, 10_000)
        if not principal.admin:
            await self._owned(principal, execution_id)
        page = await self._call(
            _raw("events", {"executionId": execution_id, "afterSeq": after, "limit": limit}),
            execution_id,
        )
        return json_reply(200, {"events": page["events"], "lastSeq": page["lastSeq"]})

    async def cancel(self, req: HttpRequest, principal: Principal, execution_id: str) -> HttpReply:
        """``POST /api/executions/{executionId}/cancel``."""
        if not principal.admin:
            await self._owned(principal, execution_id)
        who = principal.user or "anonymous"
        await self._call(
            _raw("cancel", {"executionId": execution_id, "reason": f"cancelled by {who} (HTTP)"}),
            execution_id,
        )
        return json_reply(202, {"executionId": execution_id})
