"""``zmqmon proxy``: counters, subscriptions passed upstream, peers coming and going.

Real sockets on loopback with free ports; waits poll (the proxy's counters, a subscription seen
by an XPUB publisher); nothing asserts on time.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import zmq

from tests.conftest import wait_for
from zmqmon.shells.proxy import Proxy

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", metrics_port=0) as p:
        yield p


def _socket(ctx: zmq.Context[Any], kind: int, endpoint: str) -> Any:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _recv(sock: Any, timeout_ms: int = 5000) -> list[bytes]:
    assert sock.poll(timeout_ms), "nothing arrived"
    return list(sock.recv_multipart())


def test_subscribe_and_unsubscribe_reach_the_publishers(
    proxy: Proxy, ctx: zmq.Context[Any]
) -> None:
    publisher = _socket(ctx, zmq.XPUB, proxy.endpoints["frontend"])  # sees subscriptions
    subscriber = _socket(ctx, zmq.SUB, proxy.endpoints["backend"])
    subscriber.subscribe(b"exec/abc/")
    assert _recv(publisher) == [b"\x01exec/abc/"]
    publisher.send_multipart([b"exec/abc/agent:started", b"{}"])
    publisher.send_multipart([b"exec/other/agent:started", b"{}"])  # filtered upstream
    publisher.send_multipart([b"exec/abc/agent:completed", b"{}"])
    assert _recv(subscriber)[0] == b"exec/abc/agent:started"
    assert _recv(subscriber)[0] == b"exec/abc/agent:completed"
    subscriber.unsubscribe(b"exec/abc/")
    assert _recv(publisher) == [b"\x00exec/abc/"]
    stats = wait_for(lambda: (s := proxy.stats()).subscription_messages == 2 and s)
    assert stats.frames_in == 4 and stats.frames_out == 4  # two events in, two out


def test_counters_over_http_metrics_and_health(proxy: Proxy, ctx: zmq.Context[Any]) -> None:
    publisher = _socket(ctx, zmq.XPUB, proxy.endpoints["frontend"])
    subscriber = _socket(ctx, zmq.SUB, proxy.endpoints["backend"])
    subscriber.subscribe(b"exec/")
    _recv(publisher)  # the subscription is live end to end
    for i in range(100):
        publisher.send_multipart([b"exec/x/agent:progress", b"%d" % i])
    for _ in range(100):
        _recv(subscriber)
    url = proxy.endpoints["metrics"]
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "/metrics", timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics["zmqmon_proxy_frames_in_total"] == 200
    assert metrics["zmqmon_proxy_frames_out_total"] == 200
    assert metrics["zmqmon_proxy_subscription_messages_total"] == 1
    assert metrics["zmqmon_proxy_publishers"] == 1 and metrics["zmqmon_proxy_subscribers"] == 1
    assert "# TYPE zmqmon_proxy_frames_in_total counter" in text
    with urllib.request.urlopen(url + "/health", timeout=5) as reply:
        health = json.loads(reply.read())
    assert health["status"] == "ok" and health["messagesIn"] == health["messagesOut"] == 100
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url + "/nothing", timeout=5)


def test_publishers_and_subscribers_come_and_go_without_a_restart(
    proxy: Proxy, ctx: zmq.Context[Any]
) -> None:
    front, back = proxy.endpoints["frontend"], proxy.endpoints["backend"]
    pubs = [_socket(ctx, zmq.XPUB, front) for _ in range(2)]
    subs = [_socket(ctx, zmq.SUB, back) for _ in range(2)]
    for sub in subs:
        sub.subscribe(b"exec/")
    wait_for(lambda: (s := proxy.stats()).publishers == 2 and s.subscribers == 2)
    pubs.pop().close(0)
    subs.pop().close(0)
    stats = wait_for(lambda: (s := proxy.stats()).publishers == 1 and s.subscribers == 1 and s)
    assert stats.publisher_disconnects == 1 and stats.subscriber_disconnects == 1
    # a new publisher arrives; the remaining subscriber's subscription reaches it, and its events
    # reach the subscriber: the proxy forwards on, unrestarted
    late = _socket(ctx, zmq.XPUB, front)
    assert _recv(late) == [b"\x01exec/"]
    late.send_multipart([b"exec/late/agent:started", b"{}"])
    assert _recv(subs[0])[0] == b"exec/late/agent:started"
    stats = wait_for(lambda: (s := proxy.stats()).publishers == 2 and s)
    assert stats.publisher_connects == 3 and stats.subscriber_connects == 2


def test_stats_after_close_are_the_last_known(ctx: zmq.Context[Any]) -> None:
    p = Proxy("tcp://127.0.0.1:0", "tcp://127.0.0.1:0").start()
    assert "metrics" not in p.endpoints
    first = p.stats()
    assert first.frames_in == 0 and first.uptime_seconds >= 0
    p.close()
    assert p.stats() == first
    p.close()  # idempotent


def test_proxy_command_serves_metrics_on_a_free_port() -> None:
    free = "tcp://127.0.0.1:0"
    args = ["proxy", "--frontend", free, "--backend", free, "--metrics-port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqmon.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        endpoints = json.loads(proc.stdout.readline())
        assert set(endpoints) == {"frontend", "backend", "metrics"}
        with urllib.request.urlopen(endpoints["metrics"] + "/health", timeout=5) as reply:
            assert json.loads(reply.read())["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
