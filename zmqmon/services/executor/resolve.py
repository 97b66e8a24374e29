"""From whatever was submitted to a runnable :class:`Plan`, refusing bad workflows before they run.

Checks, in order, each raising :class:`~zmqmon.errors.WorkflowError` that names the fault:

1. the definition itself (shape, types — ``params`` must be an object —, duplicate ids, unknown
   ``dependsOn``, cycles): :func:`zmqmon.core.workflow.parse_workflow`;
2. every ``uses`` resolves to a callable (``module:attr.attr``), naming the agent and the path;
3. the callable accepts one positional argument (the :class:`AgentContext`);
4. if the callable declares ``params_model`` (a pydantic model class), the agent's params validate
   against it — e.g. ``zmqmon.demo:work`` refuses ``{"seconds": "soon"}``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from zmqmon.core.events import validation_message
from zmqmon.core.workflow import WorkflowDefinition, parse_workflow, topological_order
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


def resolve_uses(path: str) -> Callable[..., Any]:
    """Import ``module:attr.attr`` and return the callable. Raises :class:`WorkflowError`."""
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        raise WorkflowError(f"{path!r} is not an import path of the form module:attr")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself raising on import
        raise WorkflowError(
            f"cannot import module {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise WorkflowError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise WorkflowError(f"{path!r} is a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]


def as_definition(workflow: WorkflowLike) -> WorkflowDefinition:
    """The JSON definition of anything :func:`compile_workflow` accepts (checks shape only)."""
    if isinstance(workflow, Workflow):
        return parse_workflow(workflow.to_definition())
    return parse_workflow(workflow)


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


def compile_workflow(workflow: WorkflowLike) -> Plan:
    """Validate ``workflow`` completely and resolve its agents; nothing runs.

    Raises :class:`WorkflowError` naming the fault (see the module docstring).
    """
    definition = as_definition(workflow)
    given = workflow.callables() if isinstance(workflow, Workflow) else {}
    functions: dict[str, Callable[..., Any]] = {}
    checked: set[int] = set()  # one signature check per callable, however many agents use it
    for spec in definition.agents:
        fn = given.get(spec.id)
        if fn is None:
            try:
                fn = resolve_uses(spec.uses)
            except WorkflowError as exc:
                raise WorkflowError(f"agent {spec.id!r}: uses {spec.uses!r}: {exc}") from None
        if id(fn) not in checked:
            _check_signature(spec.id, spec.uses, fn)
            checked.add(id(fn))
        _check_params(spec.id, fn, spec.params)
        functions[spec.id] = fn
    return Plan(
        definition=definition,
        order=topological_order(definition),
        functions=functions,
        is_async=_kinds(functions),
    )
