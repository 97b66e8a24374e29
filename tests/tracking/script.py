"""A user's script watched with ``zmqmon.track`` (run as its own process by the tests).

``python -m tests.tracking.script STATE work``: a run with agents in several threads, then a run
that fails; prints the two execution ids as JSON. ``… STATE long SECONDS``: one agent looping for
about SECONDS, printing ``started <id>`` first and ``done <dropped>`` last.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import zmqmon


def work(state: str) -> None:
    with zmqmon.track("Nightly ETL", state=state, agents={"load": "Loader"}) as run:
        with run.agent("load", name="Loader") as load:
            for _ in load.iter(range(2000)):
                pass

        def shard(i: int) -> None:
            with run.agent(f"shard-{i}") as agent:
                for n in agent.iter(range(300)):
                    if n % 50 == 0:
                        time.sleep(0.001)

        threads = [threading.Thread(target=shard, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    failing = zmqmon.track("Broken", state=state)
    try:
        with failing, failing.agent("parse") as parse:
            parse.progress(30, "line 3")
            raise ValueError("bad row 3")
    except ValueError:
        pass
    print(json.dumps({"run": run.execution_id, "failed": failing.execution_id}), flush=True)


def long(state: str, seconds: float) -> None:
    with zmqmon.track("Long", state=state) as run:
        print("started", run.execution_id, flush=True)
        with run.agent("loop") as loop:
            steps = int(seconds / 0.02)
            for _ in loop.iter(range(steps)):
                time.sleep(0.02)
    print("done", run.dropped, flush=True)


if __name__ == "__main__":
    if sys.argv[2] == "work":
        work(sys.argv[1])
    else:
        long(sys.argv[1], float(sys.argv[3]))
