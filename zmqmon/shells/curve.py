"""CURVE on the ZeroMQ side: encryption, and only known clients, for the stream and the service.

ZeroMQ's CurveZMQ (pyzmq's ``zmq.auth``) encrypts a connection and authenticates both ends with
Curve25519 key pairs. When keys are configured, the service's event stream (PUB) and state service
(ROUTER) are CURVE *servers*: a client must know the service's public key, and its own public key
must be one the service authorizes — a client without an allowed key gets nothing (its handshake
fails; ZeroMQ retries quietly, nothing is delivered). Without keys, both are plain TCP, for
loopback or a trusted network.

One directory holds a deployment's keys (``zmqmon keys DIR`` makes it)::

    DIR/server.key            the service's public key   (every client needs it)
    DIR/server.key_secret     the service's key pair     (the service alone)
    DIR/<client>.key_secret   a client's key pair        (that client alone; default "client")
    DIR/authorized/*.key      the clients' public keys the service accepts

The service is configured with :meth:`CurveServer.load` (``zmqmon serve --curve DIR``), a client
with :meth:`CurveClient.load` (``--curve DIR [--curve-client NAME]``). Copy ``server.key`` and the
client's ``.key_secret`` to a client's host; the service's host needs ``server.key_secret`` and
``authorized/``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from zmqmon.errors import ConfigError

__all__ = ["CurveClient", "CurveServer", "client_keys", "make_keys", "run_keys"]

_SERVER = "server"


def _load(path: Path, what: str, secret: bool) -> tuple[bytes, bytes | None]:
    public: bytes | None = None
    private: bytes | None = None
    if path.exists():
        try:
            public, private = zmq.auth.load_certificate(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if public is None or (secret and private is None):
        kind = "key pair (.key_secret)" if secret else "public key (.key)"
        raise ConfigError(f"no {what} {kind} at {path}")
    return public, private


def _check_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq has no CURVE support (built without libsodium)")


@dataclass(frozen=True)
class CurveServer:
    """A service's key pair and the directory of client public keys it accepts."""

    public: bytes
    secret: bytes
    authorized: Path

    @classmethod
    def load(cls, directory: str | Path) -> CurveServer:
        """From a keys directory (see the module doc). Raises ``ConfigError``."""
        _check_curve()
        root = Path(directory)
        public, secret = _load(root / f"{_SERVER}.key_secret", "the service's", True)
        authorized = root / "authorized"
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise ConfigError(f"no authorized client keys in {authorized}")
        assert secret is not None
        return cls(public, secret, authorized)

    def apply(self, sock: Any) -> None:
        """Make a socket (before it binds) a CURVE server with this key pair."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def authenticate(self, context: zmq.Context[Any]) -> ThreadAuthenticator:
        """Start the authenticator (ZAP) of a context: only the authorized keys get in.

        One per context, before its CURVE sockets bind; :meth:`ThreadAuthenticator.stop` it
        when the context ends.
        """
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.authorized))
        return auth


@dataclass(frozen=True)
class CurveClient:
    """A client's key pair and the public key of the service it talks to."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, directory: str | Path, name: str = "client") -> CurveClient:
        """From a keys directory: ``server.key`` and ``<name>.key_secret``."""
        _check_curve()
        root = Path(directory)
        server_public, _ = _load(root / f"{_SERVER}.key", "the service's", False)
        public, secret = _load(root / f"{name}.key_secret", f"client {name!r}'s", True)
        assert secret is not None
        return cls(server_public, public, secret)

    def apply(self, sock: Any) -> None:
        """Make a socket (before it connects) a CURVE client of the service."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def make_keys(directory: str | Path, clients: tuple[str, ...] = ("client",)) -> dict[str, Path]:
    """Create a deployment's keys (see the module doc); returns what it wrote, by role.

    Existing key files are never overwritten (a ``ConfigError`` says which).
    """
    _check_curve()
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    authorized = root / "authorized"
    authorized.mkdir(exist_ok=True)
    out: dict[str, Path] = {}
    for name in (_SERVER, *clients):
        if (root / f"{name}.key").exists() or (root / f"{name}.key_secret").exists():
            raise ConfigError(f"{root / name}.key exists already: not overwritten")
        public, secret = zmq.auth.create_certificates(str(root), name)
        Path(secret).chmod(0o600)
        out[f"{name} secret"] = Path(secret)
        out[f"{name} public"] = Path(public)
        if name != _SERVER:
            shutil.copy(public, authorized / f"{name}.key")
    out["authorized"] = authorized
    return out


def client_keys(setting: tuple[str | None, str] | None) -> CurveClient | None:
    """A command's ``(directory, client name)`` setting as keys (None: no CURVE)."""
    if setting is None or not setting[0]:
        return None
    return CurveClient.load(setting[0], setting[1])


def run_keys(directory: str, clients: tuple[str, ...]) -> int:
    """``zmqmon keys DIR [--client NAME …]``: make the keys; say what goes where."""
    try:
        written = make_keys(directory, clients)
    except ConfigError as exc:
        print(f"zmqmon keys: {exc}", file=sys.stderr)
        return 2
    root = Path(directory)
    print(f"service (zmqmon serve --curve {root}): {written['server secret']}, {root}/authorized/")
    for name in clients:
        print(
            f"client {name} (--curve DIR --curve-client {name}): {written['server public']} "
            f"and {written[f'{name} secret']}"
        )
    return 0
