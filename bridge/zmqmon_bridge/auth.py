"""JWT authentication of WebSocket handshakes and data requests (PyJWT).

A bridge is configured with either an HS256 secret or an RS256/ES256 public key (PEM), or
neither (anonymous mode: everyone is an admin, which suits the loopback default). A token comes
as the ``token`` query parameter or an ``Authorization: Bearer`` header. ``alg: none`` and any
algorithm but the configured family are refused; ``exp`` is enforced when present; ``sub`` is
required. Tokens and keys never appear in an error message or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from zmqmon.errors import AuthError
from zmqmon_bridge.protocol import Principal

__all__ = ["ANONYMOUS", "Authenticator", "token_from_request"]

#: the principal of every connection when no key is configured
ANONYMOUS = Principal(user=None, admin=True)


def token_from_request(path: str, headers: Mapping[str, str]) -> str | None:
    """The token of a request: ``Authorization: Bearer …`` first, else ``?token=…``."""
    auth = headers.get("Authorization") or headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    values = parse_qs(urlsplit(path).query).get("token")
    return values[0] if values else None


class Authenticator:
    """Verifies tokens against the configured key; ``enabled`` is False in anonymous mode."""

    def __init__(self, secret: str | None = None, public_key: str | None = None) -> None:
        """``public_key`` is PEM text or the path of a PEM file."""
        if secret and public_key:
            raise ValueError("give a JWT secret or a public key, not both")
        self._key: Any = None
        self._algorithms: list[str] = []
        if secret:
            self._key, self._algorithms = secret, ["HS256"]
        elif public_key:
            pem = public_key
            if "-----BEGIN" not in pem:
                pem = Path(public_key).read_text()
            self._key, self._algorithms = pem, ["RS256", "ES256"]

    @property
    def enabled(self) -> bool:
        """True when a key is configured (tokens are required)."""
        return self._key is not None

    def verify(self, token: str | None) -> Principal:
        """The principal a token names; :class:`AuthError` (a safe message) if refused."""
        if not self.enabled:
            return ANONYMOUS
        if not token:
            raise AuthError("missing token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                options={"require": ["sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("token algorithm not allowed") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad token signature") from None
        except jwt.PyJWTError as exc:
            # PyJWT's messages describe the claim or the format, never the token itself.
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a string")
        roles = claims.get("roles") or []
        admin = isinstance(roles, list) and "admin" in roles
        exp = claims.get("exp")
        expires = float(exp) if isinstance(exp, (int, float)) else None
        return Principal(user=sub, admin=admin, expires=expires)

    def from_request(self, path: str, headers: Mapping[str, str]) -> Principal:
        """Verify the token a request carries (see :func:`token_from_request`)."""
        return self.verify(token_from_request(path, headers))
