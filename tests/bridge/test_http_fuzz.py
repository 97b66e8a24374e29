"""Fuzzing the bridge's HTTP side: its pure parsers (query, body, Origin/Host) with hypothesis,
and the real front with hypothesis-made byte streams over real sockets.

Whatever comes in, the answer is a precise 4xx (or the request's own success) — never a 5xx,
an exception or a hung or dead bridge.
"""

from __future__ import annotations

import socket
import string
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from zmqmon_bridge.api import _int_param, _Refused, json_body
from zmqmon_bridge.front import HttpRequest
from zmqmon_bridge.guard import BrowserGuard, parse_list
from zmqmon_bridge.server import Bridge

from tests.bridge.http_client import parse_replies, request_bytes

_ANY_TEXT = st.text(max_size=60)


@given(raw=_ANY_TEXT)
@example("²")  # str.isdigit() says yes; int() says no
@example("٣")  # another script's digit: not what an HTTP client means by a number
def test_a_number_in_the_query_is_in_range_or_a_precise_400(raw: str) -> None:
    req = HttpRequest("GET", "/api/executions?limit=" + quote(raw, safe=""), {})
    try:
        value = _int_param(req, "limit", 100, 1, 1000)
    except _Refused as exc:
        assert exc.reply.status == 400
        assert b"limit must be a whole number from 1 to 1000" in exc.reply.body
    else:
        assert 1 <= value <= 1000
        assert raw == "" or (raw.isascii() and value == int(raw))


@given(body=st.binary(max_size=200) | _ANY_TEXT.map(str.encode), media=_ANY_TEXT)
def test_any_body_is_json_or_a_precise_400_or_415(body: bytes, media: str) -> None:
    req = HttpRequest("POST", "/api/workflows", {"content-type": media}, body)
    try:
        json_body(req, required=True)
    except _Refused as exc:
        assert exc.reply.status in (400, 415)
        code = b"unsupported_media_type" if exc.reply.status == 415 else b"bad_request"
        assert code in exc.reply.body
    else:
        assert media.split(";")[0].strip().lower() == "application/json"


_NAME = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){1,3}", fullmatch=True)


@given(host=st.none() | _ANY_TEXT, origin=st.none() | _ANY_TEXT)
def test_any_host_and_origin_headers_are_judged_without_raising(
    host: str | None, origin: str | None
) -> None:
    for guard in (BrowserGuard(), BrowserGuard("0.0.0.0", ("a.example",), ("https://b.example",))):
        reason = guard.refusal(host, origin)
        assert reason is None or ("does not name this bridge" in reason or "Origin" in reason)


@given(name=_NAME, port=st.integers(1, 65535))
def test_a_dns_name_is_refused_unless_allowed_and_its_own_page_is_accepted(
    name: str, port: int
) -> None:
    host = f"{name}:{port}"
    assert BrowserGuard().refusal(host, None) is not None  # DNS rebinding
    allowed = BrowserGuard(allow_hosts=parse_list(name.upper()))
    assert allowed.refusal(host, None) is None
    assert allowed.refusal(host, f"http://{host}") is None  # the bridge's own page
    assert allowed.refusal(host, f"http://{name}:{port % 65535 + 1}") is not None  # another


# -- the real front -------------------------------------------------------------------------

_TOKEN = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=12)
_TARGETS = st.sampled_from(
    ["/", "/api/ws/health", "/api/executions", "/api/workflows", "/api/ws", "/metrics", "*"]
)
_HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@st.composite
def _requests(draw: Any) -> bytes:
    """Byte streams near HTTP: requests with odd methods, targets, headers and bodies, cut or
    corrupted anywhere — and sometimes plain noise."""
    if draw(st.integers(0, 9)) == 0:
        return bytes(draw(st.binary(min_size=1, max_size=300)))
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS"]) | _TOKEN)
    target = draw(_TARGETS) + draw(st.sampled_from(["", "?limit=", "?limit=%C2%B2", "?before=%ff"]))
    target += draw(st.text(string.printable.strip(), max_size=8))
    headers = {draw(_TOKEN): draw(_HEADER_VALUE) for _ in range(draw(st.integers(0, 3)))}
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain"]))
    if draw(st.booleans()):
        headers["Origin"] = draw(
            st.sampled_from(["null", "http://evil.example", "http://127.0.0.1"])
        )
    body = draw(st.none() | st.binary(max_size=80))
    data = request_bytes(
        method, target, host=draw(st.sampled_from(["127.0.0.1", "evil.example", None])),
        headers=headers, body=body,
    )  # fmt: skip
    cut = draw(st.none() | st.integers(0, len(data)))
    if cut is not None:
        data = data[:cut]
    if draw(st.booleans()) and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, close our side, read what the bridge answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.timeout(180)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=_requests())
@example(request_bytes("GET", "/api/executions?limit=%C2%B2"))
@example(request_bytes("POST", "/api/workflows", headers={"Content-Type": "application/json"},
                       body=b"{"))  # fmt: skip
@example(b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n")
@example(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")  # a TLS hello, to plain HTTP
def test_the_front_answers_any_bytes_with_4xx_or_success_never_5xx(
    bridge: Bridge, data: bytes
) -> None:
    answer = _exchange(bridge.port, data)
    statuses = []
    rest = answer
    while rest.startswith(b"HTTP/1.1 "):
        statuses.append(int(rest[9:12]))
        head, _, rest = rest.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
             if line.lower().startswith(b"content-length:")),
            0,
        )  # fmt: skip
        if statuses[-1] in (101,):
            rest = b""  # the WebSocket took over: its frames follow
        elif not data.startswith(b"HEAD ") or statuses[-1] >= 400:
            rest = rest[length:]
    assert rest == b"" or statuses == [], answer[:300]  # only whole responses, or none
    assert all(s < 500 for s in statuses), answer[:300]
    # … and the bridge still serves everyone else
    (health,) = parse_replies(
        _exchange(bridge.port, request_bytes("GET", "/api/ws/health", close=True))
    )
    assert health.status == 200
