"""Default endpoints and their environment variables (contract §1, §6).

Every default is loopback-only. Each can be overridden by a flag or by its environment variable.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = [
    "DEFAULT_BRIDGE_HOST",
    "DEFAULT_BRIDGE_PORT",
    "DEFAULT_DB",
    "DEFAULT_EVENTS",
    "DEFAULT_STATE",
    "ENV",
    "from_env",
]

DEFAULT_EVENTS: Final = "tcp://127.0.0.1:5556"
DEFAULT_STATE: Final = "tcp://127.0.0.1:5557"
DEFAULT_BRIDGE_HOST: Final = "127.0.0.1"
DEFAULT_BRIDGE_PORT: Final = 3001
DEFAULT_DB: Final = "zmqmon.sqlite3"

#: setting name → environment variable
ENV: Final = {
    "events": "ZMQMON_EVENTS",
    "state": "ZMQMON_STATE",
    "db": "ZMQMON_DB",
    "host": "ZMQMON_HOST",
    "port": "ZMQMON_PORT",
    "jwt_secret": "ZMQMON_JWT_SECRET",
    "jwt_public_key": "ZMQMON_JWT_PUBLIC_KEY",
    "agents": "ZMQMON_AGENTS",
}

_DEFAULTS: Final[dict[str, str | None]] = {
    "events": DEFAULT_EVENTS,
    "state": DEFAULT_STATE,
    "db": DEFAULT_DB,
    "host": DEFAULT_BRIDGE_HOST,
    "port": str(DEFAULT_BRIDGE_PORT),
    "jwt_secret": None,
    "jwt_public_key": None,
    "agents": "zmqmon.demo",
}


def from_env(name: str, flag_value: str | None = None) -> str | None:
    """A setting's value: the flag if given, else its environment variable, else the default."""
    if flag_value is not None:
        return flag_value
    value = os.environ.get(ENV[name])
    if value:
        return value
    return _DEFAULTS[name]
