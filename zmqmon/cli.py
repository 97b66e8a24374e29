"""The ``zmqmon`` command line: argument parsing only; each command calls one importable function.

Every URL flag also reads its environment variable (``ZMQMON_EVENTS``, ``ZMQMON_STATE``,
``ZMQMON_DB``, ``ZMQMON_HOST``, ``ZMQMON_PORT``, ``ZMQMON_JWT_SECRET``, ``ZMQMON_JWT_PUBLIC_KEY``,
``ZMQMON_JWT_AUDIENCE``, ``ZMQMON_JWT_ISSUER``),
and so do ``serve --agents`` (``ZMQMON_AGENTS``) and the service's limits (``--max-request-bytes``
``ZMQMON_MAX_REQUEST_BYTES``, ``--max-agents`` ``ZMQMON_MAX_AGENTS``, ``--max-events-in-memory``
``ZMQMON_MAX_EVENTS_IN_MEMORY``, ``--max-workers`` ``ZMQMON_MAX_WORKERS``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zmqmon.config import ENV, from_env

__all__ = ["build_parser", "main"]


_LIMITS = ("max_request_bytes", "max_agents", "max_events_in_memory", "max_workers")


def _env_help(name: str) -> str:
    return f"(env {ENV[name]}; default {from_env(name)})"


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
    bridge.add_argument("--state", help="state service to ask " + _env_help("state"))
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

    proxy = sub.add_parser("proxy", help="XSUB/XPUB forwarder for many publishers/subscribers")
    proxy.add_argument("--frontend", required=True, help="XSUB endpoint publishers connect to")
    proxy.add_argument("--backend", required=True, help="XPUB endpoint subscribers connect to")

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
        )
    if cmd == "bridge":
        from zmqmon_bridge.server import run_bridge

        return run_bridge(
            events=from_env("events", args.events) or "",
            state=from_env("state", args.state) or "",
            host=from_env("host", args.host) or "",
            port=int(from_env("port", None if args.port is None else str(args.port)) or 0),
            # keep_empty: an empty secret or key given explicitly is refused, not "auth off"
            jwt_secret=from_env("jwt_secret", args.jwt_secret, keep_empty=True),
            jwt_public_key=from_env("jwt_public_key", args.jwt_public_key, keep_empty=True),
            jwt_audience=from_env("jwt_audience", args.jwt_audience, keep_empty=True),
            jwt_issuer=from_env("jwt_issuer", args.jwt_issuer, keep_empty=True),
            allow_origin=from_env("allow_origin", args.allow_origin),
            allow_host=from_env("allow_host", args.allow_host),
        )
    if cmd == "run":
        from zmqmon.terminal.run import run_file

        return run_file(args.file, state=args.state, events=args.events, inputs=args.input)
    if cmd == "tail":
        from zmqmon.terminal.tail import tail

        return tail(
            args.execution_id,
            events=from_env("events", args.events) or "",
            state=from_env("state", args.state) or "",
            topic=args.topic,
            as_json=args.json,
        )
    if cmd == "proxy":
        from zmqmon.shells.proxy import run_proxy

        return run_proxy(args.frontend, args.backend)
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
