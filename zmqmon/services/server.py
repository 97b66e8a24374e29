"""The executor service: store + event publisher + state service + workflow engine, composed.

:class:`Server` is what ``zmqmon serve`` runs and what the embedded ``Executor`` owns. Start order:
store → publisher → recovery (executions left pending/running by a previous process are marked
failed with ``errorType: "interrupted"``) → engine → state service. Stop is the reverse, and ends
with the store drained: every event published is stored.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import zmq

from zmqmon.config import (
    DEFAULT_DASK_CHANNEL,
    DEFAULT_EVENTS,
    DEFAULT_STATE,
    ServiceLimits,
    is_loopback,
)
from zmqmon.core.workflow import (
    AgentAllowList,
    WorkflowDefinition,
    parse_workflow,
    workflow_digest,
)
from zmqmon.errors import ConfigError, InternalError
from zmqmon.services.state_service import StateService
from zmqmon.shells.curve import CurveServer
from zmqmon.shells.publisher import EventPublisher
from zmqmon.shells.store import Store

__all__ = ["INTERRUPTED", "Server", "serve"]

log = logging.getLogger(__name__)

#: ``errorType`` of executions found unfinished when the service starts.
INTERRUPTED = "interrupted"


def _load_engine() -> Any:
    """The engine class, or None while ``zmqmon.services.executor`` is missing or broken.

    Imported lazily: the embedded ``Executor`` imports this module, and the service still
    answers reads without an engine.
    """
    try:
        module = importlib.import_module("zmqmon.services.executor")
    except ImportError as exc:
        log.warning("no workflow engine (%s): execute will answer 'internal'", exc)
        return None
    return getattr(module, "WorkflowEngine", None)


class Server:
    """The executor service on two endpoints and one SQLite file. A context manager.

    ``agents``: the modules whose callables definitions may name in ``uses`` (default: only
    ``zmqmon.demo``; :attr:`AgentAllowList.ANY <zmqmon.core.workflow.AgentAllowList.ANY>` for
    any — what the embedded executor uses, in the user's own process). ``limits``: the caps of
    :class:`~zmqmon.config.ServiceLimits` (``max_workers``, when given, overrides its own).
    ``dask``: run agents on that Dask cluster (a scheduler address, a ``distributed.Client`` or a
    ``LocalCluster``), its workers reaching this service's channel at ``dask_channel`` (bound) or
    ``dask_advertise``; see :class:`~zmqmon.services.executor.engine.WorkflowEngine`.
    """

    def __init__(
        self,
        events: str = DEFAULT_EVENTS,
        state: str = DEFAULT_STATE,
        db: str | os.PathLike[str] | None = None,
        *,
        heartbeat_interval: float = 0.5,
        sndhwm: int = 10_000,
        max_workers: int | None = None,
        progress_interval: float = 0.05,
        agents: AgentAllowList = AgentAllowList(),  # noqa: B008 - frozen, shared safely
        limits: ServiceLimits = ServiceLimits(),  # noqa: B008 - frozen, shared safely
        curve: CurveServer | None = None,
        advertise_state: str | None = None,
        dask: Any = None,
        dask_channel: str = DEFAULT_DASK_CHANNEL,
        dask_advertise: str | None = None,
    ) -> None:
        self._events_endpoint = events
        self.advertise_state = advertise_state
        self.curve = curve
        self._authenticator: Any = None
        self._state_endpoint = state
        self._tmpdir: str | None = None
        if db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="zmqmon-")
            db = os.path.join(self._tmpdir, "zmqmon.sqlite3")
        self.db = os.fspath(db)
        self._heartbeat_interval = heartbeat_interval
        self._sndhwm = sndhwm
        self.limits = limits
        self._max_workers = limits.max_workers if max_workers is None else max_workers
        self._progress_interval = progress_interval
        self.agents = agents
        self._dask = dask
        self._dask_channel = dask_channel
        self._dask_advertise = dask_advertise
        self.endpoints: dict[str, str] = {}
        self.store: Store
        self.publisher: EventPublisher
        self.service: StateService
        self.engine: Any = None
        self.recovered: list[str] = []
        self._context: zmq.Context[Any] | None = None
        self._started = False
        self._stopped = False

    def start(self) -> Server:
        """Bind, recover interrupted executions, start the engine and the state service."""
        if self._started:
            return self
        self._started = True
        self._context = zmq.Context()
        self.store = Store(self.db)
        try:
            if self.curve is not None:  # before the sockets bind: only known clients get in
                self._authenticator = self.curve.authenticate(self._context)
            self.publisher = EventPublisher(
                self._events_endpoint,
                store=self.store,
                heartbeat_interval=self._heartbeat_interval,
                sndhwm=self._sndhwm,
                context=self._context,
                curve=self.curve,
            )
            self.recovered = self._recover()
            engine_cls = _load_engine()
            if engine_cls is not None:
                self.engine = engine_cls(
                    self.publisher,
                    max_workers=self._max_workers,
                    progress_interval=self._progress_interval,
                    agents=self.agents,
                    max_events_in_memory=self.limits.max_events_in_memory,
                    history=self.store,
                    **self._dask_options(),
                )
            self.service = StateService(
                self._state_endpoint,
                store=self.store,
                publisher=self.publisher,
                runner=self.engine,
                context=self._context,
                agents=self.agents,
                max_agents=self.limits.max_agents,
                max_request_bytes=self.limits.max_request_bytes,
                curve=self.curve,
            ).start()
        except BaseException:
            self.stop()
            raise
        self.endpoints = {"events": self.publisher.endpoint, "state": self.service.endpoint}
        # Heartbeats name the state service owning these executions: behind a proxy,
        # subscribers route each execution's snapshot and gap requests there (contract §3).
        self.publisher.state_endpoint = self.advertise_state or self.service.endpoint
        if self.engine is not None:  # handles carry them, for monitors to connect
            self.engine.endpoints = dict(self.endpoints)
        log.info("zmqmon service: events %(events)s, state %(state)s", self.endpoints)
        return self

    def _dask_options(self) -> dict[str, Any]:
        if self._dask is None:
            return {}
        return {
            "dask": self._dask,
            "dask_channel": self._dask_channel,
            "dask_advertise": self._dask_advertise,
        }

    def _recover(self) -> list[str]:
        """Mark executions left pending/running by an earlier process failed/interrupted."""
        recovered = []
        for status in ("pending", "running"):
            for st in self.store.executions(status=status, limit=1_000_000):
                self.publisher.resume(st.execution_id, st.last_seq)
                self.publisher.emit_execution_failed(
                    st.execution_id,
                    st.workflow_id,
                    error="interrupted: the executor stopped before the execution finished",
                    error_type=INTERRUPTED,
                    agent_id=None,
                )
                recovered.append(st.execution_id)
        if recovered:
            self.store.flush()
            log.warning("marked %d interrupted execution(s) failed", len(recovered))
        return recovered

    def submit(
        self,
        workflow: WorkflowDefinition | Mapping[str, Any] | Any,
        *,
        inputs: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Any:
        """Store the workflow and run it; returns the engine's ``ExecutionHandle``."""
        if self.engine is None:
            raise InternalError("no executor: this service cannot run workflows")
        if isinstance(workflow, (WorkflowDefinition, Mapping)):
            definition = parse_workflow(workflow)
        else:  # an API-built Workflow: its definition is stored, its callables run
            definition = workflow.to_definition()
        # Run first (the engine validates, imports the agents, emits started), store after:
        # a workflow the engine refuses is not stored.
        workflow_id = workflow_digest(definition)  # the same definition keeps one row
        handle = self.engine.submit(
            workflow if not isinstance(workflow, Mapping) else definition,
            workflow_id=workflow_id,
            inputs=inputs,
            user_id=user_id,
        )
        self.store.save_workflow(definition, workflow_id)
        return handle

    def agent_threads_left(self) -> int:
        """Sync agents' threads still running their calls (after :meth:`stop`: stuck ones)."""
        threads = getattr(self.engine, "threads", None)
        return 0 if threads is None else int(threads.running + threads.abandoned)

    def stop(self) -> None:
        """Stop everything; every event published is stored when this returns."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        # Engine first: it may still emit (cancellations), which must be published and stored.
        for part in ("engine", "service", "publisher"):
            obj = getattr(self, part, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    log.exception("closing %s failed", part)
        if hasattr(self, "store"):
            self.store.close()
        if self._context is not None:
            if self._authenticator is not None:
                self._authenticator.stop()
            self._context.term()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: how often (seconds) a thread holding the interpreter lock hands it to one waiting for it
SWITCH_INTERVAL = 0.0005


def serve(
    events: str,
    state: str,
    db: str,
    agents: str = "",
    limits: Mapping[str, str | int | None] | None = None,
    *,
    on_start: Callable[[Server], None] | None = None,
    sndhwm: int = 10_000,
    curve: str | None = None,
    advertise_state: str | None = None,
    dask: str = "",
    dask_channel: str = DEFAULT_DASK_CHANNEL,
    dask_advertise: str = "",
) -> int:
    """``zmqmon serve``: run the service until SIGINT/SIGTERM; line 1 of stdout is the endpoints.

    ``agents``: comma-separated modules agents may be imported from (``zmqmon.demo`` always;
    ``*``: any importable callable). ``limits``: :class:`~zmqmon.config.ServiceLimits` fields by
    name (None: the default). Exit 2 on an unusable setting, 1 if the service cannot start.
    After a clean stop with sync agents still stuck in their calls (their executions cancelled
    and stored), the process ends at once with status 0 (``os._exit``) instead of returning.
    ``on_start(server)`` runs once it is up, before the endpoints are printed (for embedding: a
    producer of its own); ``sndhwm``: the event stream's high-water mark per subscriber
    (messages; past it, dropped for that subscriber, which repairs from the store); ``curve``: a
    CURVE keys directory (:mod:`zmqmon.shells.curve`): encrypted, only authorized clients;
    ``advertise_state``: the state endpoint heartbeats name, where the bound one is not reachable
    from other hosts (``tcp://0.0.0.0:…`` bound, ``tcp://host-a:5557`` advertised).
    ``dask``: a Dask scheduler address to run every agent on (empty: in this process), its
    workers connecting to the channel bound at ``dask_channel`` (or ``dask_advertise``).
    """
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # The state service, the store's writer and the publisher share one interpreter lock with
    # the agents' threads: hand it over every 0.5 ms rather than every 5 ms, so that a request
    # (a subscriber's page, a snapshot) is not kept waiting behind a busy producer.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        allow = AgentAllowList.parse(agents)
        caps = ServiceLimits.parse(limits or {})
        keys = CurveServer.load(curve) if curve else None
    except ConfigError as exc:
        print(f"zmqmon serve: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = Server(
            events or DEFAULT_EVENTS,
            state or DEFAULT_STATE,
            db or None,
            agents=allow,
            limits=caps,
            sndhwm=sndhwm,
            curve=keys,
            advertise_state=advertise_state,
            dask=dask or None,
            dask_channel=dask_channel or DEFAULT_DASK_CHANNEL,
            dask_advertise=dask_advertise or None,
        ).start()
    except Exception as exc:
        print(f"zmqmon serve: {exc}", file=sys.stderr)
        return 1
    try:
        if allow.any_module:
            log.warning(
                "--agents '*': any importable callable can be run as an agent by whoever reaches "
                "the state port %s — keep it where only trusted code can connect",
                server.endpoints["state"],
            )
        else:
            log.info("agents may be imported from: %s", allow)
        exposed = [e for e in server.endpoints.values() if not is_loopback(e)]
        if exposed and keys is None:
            log.warning(
                "%s listen(s) beyond this machine without CURVE: anyone who reaches them reads "
                "every execution and can run workflows; give --curve DIR (zmqmon keys DIR)",
                ", ".join(exposed),
            )
        if dask:
            log.info(
                "agents run on the Dask cluster at %s; its workers reach this service at %s",
                dask,
                server.engine.runner.channel.endpoint,
            )
        if on_start is not None:
            on_start(server)
        print(json.dumps(server.endpoints), flush=True)
        while not stop.wait(0.1):
            pass
        log.info("stopping")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stuck = server.agent_threads_left()
    if stuck:
        # Everything is stored and closed. Python cannot stop these threads, and its shutdown
        # can abort on one blocked in I/O (a daemon thread holding stdin's lock in input()):
        # leave at once, with the clean exit this was.
        log.warning("%d agent thread(s) still stuck in their calls: not waiting for them", stuck)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
