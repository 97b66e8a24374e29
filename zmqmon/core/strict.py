"""Strict mirrors of the event models, for a relay's fast acceptance check (msgspec).

A relay (the bridge) forwards an event's bytes as they were published and reads only a few of
its fields; it need not build the pydantic models of :mod:`zmqmon.core.events`, which cost five
times as much to validate as a msgspec ``Struct`` decoded straight from the bytes (measured:
1.5 against 7.9 µs for an ``agent:progress``, on the bench machine).

Each ``Struct`` here is **derived from its model** when this module is imported — field for
field, alias for alias, default for default, constraint for constraint — so the two cannot drift
apart. It is stricter than the model: msgspec coerces nothing ("5" is not 5, 5.0 is not 5), and
patterns take ASCII digits only and end at the very end of the string (see :func:`_meta`). So a
:data:`STRICT_DECODERS` decoder accepts a subset of what :func:`zmqmon.core.events.parse_event`
accepts, with the same values (property tests hold it to
that); everything it refuses goes to the models, which accept the lax forms or give the precise
error. It is a fast path, never a second opinion.

msgspec comes with the ``bridge`` extra, the one face that relays without building models.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from zmqmon.core.events import EVENT_VALIDATORS, Event

__all__ = ["STRICT_DECODERS", "STRICT_REFUSED", "StrictEvent"]


class StrictEvent(msgspec.Struct):
    """What every strict event has (its ``data`` is the strict mirror of its type's data)."""

    execution_id: str
    workflow_id: str
    timestamp: str
    seq: int
    type: str
    data: Any

    @property
    def user_id(self) -> str | None:
        """``execution:started``'s owner (None for other types, or when it has none)."""
        return getattr(self.data, "user_id", None)


def _meta(metadata: list[Any]) -> msgspec.Meta | None:
    """The model's constraints (pydantic's field metadata) as a msgspec ``Meta``."""
    kw: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            kw["ge"] = m.ge
        elif isinstance(m, annotated_types.Le):
            kw["le"] = m.le
        elif isinstance(m, annotated_types.MinLen):
            kw["min_length"] = m.min_length
        elif getattr(m, "pattern", None) is not None:
            # Stricter than the model's regex: Python's `$` also matches before a final "\n"
            # (the models' does not), and `\d` to ASCII (the Unicode tables of the two regex
            # engines need not be of the same version).
            pattern: str = m.pattern.replace(r"\d", "[0-9]")
            kw["pattern"] = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        else:
            raise TypeError(f"no strict mirror for the constraint {m!r}")
    return msgspec.Meta(**kw) if kw else None


def _strict(annotation: Any, metadata: list[Any], mirrors: dict[type, type]) -> Any:
    """A field's type, mirrored: nested models become their mirrors, constraints ``Meta``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        # (a nested `Annotated[int, Field(ge=0)]` carries its constraints in a FieldInfo)
        for m in extra:
            metadata = [*metadata, *(m.metadata if isinstance(m, FieldInfo) else [m])]
        return _strict(inner, metadata, mirrors)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        tp: Any = _mirror(annotation, mirrors)
    elif origin in (Union, types.UnionType):
        tp = Union[tuple(_strict(a, [], mirrors) for a in get_args(annotation))]
    elif origin is list:
        tp = list[_strict(get_args(annotation)[0], [], mirrors)]  # type: ignore[misc]
    elif origin is dict:
        key, value = get_args(annotation)
        tp = dict[key, _strict(value, [], mirrors)]  # type: ignore[valid-type,misc]
    else:
        tp = annotation  # str, int, Any, a Literal
    meta = _meta(metadata)
    return tp if meta is None else Annotated[tp, meta]


def _mirror(model: type[BaseModel], mirrors: dict[type, type]) -> type:
    """The strict ``Struct`` of a model (unknown keys are ignored, as the models allow or
    ignore them)."""
    if model in mirrors:
        return mirrors[model]
    fields: list[Any] = []
    rename: dict[str, str] = {}
    for name, info in model.model_fields.items():
        tp = _strict(info.annotation, list(info.metadata), mirrors)
        if info.alias is not None:
            rename[name] = info.alias
        if info.is_required():
            fields.append((name, tp))
        elif info.default_factory is not None:
            factory: Callable[[], Any] = info.default_factory  # type: ignore[assignment]
            fields.append((name, tp, msgspec.field(default_factory=factory)))
        else:
            fields.append((name, tp, info.default))
    base = StrictEvent if "data" in model.model_fields else msgspec.Struct
    mirror = msgspec.defstruct(f"Strict{model.__name__}", fields, bases=(base,), rename=rename)
    mirrors[model] = mirror
    return mirror


def _decoders() -> dict[str, Callable[[bytes], StrictEvent]]:
    mirrors: dict[type, type] = {}
    models = get_args(get_args(Event)[0])  # Annotated[Union[models…], …]
    out: dict[str, Callable[[bytes], StrictEvent]] = {}
    for model in models:
        event_type = get_args(model.model_fields["type"].annotation)[0]
        out[event_type] = msgspec.json.Decoder(_mirror(model, mirrors)).decode
    assert out.keys() == EVENT_VALIDATORS.keys()
    return out


#: event type → its strict decoder (JSON bytes → that type's :class:`StrictEvent`); each raises
#: one of :data:`STRICT_REFUSED` on anything it does not accept
STRICT_DECODERS: Final[Mapping[str, Callable[[bytes], StrictEvent]]] = _decoders()

STRICT_REFUSED: Final = (msgspec.ValidationError, msgspec.DecodeError)
