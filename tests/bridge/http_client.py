"""A plain HTTP/1.1 client over a raw socket, for tests that must control every byte
(pipelining, odd methods, forged Host and Origin headers)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    """One parsed response."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str,
    target: str,
    *,
    host: str | None = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    close: bool = False,
) -> bytes:
    """One request, as bytes."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def parse_replies(data: bytes, heads: list[bool] | None = None) -> list[Reply]:
    """Every response in ``data`` (Content-Length framed; ``heads[i]``: the i-th answered a
    HEAD, so it has no body)."""
    replies = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response: {data[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        is_head = heads is not None and len(replies) < len(heads) and heads[len(replies)]
        length = 0 if is_head or status in (100, 101) else int(headers.get("content-length", 0))
        if status == 100:
            replies.append(Reply(status, headers, b""))
            data = rest
            continue
        replies.append(Reply(status, headers, rest[:length]))
        data = rest[length:]
    return replies


def exchange(port: int, raw: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``raw`` in one write, half-close, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def call(
    port: int,
    method: str,
    target: str,
    *,
    host: str | None = "127.0.0.1",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    json_body: Any = None,
) -> Reply:
    """One request on its own connection."""
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    raw = request_bytes(method, target, host=host, headers=headers, body=body, close=True)
    replies = parse_replies(exchange(port, raw), [method == "HEAD"])
    assert len(replies) == 1, replies
    return replies[0]
