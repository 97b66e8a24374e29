"""Agent results made JSON-safe and kept under the wire's size limit (pure).

An agent may return anything. :func:`to_json_safe` converts what has an obvious JSON form
(dataclasses and pydantic models → objects, sets and tuples → arrays, datetimes → ISO 8601,
enums → their value, paths/UUIDs/decimals → strings) and *describes* the rest (bytes →
``"<bytes: 12 bytes>"``, an arbitrary object → ``"<Foo: repr…>"``). It never raises.

:func:`fit` keeps an event's ``data`` under the wire limit (contract §2) *before* the event is
emitted, so that the event dict a local listener sees, the payload on the wire and the row in the
store all say the same thing: the biggest fields become ``"<truncated: N bytes>"`` and
``data["truncated"]`` is true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

from pydantic import BaseModel

from zmqmon.core.wire import MAX_EVENT_BYTES, dumps, truncate_data

__all__ = ["DATA_BUDGET", "fit", "to_json_safe"]

#: bytes left for an event's ``data`` (the envelope — ids, type, timestamp — takes the rest).
DATA_BUDGET: Final = MAX_EVENT_BYTES - 16 * 1024
_MAX_DEPTH: Final = 64
_REPR_CHARS: Final = 200


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break the execution
        text = "?"
    if len(text) > _REPR_CHARS:
        text = text[:_REPR_CHARS] + "…"
    return f"<{type(value).__name__}: {text}>"


def to_json_safe(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe version of ``value`` (see the module docstring); never raises."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if _depth >= _MAX_DEPTH:
        return "<max depth>"
    d = _depth + 1
    try:
        if isinstance(value, Mapping):
            return {str(k): to_json_safe(v, d) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [to_json_safe(v, d) for v in value]
        if isinstance(value, (set, frozenset)):
            items = [to_json_safe(v, d) for v in value]
            with contextlib.suppress(TypeError):  # mixed types: keep iteration order
                items.sort()
            return items
        if isinstance(value, enum.Enum):
            return to_json_safe(value.value, d)
        if isinstance(value, BaseModel):
            return to_json_safe(value.model_dump(mode="json"), d)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                f.name: to_json_safe(getattr(value, f.name), d) for f in dataclasses.fields(value)
            }
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return value.isoformat()
        if isinstance(value, _dt.timedelta):
            return value.total_seconds()
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"<{type(value).__name__}: {len(value)} bytes>"
        if isinstance(value, (uuid.UUID, PurePath, Decimal, complex)):
            return str(value)
    except Exception:
        return _describe(value)
    return _describe(value)


def _size(value: Any) -> int:
    if value is None or isinstance(value, (bool, int, float)):
        return 8
    if isinstance(value, str) and len(value) < 1024:
        return len(value) + 2  # close enough for the budget; exact for ASCII
    return len(dumps(value))


def fit(data: dict[str, Any], budget: int = DATA_BUDGET) -> dict[str, Any]:
    """``data`` itself if it fits ``budget`` bytes of JSON; else a copy whose biggest fields
    (looking one level into dicts, e.g. ``results``) became notes, with ``truncated: True``."""
    sizes = {k: _size(v) for k, v in data.items()}
    if sum(sizes.values()) + 8 * len(sizes) <= budget // 2 or len(dumps(data)) <= budget:
        return data
    return truncate_data(data, budget)
