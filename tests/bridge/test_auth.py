"""JWT verification (unit): every refusal case, both key families, where the token comes from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st
from zmqmon_bridge.auth import ANONYMOUS, Authenticator, token_from_request
from zmqmon_bridge.protocol import Principal

from tests.strategies import edgy_ints, json_values, no_logged_errors, objects
from zmqmon.errors import AuthError, ConfigError

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def pem_pair(kind: str) -> tuple[Any, str]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, public.decode()


def hs(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def unsigned(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, algorithm="none")


def test_anonymous_mode_needs_no_token_and_sees_all() -> None:
    auth = Authenticator()
    assert not auth.enabled
    assert auth.verify(None) is ANONYMOUS
    assert ANONYMOUS.can_see("anyone")


def test_hs256_user_and_admin() -> None:
    auth = Authenticator(secret=SECRET)
    assert auth.verify(hs({"sub": "alice"})) == Principal("alice", False)
    assert auth.verify(hs({"sub": "root", "roles": ["admin"]})) == Principal("root", True)
    assert auth.verify(hs({"sub": "x", "roles": "admin"})).admin is False  # roles must be a list


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "missing token"),
        ("", "missing token"),
        (hs({"sub": "alice", "exp": int(time.time()) - 10}), "token expired"),
        (hs({"sub": "alice"}, secret="another-secret-another-secret-1234"), "bad token signature"),
        (unsigned({"sub": "alice"}), "token algorithm not allowed"),
        (hs({"name": "no sub"}), "invalid token"),
        (hs({"sub": 42}), "invalid token"),
        ("not.a.jwt", "invalid token"),
    ],
)
def test_refusals(token: str | None, message: str) -> None:
    auth = Authenticator(secret=SECRET)
    with pytest.raises(AuthError) as info:
        auth.verify(token)
    assert str(info.value).startswith(message)
    if token:
        assert token not in str(info.value)  # a token never appears in a message


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_public_key_families(kind: str, alg: str, tmp_path: Path) -> None:
    private, public = pem_pair(kind)
    path = tmp_path / "key.pem"
    path.write_text(public)
    for source in (public, str(path)):  # PEM text or a file
        auth = Authenticator(public_key=source)
        token = jwt.encode({"sub": "alice"}, private, algorithm=alg)
        assert auth.verify(token) == Principal("alice", False)
    # An HS256 token "signed" with the public key text (the key-confusion attack) is refused.
    forged = jwt.encode({"sub": "root", "roles": ["admin"]}, SECRET, algorithm="HS256")
    with pytest.raises(AuthError):
        auth.verify(forged)
    with pytest.raises(AuthError):
        auth.verify(unsigned({"sub": "root"}))
    other, _ = pem_pair(kind)
    with pytest.raises(AuthError, match="bad token signature"):
        auth.verify(jwt.encode({"sub": "alice"}, other, algorithm=alg))


def test_secret_and_key_together_are_refused() -> None:
    with pytest.raises(ValueError):
        Authenticator(secret="a", public_key="b")


def test_token_from_header_or_query() -> None:
    assert token_from_request("/api/ws?token=abc", {}) == "abc"
    assert token_from_request("/api/ws", {"Authorization": "Bearer xyz"}) == "xyz"
    assert token_from_request("/api/ws?token=abc", {"authorization": "bearer xyz"}) == "xyz"
    assert token_from_request("/api/ws", {"Authorization": "Basic Zm9v"}) is None
    assert token_from_request("/api/ws", {}) is None


@pytest.mark.parametrize("secret", ["", "  ", "\t\n"])
def test_an_empty_secret_is_a_config_error_not_auth_off(secret: str) -> None:
    with pytest.raises(ConfigError, match="the JWT secret is empty"):
        Authenticator(secret=secret)


def test_unreadable_or_invalid_public_keys_are_config_errors(tmp_path: Path) -> None:
    private, public = pem_pair("rsa")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for source, message in (
        ("", "file name is empty"),
        (str(tmp_path / "missing.pem"), "cannot read the JWT public key file"),
        (str(tmp_path), "cannot read the JWT public key file"),  # a directory
        ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not a PEM public key"),
        (private_pem, "not a PEM public key"),  # the private half given by mistake
        (p384, r"must be RSA \(RS256\) or EC P-256 \(ES256\)"),
    ):
        with pytest.raises(ConfigError, match=message):
            Authenticator(public_key=source)
    with pytest.raises(ConfigError) as info:
        Authenticator(public_key=private_pem)
    assert "PRIVATE" not in str(info.value)  # a key never appears in a message
    assert Authenticator(public_key=public).enabled


def test_aud_is_accepted_when_no_audience_is_configured() -> None:
    auth = Authenticator(secret=SECRET)
    assert auth.verify(hs({"sub": "alice", "aud": "zmqmon"})) == Principal("alice", False)
    assert auth.verify(hs({"sub": "alice", "aud": ["a", "b"], "iss": "anyone"})).user == "alice"


def test_a_configured_audience_and_issuer_are_required_and_checked() -> None:
    auth = Authenticator(secret=SECRET, audience="zmqmon", issuer="https://idp.example")
    good = {"sub": "alice", "aud": "zmqmon", "iss": "https://idp.example"}
    assert auth.verify(hs(good)).user == "alice"
    assert auth.verify(hs({**good, "aud": ["other", "zmqmon"]})).user == "alice"
    for claims, message in (
        ({**good, "aud": "other"}, "token audience not accepted"),
        ({**good, "iss": "https://evil.example"}, "token issuer not accepted"),
        ({"sub": "alice", "iss": "https://idp.example"}, "invalid token"),  # aud missing
        ({"sub": "alice", "aud": "zmqmon"}, "invalid token"),  # iss missing
    ):
        with pytest.raises(AuthError, match=message):
            auth.verify(hs(claims))


def test_an_empty_or_keyless_audience_is_a_config_error() -> None:
    assert Authenticator(secret=SECRET, audience=None).verify(hs({"sub": "a", "aud": "x"}))
    with pytest.raises(ConfigError, match="audience is empty"):
        Authenticator(secret=SECRET, audience=" ")
    with pytest.raises(ConfigError, match="needs a JWT secret or public key"):
        Authenticator(audience="zmqmon")


def test_an_exp_too_large_for_a_float_is_far_future_not_a_crash() -> None:
    principal = Authenticator(secret=SECRET).verify(hs({"sub": "alice", "exp": 10**400}))
    assert principal.expires is not None and principal.expires > time.time() + 10**9


# -- property-based: whatever a client presents as a token ------------------------------------

_CLAIMS = objects(
    {
        "sub": st.text(max_size=6),
        "exp": edgy_ints,
        "nbf": edgy_ints,
        "iat": edgy_ints,
        "aud": st.one_of(st.text(max_size=6), st.lists(st.text(max_size=6), max_size=2)),
        "iss": st.text(max_size=6),
        "roles": st.lists(st.sampled_from(["admin", "user"]), max_size=2),
    }
)


def _garbled(token: str, cut: int, flip: int) -> str:
    chars = list(token[: cut % (len(token) + 1)])
    if chars:
        chars[flip % len(chars)] = "A" if chars[flip % len(chars)] != "A" else "B"
    return "".join(chars)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted(claims: Any, secret: str = SECRET, alg: str = "HS256") -> str:
    """A token built by hand, as a hostile client would: any claims (PyJWT's encoder refuses
    some, e.g. a non-string ``iss``), signed with ``secret`` (HS256) or not at all (``none``)."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    mac = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{head}.{body}." + ("" if alg == "none" else _b64(mac))


#: claims a configured bridge accepts: a sub, the audience and issuer, an exp far or very far off
_GOOD_CLAIMS = st.fixed_dictionaries(
    {"sub": st.text(min_size=1, max_size=6), "aud": st.just("zmqmon"), "iss": st.just("idp")},
    optional={
        "exp": st.sampled_from([4_102_444_800, 2**63 - 1, 2**63, 10**400]),
        "roles": st.one_of(st.lists(st.sampled_from(["admin", "user"])), json_values),
    },
)
_SIGNED = st.one_of(_GOOD_CLAIMS, _CLAIMS, json_values).map(crafted)
_TOKENS = st.one_of(
    _SIGNED,  # signed with the right secret: only the claims can be wrong
    _SIGNED,
    st.builds(_garbled, _SIGNED, st.integers(min_value=0), st.integers(min_value=0)),
    _CLAIMS.map(lambda claims: crafted(claims, secret="another-secret-another-secret-1234")),
    _CLAIMS.map(lambda claims: crafted(claims, alg="none")),
    st.text(max_size=40),
    st.text(alphabet="abcXYZ012-_.=", max_size=60),
)


@given(token=_TOKENS, checked=st.booleans())
def test_any_token_is_a_principal_or_an_auth_error(token: str, checked: bool) -> None:
    auth = (
        Authenticator(secret=SECRET, audience="zmqmon", issuer="idp")
        if checked
        else Authenticator(secret=SECRET)
    )
    try:
        with no_logged_errors():
            principal = auth.verify(token)
    except AuthError as exc:
        assert str(exc) and (len(token) < 8 or token not in str(exc))  # never echoes it
        return
    assert isinstance(principal.user, str) and principal.user
    assert principal.expires is None or principal.expires > 0
