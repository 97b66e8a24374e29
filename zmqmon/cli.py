"""The ``zmqmon`` command line: argument parsing only; each command calls one importable function.

Every URL flag also reads its environment variable (``ZMQMON_EVENTS``, ``ZMQMON_STATE``,
``ZMQMON_DB``, ``ZMQMON_HOST``, ``ZMQMON_PORT``, ``ZMQMON_JWT_SECRET``, ``ZMQMON_JWT_PUBLIC_KEY``,
``ZMQMON_JWT_AUDIENCE``, ``ZMQMON_JWT_ISSUER``),
and so do ``serve --agents`` (``ZMQMON_AGENTS``) and the service's limits (``--max-request-bytes``
``ZMQMON_MAX_REQUEST_BYTES``, ``--max-agents`` ``ZMQMON_MAX_AGENTS``, ``--max-events-in-memory``
``ZMQMON_MAX_EVENTS_IN_MEMORY``, ``--max-workers`` ``ZMQMON_MAX_WORKERS``), ``serve --dask``
(``ZMQMON_DASK``, ``--dask-channel`` ``ZMQMON_DASK_CHANNEL``, ``--dask-advertise``
``ZMQMON_DASK_ADVERTISE``) and ``proxy --metrics-port`` (``ZMQMON_METRICS_PORT``,
``--metrics-host`` ``ZMQMON_METRICS_HOST``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from zmqmon.config import ENV, from_env

__all__ = ["build_parser", "main"]


_LIMITS = ("max_request_bytes", "max_agents", "max_events_in_memory", "max_workers")


def _env_help(name: str) -> str:
    return f"(env {ENV[name]}; default {from_env(name)})"


def _curve_client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--curve",
        metavar="DIR",
        help="CURVE keys for a service that requires them: DIR/server.key and DIR/NAME.key_secret "
        + _env_help("curve"),
    )
    parser.add_argument(
        "--curve-client", metavar="NAME", help="which client key pair " + _env_help("curve_client")
    )


def _bridge_state(args: argparse.Namespace) -> str:
    """The bridge's state service: given, or the default — unless only ``--events`` was given
    (a proxy's backend, many executors behind it): then none, each execution's heartbeats name
    its own (contract §6)."""
    if args.state or os.environ.get(ENV["state"]) or not args.events:
        return from_env("state", args.state) or ""
    return ""


def _curve(args: argparse.Namespace) -> tuple[str | None, str]:
    return from_env("curve", args.curve), from_env("curve_client", args.curve_client) or "client"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="zmqmon", description="Reactive monitor for workflow executions, over ZeroMQ."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="executor service: event stream, state service, store")
    serve.add_argument("--events", help="PUB endpoint to bind " + _env_help("events"))
    serve.add_argument("--state", help="ROUTER endpoint to bind " + _env_help("state"))
    serve.add_argument("--db", help="SQLite file " + _env_help("db"))
    serve.add_argument(
        "--agents",
        metavar="MODULES",
        help="comma-separated modules whose callables workflows may run as agents, submodules "
        "included; zmqmon.demo always; '*' = any importable callable, i.e. whoever reaches the "
        "state port can run code " + _env_help("agents"),
    )
    serve.add_argument(
        "--curve",
        metavar="DIR",
        help="CURVE keys (zmqmon keys DIR): encrypt the stream and the state service and admit "
        "only the clients in DIR/authorized " + _env_help("curve"),
    )
    serve.add_argument(
        "--advertise-state",
        metavar="URL",
        help="the state endpoint heartbeats name, where the bound one is not reachable from "
        "other hosts " + _env_help("advertise_state"),
    )
    cluster = serve.add_argument_group("agents on a Dask cluster (see docs/protocol.md)")
    cluster.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run every agent as a task on the Dask distributed cluster of this scheduler, e.g. "
        "tcp://10.0.0.5:8786 " + _env_help("dask"),
    )
    cluster.add_argument(
        "--dask-channel",
        metavar="URL",
        help="where to bind the channel workers send progress to and get cancels from "
        + _env_help("dask_channel"),
    )
    cluster.add_argument(
        "--dask-advertise",
        metavar="URL",
        help="the channel's address as workers reach it, when the bound one is not "
        + _env_help("dask_advertise"),
    )
    limits = serve.add_argument_group("limits (see docs/protocol.md, Limits)")
    limits.add_argument(
        "--max-request-bytes",
        metavar="N",
        help="largest state-service request; a bigger one is dropped unread "
        + _env_help("max_request_bytes"),
    )
    limits.add_argument(
        "--max-agents", metavar="N", help="agents per workflow " + _env_help("max_agents")
    )
    limits.add_argument(
        "--max-events-in-memory",
        metavar="N",
        help="events kept in memory per running execution; older ones are read from the store "
        + _env_help("max_events_in_memory"),
    )
    limits.add_argument(
        "--max-workers",
        metavar="N",
        help="sync agents running at once; stuck ones given up on do not count "
        + _env_help("max_workers"),
    )

    bridge = sub.add_parser("bridge", help="WebSocket bridge and dashboard")
    bridge.add_argument("--events", help="event stream to subscribe to " + _env_help("events"))
    bridge.add_argument(
        "--state",
        help="state service to ask; with --events alone, none: each publisher's heartbeats "
        "name theirs " + _env_help("state"),
    )
    bridge.add_argument("--host", help="address to bind " + _env_help("host"))
    bridge.add_argument("--port", type=int, help="port to bind, 0 = any " + _env_help("port"))
    auth = bridge.add_mutually_exclusive_group()
    auth.add_argument("--jwt-secret", help="HS256 secret " + f"(env {ENV['jwt_secret']})")
    auth.add_argument(
        "--jwt-public-key", help="RS256/ES256 PEM file " + f"(env {ENV['jwt_public_key']})"
    )
    bridge.add_argument(
        "--jwt-audience",
        help="tokens must carry this aud (unset: any aud accepted) "
        + f"(env {ENV['jwt_audience']})",
    )
    bridge.add_argument(
        "--jwt-issuer",
        help="tokens must carry this iss (unset: not checked) " + f"(env {ENV['jwt_issuer']})",
    )
    _curve_client_flags(bridge)
    bridge.add_argument(
        "--allow-origin",
        help="comma-separated origins (scheme://host:port) whose pages may use the bridge besides "
        "its own; * for any " + f"(env {ENV['allow_origin']})",
    )
    bridge.add_argument(
        "--allow-host",
        help="comma-separated host names the bridge may be reached by besides its address and "
        "localhost; * for any " + f"(env {ENV['allow_host']})",
    )

    run = sub.add_parser("run", help="run a workflow file and follow it")
    run.add_argument("file", help="workflow definition (JSON, YAML or TOML)")
    run.add_argument("--state", help="submit to this state service instead of running embedded")
    run.add_argument("--events", help="event stream of that service " + _env_help("events"))
    _curve_client_flags(run)
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="workflow input (repeatable; VALUE parsed as JSON when it can be)",
    )

    tail = sub.add_parser("tail", help="print events live")
    tail.add_argument("execution_id", nargs="?", help="one execution (default: every execution)")
    tail.add_argument("--events", help="event stream " + _env_help("events"))
    tail.add_argument("--state", help="state service " + _env_help("state"))
    tail.add_argument("--topic", help="raw topic prefix, e.g. exec/")
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    _curve_client_flags(tail)

    keys = sub.add_parser("keys", help="make CURVE keys for a service and its clients")
    keys.add_argument("directory", help="where to write them (created; nothing overwritten)")
    keys.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="a client key pair to make and authorize (repeatable; default: one named client)",
    )

    proxy = sub.add_parser("proxy", help="XSUB/XPUB forwarder for many publishers/subscribers")
    proxy.add_argument("--frontend", required=True, help="XSUB endpoint publishers connect to")
    proxy.add_argument("--backend", required=True, help="XPUB endpoint subscribers connect to")
    proxy.add_argument(
        "--metrics-port",
        type=int,
        help="serve GET /metrics (Prometheus text) and GET /health on this port, 0 = any "
        + _env_help("metrics_port"),
    )
    proxy.add_argument(
        "--metrics-host", help="address the metrics endpoint binds " + _env_help("metrics_host")
    )

    demo = sub.add_parser("demo", help="everything on embedded defaults, demo workflows running")
    demo.add_argument("--db", help="SQLite file (default: a temporary file)")
    demo.add_argument("--port", type=int, help="bridge port " + _env_help("port"))
    demo.add_argument("--events", help="PUB endpoint " + _env_help("events"))
    demo.add_argument("--state", help="ROUTER endpoint " + _env_help("state"))
    demo.add_argument("--once", action="store_true", help="run one round of demos, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zmqmon`` command."""
    args = build_parser().parse_args(argv)
    cmd = args.command
    if cmd == "serve":
        from zmqmon.services.server import serve

        return serve(
            events=from_env("events", args.events) or "",
            state=from_env("state", args.state) or "",
            db=from_env("db", args.db) or "",
            agents=from_env("agents", args.agents) or "",
            limits={name: from_env(name, getattr(args, name)) for name in _LIMITS},
            curve=from_env("curve", args.curve),
            advertise_state=from_env("advertise_state", args.advertise_state),
            dask=from_env("dask", args.dask) or "",
            dask_channel=from_env("dask_channel", args.dask_channel) or "",
            dask_advertise=from_env("dask_advertise", args.dask_advertise) or "",
        )
    if cmd == "bridge":
        from zmqmon_bridge.server import run_bridge

        return run_bridge(
            events=from_env("events", args.events) or "",
            state=_bridge_state(args),
            host=from_env("host", args.host) or "",
            port=int(from_env("port", None if args.port is None else str(args.port)) or 0),
            # keep_empty: an empty secret or key given explicitly is refused, not "auth off"
            jwt_secret=from_env("jwt_secret", args.jwt_secret, keep_empty=True),
            jwt_public_key=from_env("jwt_public_key", args.jwt_public_key, keep_empty=True),
            jwt_audience=from_env("jwt_audience", args.jwt_audience, keep_empty=True),
            jwt_issuer=from_env("jwt_issuer", args.jwt_issuer, keep_empty=True),
            curve=_curve(args),
            allow_origin=from_env("allow_origin", args.allow_origin),
            allow_host=from_env("allow_host", args.allow_host),
        )
    if cmd == "run":
        from zmqmon.terminal.run import run_file

        return run_file(
            args.file, state=args.state, events=args.events, inputs=args.input, curve=_curve(args)
        )
    if cmd == "tail":
        from zmqmon.terminal.tail import tail

        return tail(
            args.execution_id,
            events=from_env("events", args.events) or "",
            state=from_env("state", args.state) or "",
            topic=args.topic,
            as_json=args.json,
            curve=_curve(args),
        )
    if cmd == "keys":
        from zmqmon.shells.curve import run_keys

        return run_keys(args.directory, tuple(args.client) or ("client",))
    if cmd == "proxy":
        from zmqmon.shells.proxy import run_proxy

        metrics_port = from_env(
            "metrics_port", None if args.metrics_port is None else str(args.metrics_port)
        )
        if metrics_port is not None and not (metrics_port.isascii() and metrics_port.isdigit()):
            print(
                f"zmqmon proxy: metrics port must be a number, got {metrics_port!r}",
                file=sys.stderr,
            )
            return 2
        return run_proxy(
            args.frontend,
            args.backend,
            metrics_port=None if metrics_port is None else int(metrics_port),
            metrics_host=from_env("metrics_host", args.metrics_host) or "127.0.0.1",
        )
    if cmd == "demo":
        from zmqmon.launch import run_demo

        return run_demo(
            db=args.db,
            port=int(from_env("port", None if args.port is None else str(args.port)) or 0),
            events=from_env("events", args.events) or "",
            state=from_env("state", args.state) or "",
            once=args.once,
        )
    raise AssertionError(cmd)  # argparse refuses unknown commands


if __name__ == "__main__":
    sys.exit(main())
