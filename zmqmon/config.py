"""Default endpoints, the service's limits, and their environment variables (contract §1, §6).

Every default is loopback-only. Each can be overridden by a flag or by its environment variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from zmqmon.errors import ConfigError

__all__ = [
    "DEFAULT_BRIDGE_HOST",
    "DEFAULT_BRIDGE_PORT",
    "DEFAULT_DASK_CHANNEL",
    "DEFAULT_DB",
    "DEFAULT_EVENTS",
    "DEFAULT_STATE",
    "ENV",
    "ServiceLimits",
    "from_env",
]

DEFAULT_EVENTS: Final = "tcp://127.0.0.1:5556"
DEFAULT_STATE: Final = "tcp://127.0.0.1:5557"
DEFAULT_BRIDGE_HOST: Final = "127.0.0.1"
DEFAULT_BRIDGE_PORT: Final = 3001
DEFAULT_DB: Final = "zmqmon.sqlite3"
#: where a service running agents on Dask binds the channel its workers connect to
DEFAULT_DASK_CHANNEL: Final = "tcp://127.0.0.1:0"

#: setting name → environment variable
ENV: Final = {
    "events": "ZMQMON_EVENTS",
    "state": "ZMQMON_STATE",
    "db": "ZMQMON_DB",
    "host": "ZMQMON_HOST",
    "port": "ZMQMON_PORT",
    "jwt_secret": "ZMQMON_JWT_SECRET",
    "jwt_public_key": "ZMQMON_JWT_PUBLIC_KEY",
    "jwt_audience": "ZMQMON_JWT_AUDIENCE",
    "jwt_issuer": "ZMQMON_JWT_ISSUER",
    "allow_origin": "ZMQMON_ALLOW_ORIGIN",
    "allow_host": "ZMQMON_ALLOW_HOST",
    "agents": "ZMQMON_AGENTS",
    "max_request_bytes": "ZMQMON_MAX_REQUEST_BYTES",
    "max_agents": "ZMQMON_MAX_AGENTS",
    "max_events_in_memory": "ZMQMON_MAX_EVENTS_IN_MEMORY",
    "max_workers": "ZMQMON_MAX_WORKERS",
    "curve": "ZMQMON_CURVE",
    "advertise_state": "ZMQMON_ADVERTISE_STATE",
    "curve_client": "ZMQMON_CURVE_CLIENT",
    "dask": "ZMQMON_DASK",
    "dask_channel": "ZMQMON_DASK_CHANNEL",
    "dask_advertise": "ZMQMON_DASK_ADVERTISE",
    "metrics_port": "ZMQMON_METRICS_PORT",
    "metrics_host": "ZMQMON_METRICS_HOST",
}

_DEFAULTS: Final[dict[str, str | None]] = {
    "events": DEFAULT_EVENTS,
    "state": DEFAULT_STATE,
    "db": DEFAULT_DB,
    "host": DEFAULT_BRIDGE_HOST,
    "port": str(DEFAULT_BRIDGE_PORT),
    "jwt_secret": None,
    "jwt_public_key": None,
    "jwt_audience": None,
    "jwt_issuer": None,
    "allow_origin": None,
    "allow_host": None,
    "agents": "zmqmon.demo",
    "max_request_bytes": str(4 * 1024 * 1024),
    "max_agents": "1000",
    "max_events_in_memory": "1000",
    "max_workers": "8",
    "curve": None,
    "advertise_state": None,
    "curve_client": "client",
    "dask": None,
    "dask_channel": DEFAULT_DASK_CHANNEL,
    "dask_advertise": None,
    "metrics_port": None,
    "metrics_host": "127.0.0.1",
}


def from_env(name: str, flag_value: str | None = None, *, keep_empty: bool = False) -> str | None:
    """A setting's value: the flag if given, else its environment variable, else the default.

    An empty variable counts as unset, unless ``keep_empty``: then it is returned as ``""``, for
    settings where empty must be an error rather than "not given" (a JWT secret: empty is not
    "auth off").
    """
    if flag_value is not None:
        return flag_value
    value = os.environ.get(ENV[name])
    if value or (keep_empty and value is not None):
        return value
    return _DEFAULTS[name]


@dataclass(frozen=True)
class ServiceLimits:
    """The executor service's caps against hostile or runaway input (docs/protocol.md, Limits).

    * ``max_request_bytes`` — the largest state-service request frame (ZeroMQ's ``MAXMSGSIZE``
      on the ROUTER socket: a bigger message is never read; ZeroMQ drops that connection);
    * ``max_agents`` — agents per workflow definition (``create_workflow``, ``execute``);
    * ``max_events_in_memory`` — events an execution's handle keeps in memory; older ones are
      read back from the store;
    * ``max_workers`` — sync agents running at once (stuck ones given up on not counted).
    """

    max_request_bytes: int = 4 * 1024 * 1024
    max_agents: int = 1000
    max_events_in_memory: int = 1000
    max_workers: int = 8

    @classmethod
    def parse(cls, values: Mapping[str, str | int | None]) -> ServiceLimits:
        """From settings by field name (None or missing: the default); each a whole number >= 1.

        Raises :class:`~zmqmon.errors.ConfigError` naming the setting and its variable.
        """
        changes: dict[str, int] = {}
        for f in fields(cls):
            raw = values.get(f.name)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise ConfigError(
                    f"{f.name.replace('_', '-')} (env {ENV[f.name]}) must be a whole number "
                    f">= 1, got {str(raw)[:40]!r}"
                )
            changes[f.name] = value
        return cls(**changes)


_LOOPBACK: Final = ("127.", "localhost", "::1", "[::1]", "ipc://", "inproc://")


def is_loopback(address: str) -> bool:
    """Does an endpoint (``tcp://host:port``, ``ipc://…``) or a bare host stay on this machine?"""
    rest = address.removeprefix(">")
    if rest.startswith(("ipc://", "inproc://")):
        return True
    host = rest.split("://", 1)[-1].rsplit(":", 1)[0] if "://" in rest else rest
    return host.startswith(_LOOPBACK)
