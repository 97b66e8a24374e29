"""Test hosts on one machine: Linux network namespaces on one virtual switch (needs root).

:class:`Network` makes hosts (``ip netns add``), each with a veth pair whose outer end joins a
bridge device in the root namespace, addresses ``10.<net>.0.<n>/24`` — the test process reaches
them all through the bridge's own address ``10.<net>.0.254``. :meth:`Network.cut` and
:meth:`Network.restore` take a host's link down and up (its processes run on, unreachable, as when
a cable is pulled). Everything is deleted at :meth:`Network.close`, also after a failure.
Traffic goes only to these hosts and to loopback.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


class Network:
    """Namespaced hosts behind one bridge. ``hosts[name]`` is its address."""

    def __init__(self, net: int = 77) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("network namespaces need root (CI runs as root)")
        self.tag = uuid.uuid4().hex[:4]  # several runs of the suite must not collide
        self.net = net
        self.bridge = f"zb{self.tag}"
        self.hosts: dict[str, str] = {}
        self._links: dict[str, str] = {}
        self._procs: list[subprocess.Popen[str]] = []
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        _ip("addr", "add", f"10.{net}.0.254/24", "dev", self.bridge)

    @property
    def gateway(self) -> str:
        """The test process's own address on the network."""
        return f"10.{self.net}.0.254"

    def _ns(self, name: str) -> str:
        return f"z{self.tag}-{name}"

    def add_host(self, name: str) -> str:
        """A new host; its address."""
        ns = self._ns(name)
        n = len(self.hosts) + 1
        outer, inner = f"zo{self.tag}{n}", f"zi{self.tag}{n}"
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        address = f"10.{self.net}.0.{n}"
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", inner)
        _ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
        self.hosts[name] = address
        self._links[name] = outer
        return address

    def run(
        self, host: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start a Python module's process on a host (``argv`` after ``python -m``)."""
        environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self._ns(host), sys.executable, "-m", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=environment,
        )
        self._procs.append(proc)
        return proc

    def cut(self, host: str) -> None:
        """Pull the host's cable: nothing reaches it, nothing leaves it."""
        _ip("link", "set", self._links[host], "down")

    def restore(self, host: str) -> None:
        """Plug it back in."""
        _ip("link", "set", self._links[host], "up")

    def close(self) -> None:
        """Stop the processes, delete the hosts and the bridge."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for name in self.hosts:
            subprocess.run(["ip", "netns", "del", self._ns(name)], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
