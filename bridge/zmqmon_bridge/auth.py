"""JWT authentication of WebSocket handshakes and data requests (PyJWT).

A bridge is configured with either an HS256 secret or an RS256/ES256 public key (PEM), or
neither (anonymous mode: everyone is an admin, which suits the loopback default). A token comes
as the ``token`` query parameter or an ``Authorization: Bearer`` header. ``alg: none`` and any
algorithm but the configured one are refused; ``exp`` is enforced when present; ``sub`` is
required. Tokens and keys never appear in an error message or a log line.

Configuration is checked when the :class:`Authenticator` is made, never left to fail open: an
empty secret, an unreadable key file or one that is not a PEM public key raise
:class:`~zmqmon.errors.ConfigError` (a ``ValueError``: ``zmqmon bridge`` exits non-zero with the
message) instead of meaning "auth off" or "every token refused".

``aud`` and ``iss``: with an ``audience`` (or ``issuer``) set, a token must carry that claim with
that value; without one, a token's ``aud`` is accepted whatever it says (PyJWT alone would refuse
every token that has one) and ``iss`` is not looked at.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from zmqmon.errors import AuthError, ConfigError
from zmqmon_bridge.protocol import Principal

if TYPE_CHECKING:
    from jwt.types import Options

__all__ = ["ANONYMOUS", "Authenticator", "token_from_request"]

#: the principal of every connection when no key is configured
ANONYMOUS = Principal(user=None, admin=True)

_FAR_FUTURE: Final = 253_402_300_799  # 9999-12-31: an ``exp`` past it is as good as never


def _setting(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"the JWT {what} is empty: give one, or none at all")
    return value


def _load_public_key(public_key: str) -> tuple[Any, list[str]]:
    """The key object and its one algorithm, from PEM text or the path of a PEM file."""
    pem = public_key
    if "-----BEGIN" not in pem:
        if not pem.strip():
            raise ConfigError("the JWT public key file name is empty")
        try:
            pem = Path(public_key).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ConfigError(
                f"cannot read the JWT public key file {public_key!r}: {reason}"
            ) from exc
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:  # not PEM, a private key, an unsupported type
        raise ConfigError("the JWT public key is not a PEM public key (RSA or EC P-256)") from exc
    if isinstance(key, rsa.RSAPublicKey):
        return key, ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key, ["ES256"]
    raise ConfigError("the JWT public key must be RSA (RS256) or EC P-256 (ES256)")


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

    def __init__(
        self,
        secret: str | None = None,
        public_key: str | None = None,
        *,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        """``public_key`` is PEM text or the path of a PEM file. ``audience``/``issuer``: the
        ``aud``/``iss`` a token must carry (None: not checked; ``zmqmon bridge`` reads them from
        ``--jwt-audience``/``--jwt-issuer`` or their environment variables).

        Raises :class:`~zmqmon.errors.ConfigError` for an empty secret, both a secret and a key,
        an unreadable or invalid key, an empty audience or issuer, or either without a key.
        """
        if secret is not None and public_key is not None:
            raise ConfigError("give a JWT secret or a public key, not both")
        self._key: Any = None
        self._algorithms: list[str] = []
        if secret is not None:
            if not secret.strip():
                raise ConfigError(
                    "the JWT secret is empty: that would turn auth off; give a secret, or none "
                    "for anonymous mode"
                )
            self._key, self._algorithms = secret, ["HS256"]
        elif public_key is not None:
            self._key, self._algorithms = _load_public_key(public_key)
        self._audience = _setting(audience, "audience")
        self._issuer = _setting(issuer, "issuer")
        if (self._audience or self._issuer) and self._key is None:
            raise ConfigError("a JWT audience or issuer needs a JWT secret or public key")
        required = ["sub"]
        if self._audience is not None:
            required.append("aud")
        if self._issuer is not None:
            required.append("iss")
        self._options: Options = {
            "require": required,
            # Without a configured audience, PyJWT would refuse any token carrying "aud".
            "verify_aud": self._audience is not None,
        }

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
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("token algorithm not allowed") from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad token signature") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer not accepted") from None
        except jwt.PyJWTError as exc:
            # PyJWT's messages describe the claim or the format, never the token itself.
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        # (``from None``: a chained PyJWT error could carry parts of the token into a log.)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a string")
        roles = claims.get("roles") or []
        admin = isinstance(roles, list) and "admin" in roles
        exp = claims.get("exp")
        expires = None
        if isinstance(exp, (int, float)) and not isinstance(exp, bool):
            expires = float(min(exp, _FAR_FUTURE))  # a huge int would overflow a float
        return Principal(user=sub, admin=admin, expires=expires)

    def from_request(self, path: str, headers: Mapping[str, str]) -> Principal:
        """Verify the token a request carries (see :func:`token_from_request`)."""
        return self.verify(token_from_request(path, headers))
