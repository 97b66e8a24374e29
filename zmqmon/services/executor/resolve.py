"""From whatever was submitted to a runnable :class:`Plan`, refusing bad workflows before they run.

Checks, in order, each raising :class:`~zmqmon.errors.WorkflowError` that names the fault:

1. the definition itself (shape, types — ``params`` must be an object —, duplicate ids, unknown
   ``dependsOn``, cycles): :func:`zmqmon.core.workflow.parse_workflow`;
2. every ``uses`` names a module the service may import agents from
   (:class:`~zmqmon.core.workflow.AgentAllowList`) — all of them checked before the first import;
3. every ``uses`` resolves to a callable (``module:attr.attr``), naming the agent and the path.
   Whatever importing the module raises — ``SystemExit`` from a ``__main__`` module included —
   refuses the workflow; it never reaches the caller's thread as anything but a WorkflowError;
4. the callable accepts one positional argument (the :class:`AgentContext`);
5. if the callable declares ``params_model`` (a pydantic model class), the agent's params validate
   against it — e.g. ``zmqmon.demo:work`` refuses ``{"seconds": "soon"}``.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from zmqmon.core.events import validation_message
from zmqmon.core.workflow import (
    AgentAllowList,
    WorkflowDefinition,
    parse_workflow_ordered,
)
from zmqmon.errors import WorkflowError
from zmqmon.services.executor.api import Workflow

__all__ = ["Plan", "WorkflowLike", "as_definition", "compile_workflow", "resolve_uses"]

WorkflowLike = WorkflowDefinition | Workflow | Mapping[str, Any] | str | bytes


@dataclass(frozen=True)
class Plan:
    """A validated workflow, ready to run: its definition, order and resolved callables."""

    definition: WorkflowDefinition
    order: list[str]
    functions: dict[str, Callable[..., Any]]
    is_async: dict[str, bool]


def resolve_uses(path: str, allow: AgentAllowList | None = None) -> Callable[..., Any]:
    """Import ``module:attr.attr`` and return the callable. Raises :class:`WorkflowError`.

    With ``allow``, a module outside it is refused before it is imported, and the attribute path
    may not step into a module outside it either.
    """
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise WorkflowError(f"{path!r} is not an import path of the form module:attr")
    if allow is not None:
        allow.check_uses(path)
    try:
        obj: Any = importlib.import_module(module_name)
    except BaseException as exc:
        # ImportError, or the module itself raising on import — SystemExit from a __main__ module,
        # say — refuses the workflow instead of ending the thread that asked. Only a real Ctrl-C
        # (delivered to the main thread) still interrupts.
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is (
            threading.main_thread()
        ):
            raise
        raise WorkflowError(
            f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise WorkflowError(f"module {module_name!r} has no attribute {attr_path!r}") from None
        if (
            allow is not None
            and isinstance(obj, ModuleType)
            and not allow.allows_module(obj.__name__)
        ):
            raise WorkflowError(f"{path!r} leads into module {obj.__name__!r}, not an agent module")
    if not callable(obj):
        raise WorkflowError(f"{path!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def as_definition(workflow: WorkflowLike) -> WorkflowDefinition:
    """The JSON definition of anything :func:`compile_workflow` accepts (checks shape only)."""
    return _ordered_definition(workflow)[0]


def _ordered_definition(workflow: WorkflowLike) -> tuple[WorkflowDefinition, list[str]]:
    if isinstance(workflow, Workflow):
        return parse_workflow_ordered(workflow.to_definition())
    return parse_workflow_ordered(workflow)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable instances with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _kinds(functions: dict[str, Callable[..., Any]]) -> dict[str, bool]:
    by_fn: dict[int, bool] = {}
    out = {}
    for agent_id, fn in functions.items():
        kind = by_fn.get(id(fn))
        if kind is None:
            kind = by_fn[id(fn)] = _is_async(fn)
        out[agent_id] = kind
    return out


def _check_signature(agent_id: str, uses: str, fn: Callable[..., Any]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: cannot check cheaply, let it run
    try:
        sig.bind(object())
    except TypeError:
        raise WorkflowError(
            f"agent {agent_id!r}: {uses} must accept one argument (the AgentContext), "
            f"its signature is {sig}"
        ) from None


def _check_params(agent_id: str, fn: Callable[..., Any], params: Mapping[str, Any]) -> None:
    model = getattr(fn, "params_model", None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        try:
            model.model_validate(params)
        except ValidationError as exc:
            raise WorkflowError(
                f"agent {agent_id!r}: bad params: {validation_message(exc)}"
            ) from None


def compile_workflow(workflow: WorkflowLike, *, allow: AgentAllowList | None = None) -> Plan:
    """Validate ``workflow`` completely and resolve its agents; nothing runs.

    ``allow``: the modules agents may come from (None: any). Callables handed in with a Python
    :class:`Workflow` are the caller's own objects and are not checked against it.
    Raises :class:`WorkflowError` naming the fault (see the module docstring).
    """
    definition, order = _ordered_definition(workflow)
    given = workflow.callables() if isinstance(workflow, Workflow) else {}
    if allow is not None:
        for spec in definition.agents:  # every path checked before the first import
            if spec.id not in given:
                try:
                    allow.check_uses(spec.uses)
                except WorkflowError as exc:
                    raise WorkflowError(f"agent {spec.id!r}: uses {spec.uses!r}: {exc}") from exc
    functions: dict[str, Callable[..., Any]] = {}
    checked: set[int] = set()  # one signature check per callable, however many agents use it
    for spec in definition.agents:
        fn = given.get(spec.id)
        if fn is None:
            try:
                fn = resolve_uses(spec.uses, allow)
            except WorkflowError as exc:
                raise WorkflowError(f"agent {spec.id!r}: uses {spec.uses!r}: {exc}") from exc
        if id(fn) not in checked:
            _check_signature(spec.id, spec.uses, fn)
            checked.add(id(fn))
        _check_params(spec.id, fn, spec.params)
        functions[spec.id] = fn
    return Plan(
        definition=definition,
        order=order,
        functions=functions,
        is_async=_kinds(functions),
    )
