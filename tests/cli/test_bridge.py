"""``zmqmon bridge`` as a process: an unusable auth setting is an error at start (non-zero exit,
a message on stderr, nothing served), never "auth off"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge.test_auth import pem_pair


def bridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ZMQMON_JWT_")}
    return subprocess.run(
        [sys.executable, "-m", "zmqmon.cli", "bridge", "--port", "0", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=30,
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--jwt-secret", ""], None, "the JWT secret is empty"),
        (["--jwt-secret", "   "], None, "the JWT secret is empty"),
        ([], {"ZMQMON_JWT_SECRET": ""}, "the JWT secret is empty"),
        (["--jwt-public-key", ""], None, "public key file name is empty"),
        ([], {"ZMQMON_JWT_PUBLIC_KEY": ""}, "public key file name is empty"),
        (["--jwt-public-key", "/nonexistent/key.pem"], None, "cannot read the JWT public key"),
        (["--jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret", "--jwt-audience", ""], None,
         "the JWT audience is empty"),
        (["--jwt-issuer", "https://issuer.example"], None, "needs a JWT secret or public key"),
    ],
)  # fmt: skip
def test_unusable_auth_settings_stop_the_bridge_at_start(
    args: list[str], env: dict[str, str] | None, message: str
) -> None:
    proc = bridge(*args, env=env)
    assert proc.returncode != 0
    assert proc.stdout == ""  # no endpoints line: nothing was served
    assert "zmqmon bridge:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(60)
def test_a_key_file_that_is_not_a_public_key_stops_the_bridge(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n")
    private, _ = pem_pair("ec")
    from cryptography.hazmat.primitives import serialization

    private_pem = tmp_path / "private.pem"  # the private half given by mistake
    private_pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in (garbage, private_pem, tmp_path):  # a directory is unreadable as a key
        proc = bridge("--jwt-public-key", str(path))
        assert proc.returncode != 0 and proc.stdout == "", path
        assert "zmqmon bridge:" in proc.stderr and "JWT public key" in proc.stderr
