"""A service that floods, for the overload tests: ``zmqmon serve`` plus a burst producer.

``python -m tests.overload.burst_service DB`` runs :func:`zmqmon.services.server.serve` (so
SIGINT/SIGTERM stop it exactly as they stop ``zmqmon serve``) and reads commands on stdin:

* ``burst SECONDS EXECUTIONS [AGENTS]`` — start EXECUTIONS executions, publish ``agent:progress``
  round-robin across them as fast as it can for SECONDS, then complete each one; answers one JSON
  line ``{"executions": {id: lastSeq}, "events": N, "rate": events/s}``;
* ``flood SECONDS EXECUTIONS`` — the same, but answers at once with ``{"started": [ids]}``, then
  floods in the background and answers a second line, as ``burst`` does, once it has completed
  them (unless a signal stops the service first: then nothing is completed).

On exit it prints ``{"emitted": {id: lastSeq}}``: what was published, to compare with the store.

``BURST_SNDHWM`` (env) sets the PUB socket's high-water mark per subscriber (default: the
service's own): a small one makes the publisher drop early, so that a short burst already outruns
every consumer.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from typing import Any

from zmqmon.services.server import Server, serve

_emitted: dict[str, int] = {}
_stop = threading.Event()
_floods: list[threading.Thread] = []


def _start(server: Server, n: int, agents: int) -> list[str]:
    pub = server.publisher
    ids = [f"burst-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    for eid in ids:
        infos = [
            {"agentId": f"a{k}", "agentName": f"Agent{k}", "dependsOn": []} for k in range(agents)
        ]
        pub.emit_execution_started(
            eid, "burst-wf", workflow_name="Burst", agent_count=agents, agents=infos
        )
        for k in range(agents):
            pub.emit_agent_started(eid, "burst-wf", f"a{k}", f"Agent{k}")
    return ids


def _flood(
    server: Server, ids: list[str], agents: int, seconds: float, complete: bool
) -> dict[str, Any]:
    pub = server.publisher
    emit = pub.emit_agent_progress
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while not _stop.is_set():
        for eid in ids:
            k = n % agents
            emit(eid, "burst-wf", f"a{k}", f"Agent{k}", n % 100, "step")
            n += 1
        if n % 64 < len(ids) and time.monotonic() >= end:
            break
    rate = n / max(1e-9, time.monotonic() - t0)
    if complete and not _stop.is_set():
        for eid in ids:
            for k in range(agents):
                pub.emit_agent_completed(
                    eid, "burst-wf", f"a{k}", f"Agent{k}", result=None, duration_ms=1
                )
            pub.emit_execution_completed(eid, "burst-wf", duration_ms=1, results={})
    for eid in ids:
        _emitted[eid] = pub.last_seq(eid)
    return {"executions": {eid: pub.last_seq(eid) for eid in ids}, "events": n, "rate": rate}


def _commands(server: Server) -> None:
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        seconds, n = float(cmd[1]), int(cmd[2])
        agents = int(cmd[3]) if len(cmd) > 3 else 1
        ids = _start(server, n, agents)
        if cmd[0] == "flood":
            print(json.dumps({"started": ids}), flush=True)

            def background(ids: list[str] = ids, agents: int = agents, s: float = seconds) -> None:
                report = _flood(server, ids, agents, s, True)
                if not _stop.is_set():
                    print(json.dumps(report), flush=True)

            flood = threading.Thread(target=background, daemon=True)
            _floods.append(flood)
            flood.start()
        else:
            print(json.dumps(_flood(server, ids, agents, seconds, True)), flush=True)


def main() -> int:
    def on_start(server: Server) -> None:
        stop = server.stop

        def stop_floods_first() -> None:
            # A producer stops before the service does (as the engine's agents are cancelled
            # first): everything it published is then stored by the service's own stop.
            _stop.set()
            for flood in _floods:
                flood.join()
            stop()

        server.stop = stop_floods_first  # type: ignore[method-assign]
        threading.Thread(target=_commands, args=(server,), daemon=True).start()

    try:
        hwm = int(os.environ.get("BURST_SNDHWM") or 100_000)
        return serve(
            "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", sys.argv[1], on_start=on_start, sndhwm=hwm
        )
    finally:
        _stop.set()
        print(json.dumps({"emitted": _emitted}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
