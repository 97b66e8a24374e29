"""Which browsers may talk to the bridge: the ``Origin`` and ``Host`` checks (contract §5).

Sans-I/O: a :class:`BrowserGuard` is built from the bound address and the ``--allow-origin`` /
``--allow-host`` settings, and :meth:`BrowserGuard.refusal` judges one request's headers. The same
check runs before the WebSocket handshake and before every HTTP route, as Jupyter's server does:

* **Host** (against DNS rebinding: a page on ``evil.example`` whose name is re-pointed at
  127.0.0.1 sends ``Host: evil.example``): the host part must be ``localhost``, the bound address,
  a loopback address, or a name given with ``--allow-host``. When the bridge is bound to a
  wildcard address (``0.0.0.0``, ``::``) any IP literal is accepted as well — a rebinding attack
  always comes with a DNS name — and names must be given with ``--allow-host``. ``*`` accepts any.
  A request without ``Host`` (HTTP/1.0 scripts) is not a browser's and passes.
* **Origin** (against cross-site WebSocket hijacking and cross-site requests): a request that
  carries ``Origin`` must come from the bridge's own page — ``http(s)://`` + the very ``Host`` it
  was sent to — or from an origin given with ``--allow-origin`` (``*`` accepts any). ``Origin:
  null`` (sandboxed frames, ``file://``) is refused. Clients that send no ``Origin`` (scripts,
  services, curl) are unaffected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["BrowserGuard", "parse_list"]

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def parse_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A comma-separated setting (or a list of them) as a tuple of non-empty, stripped items."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [i for v in value for i in v.split(",")]
    return tuple(i.strip() for i in items if i.strip())


def _hostname(host_header: str) -> str | None:
    """The host part of a ``Host`` header (``[::1]:3001`` → ``::1``), lower-cased; None if it is
    not a valid ``host[:port]``."""
    value = host_header.strip().lower()
    if not value or any(c in value for c in "/@?# \t"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        port = value[end + 2 :]
        name = value[1:end]
    else:
        name, _, port = value.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class BrowserGuard:
    """The Origin and Host policy of one bridge (see the module doc).

    ``bound``: the address the bridge listens on; ``allow_hosts``: further names for ``Host``;
    ``allow_origins``: further origins (``scheme://host[:port]``) for ``Origin``.
    """

    bound: str = "127.0.0.1"
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()

    def host_allowed(self, host_header: str | None) -> bool:
        """Does ``Host`` name this bridge? (None: no header, not a browser: allowed.)"""
        if host_header is None:
            return True
        if "*" in self.allow_hosts:
            return True
        name = _hostname(host_header)
        if name is None:
            return False
        if name == "localhost" or name == self.bound.lower().strip("[]"):
            return True
        if name in (h.lower() for h in self.allow_hosts):
            return True
        ip = _is_ip(name)
        if ip is not None:
            return ip.is_loopback or self.bound.strip("[]") in _WILDCARDS
        return False

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """Is ``Origin`` the bridge's own page (as reached by ``Host``) or an allowed origin?"""
        if origin is None:
            return True
        if "*" in self.allow_origins:
            return True
        value = origin.strip()
        if value.rstrip("/").lower() in (o.rstrip("/").lower() for o in self.allow_origins):
            return True
        if value.lower() == "null" or host_header is None:
            return False
        try:
            parts = urlsplit(value)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
            return False
        return parts.netloc.lower() == host_header.strip().lower()

    def refusal(self, host_header: str | None, origin: str | None) -> str | None:
        """Why a request with these headers is refused (403), or None if it may go on."""
        if not self.host_allowed(host_header):
            return (
                f"Host {host_header!r} does not name this bridge "
                "(use its address or localhost, or start it with --allow-host)"
            )
        if not self.origin_allowed(origin, host_header):
            return (
                f"Origin {origin!r} is not this bridge's page "
                "(start the bridge with --allow-origin to let that page connect)"
            )
        return None
