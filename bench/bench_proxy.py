"""``zmqmon proxy`` throughput beside direct PUB → SUB, in the same run.

Run: ``./dev bench proxy`` (or ``python -m bench proxy [--quick]``).

Three processes each way: a publisher (an XPUB, so it starts once the subscription has reached it
— through the proxy, that also proves subscriptions travel upstream), a subscriber counting
``[topic, 300 B]`` messages from the first to the last, and in between, or not, a ``zmqmon proxy``
process. High-water marks are 0 (nothing dropped), so the rate is what reaches the subscriber.
Target: through the proxy ≥ 80 % of direct.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from bench import Row

_SUB = r"""
import sys, time, zmq
endpoint, n = sys.argv[1], int(sys.argv[2])
sub = zmq.Context().socket(zmq.SUB)
sub.setsockopt(zmq.RCVHWM, 0)
sub.connect(endpoint)
sub.subscribe(b"exec/")
print("ready", flush=True)
sub.recv_multipart()
t0 = time.perf_counter()
for _ in range(n - 1):
    sub.recv_multipart()
print(n / (time.perf_counter() - t0), flush=True)
"""

_PUB = r"""
import sys, zmq
endpoint, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pub = zmq.Context().socket(zmq.XPUB)
pub.setsockopt(zmq.SNDHWM, 0)
pub.bind(endpoint) if mode == "bind" else pub.connect(endpoint)
pub.recv()  # the subscription has arrived
topic, payload = b"exec/0123456789abcdef/agent:progress", b"x" * 300
for _ in range(n):
    pub.send_multipart([topic, payload])
import time
time.sleep(30)  # keep the socket open until the subscriber is done (then it is killed)
"""


def _free() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _py(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)


def _rate(n: int, through_proxy: bool) -> float:
    procs: list[subprocess.Popen[str]] = []
    try:
        if through_proxy:
            free = "tcp://127.0.0.1:0"
            proxy = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zmqmon.cli",
                    "proxy",
                    "--frontend",
                    free,
                    "--backend",
                    free,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proxy)
            assert proxy.stdout is not None
            ends: dict[str, Any] = json.loads(proxy.stdout.readline())
            pub_end, pub_mode, sub_end = ends["frontend"], "connect", ends["backend"]
        else:
            pub_end = sub_end = _free()
            pub_mode = "bind"
        sub = _py(_SUB, sub_end, str(n))
        procs.append(sub)
        assert sub.stdout is not None
        assert sub.stdout.readline().strip() == "ready"
        procs.append(_py(_PUB, pub_end, str(n), pub_mode))
        return float(sub.stdout.readline())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run(quick: bool = False) -> list[Row]:
    n = 50_000 if quick else 300_000
    direct = max(_rate(n, False) for _ in range(3))
    proxied = max(_rate(n, True) for _ in range(3))
    return [
        Row(
            "proxy",
            f"PUB -> zmqmon proxy -> SUB, {n:,} x 300 B",
            proxied,
            direct,
            "msg/s",
            target=">= 0.8x direct PUB -> SUB",
            higher_is_better=True,
            target_ratio=0.8,
            note="best of 3 each; baseline: the same publisher and subscriber connected directly",
        )
    ]
