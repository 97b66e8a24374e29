"""CURVE on the ZeroMQ side: with keys, the stream and the state service are encrypted and
admit only authorized clients — a keyless SUB and a wrong-key DEALER get nothing; the right keys
work end to end, through the bridge too. Without keys, exposing an endpoint warns."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.bridge.conftest import open_client, terminal, workflow
from tests.conftest import wait_for
from zmqmon.core.delivery import Snapshot
from zmqmon.errors import ConfigError, ServiceUnavailableError
from zmqmon.services.server import Server
from zmqmon.shells.client import StateClient
from zmqmon.shells.curve import CurveClient, CurveServer, make_keys
from zmqmon.shells.subscriber import Subscriber

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).parents[2]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    make_keys(directory, ("alice", "mallory"))
    (directory / "authorized" / "mallory.key").unlink()  # mallory has keys; they are not allowed
    return directory


@pytest.fixture
def secure(keys: Path, tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:0",
        tmp_path / "s.sqlite3",
        curve=CurveServer.load(keys),
    ).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_keys_are_made_once_and_loading_says_what_is_missing(tmp_path: Path) -> None:
    written = make_keys(tmp_path / "k")
    assert written["server secret"].stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k" / "authorized" / "client.key").exists()
    with pytest.raises(ConfigError, match="exists already"):
        make_keys(tmp_path / "k")
    with pytest.raises(ConfigError, match="client 'nobody'"):
        CurveClient.load(tmp_path / "k", "nobody")
    with pytest.raises(ConfigError, match="no the service's key pair"):
        CurveServer.load(tmp_path / "elsewhere")


def test_the_right_keys_work_and_the_wrong_ones_get_nothing(secure: Server, keys: Path) -> None:
    alice = CurveClient.load(keys, "alice")
    handle = secure.submit(workflow(seconds=0.3, steps=3))
    with StateClient(secure.endpoints["state"], curve=alice) as client:
        assert client.ping()
    with Subscriber(secure.endpoints["events"], secure.endpoints["state"], curve=alice) as sub:
        sub.subscribe_execution(handle.id, after_seq=0)
        seqs: list[int] = []
        while True:
            item = sub.recv(10)
            assert item is not None and not isinstance(item, Snapshot)
            seqs.append(item.seq)
            if item.is_terminal:
                break
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 3
    # mallory's keys are not authorized: the service never answers her
    mallory = CurveClient.load(keys, "mallory")
    with (
        StateClient(secure.endpoints["state"], timeout=1.0, curve=mallory) as client,
        pytest.raises(ServiceUnavailableError),
    ):
        client.ping()
    # without keys at all: a plain SUB receives nothing, not even heartbeats
    ctx: zmq.Context[Any] = zmq.Context()
    plain = ctx.socket(zmq.SUB)
    plain.setsockopt(zmq.SUBSCRIBE, b"")
    plain.connect(secure.endpoints["events"])
    secure.submit(workflow(seconds=0.2, steps=2)).wait(10)
    assert plain.poll(1500) == 0
    plain.close(0)
    ctx.term()


async def test_the_right_keys_work_end_to_end_through_the_bridge(
    secure: Server, keys: Path
) -> None:
    from zmqmon_bridge.server import Bridge

    bridge = Bridge(
        secure.endpoints["events"],
        secure.endpoints["state"],
        "127.0.0.1",
        0,
        curve=CurveClient.load(keys, "alice"),
    ).start()
    try:
        handle = secure.submit(workflow(seconds=0.4, steps=4))
        c = await open_client(bridge.ws_url)
        await c.send({"type": "subscribe", "executionId": handle.id, "afterSeq": 0})
        await c.expect("subscribed")
        await c.until(terminal, timeout=30)
        assert [e["seq"] for e in c.events] == list(range(1, len(c.events) + 1))
        await c.close()
    finally:
        await asyncio.to_thread(bridge.stop)


def test_the_commands_take_keys_and_exposing_without_them_warns(keys: Path) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "zmqmon.cli", "keys", str(keys.parent / "more"), "--client", "ci"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert made.returncode == 0 and "--curve-client ci" in made.stdout
    secure = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqmon.cli",
            "serve",
            "--events",
            "tcp://127.0.0.1:0",
            "--state",
            "tcp://127.0.0.1:0",
            "--db",
            str(keys.parent / "c.sqlite3"),
            "--curve",
            str(keys),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    open_ = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zmqmon.cli",
            "serve",
            "--events",
            "tcp://0.0.0.0:0",
            "--state",
            "tcp://127.0.0.1:0",
            "--db",
            str(keys.parent / "o.sqlite3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert secure.stdout is not None and open_.stdout is not None
        endpoints = json.loads(secure.stdout.readline())
        with StateClient(endpoints["state"], curve=CurveClient.load(keys, "alice")) as client:
            assert client.ping()
        json.loads(open_.stdout.readline())
    finally:
        for proc in (secure, open_):
            proc.terminate()
    _, err = open_.communicate(timeout=20)
    _, secure_err = secure.communicate(timeout=20)
    assert "without CURVE" in err and "0.0.0.0" in err
    assert "without CURVE" not in secure_err
    wait_for(lambda: secure.returncode is not None and open_.returncode is not None)
