"""Runs the gateway: Hypercorn around the app, in one process or a supervisor with N workers.

The supervisor creates the listening sockets once and hands them to each worker (spawned
processes); every worker serves them with its own event loop (uvloop where available) and drains
its sessions on SIGTERM before Hypercorn stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import multiprocessing
import os
import signal
import socket
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from quart import Quart

from security.devcerts import ensure_dev_certificates

from . import tls_listener
from .app import create_app, gateway_of
from .config import GatewayConfig
from .hypercorn_compat import check_compatible, report_peer_close_codes, set_permessage_deflate
from .listener import serve_listeners
from .logs import configure_logging, event
from .metrics import MetricsDir, prepare_metrics_dir
from .pings import tick_for
from .status import StatusListener

log = logging.getLogger("gateway.server")


def hypercorn_config(config: GatewayConfig) -> HypercornConfig:
    """Hypercorn's configuration derived from ours."""
    hc = HypercornConfig()
    hc.bind = [*config.server.ws_bind, *config.tls.wss_bind]  # TLS is terminated by tls_listener
    hc.websocket_max_message_size = config.limits.max_frame_bytes
    ping = config.limits.ping_interval_seconds
    hc.websocket_ping_interval = ping or None
    # Hypercorn sends pings but never checks pongs: a peer that sends nothing (not even a pong)
    # for ping (+ the scheduler's tick) + pong_timeout seconds is dead: the read timeout closes it.
    pong = config.limits.pong_timeout_seconds
    hc.read_timeout = math.ceil(ping + tick_for(ping) + pong) if ping else None
    hc.backlog = config.server.backlog
    hc.graceful_timeout = 2.0
    hc.keep_alive_timeout = 5.0
    hc.include_server_header = False
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


def _use_uvloop(config: GatewayConfig) -> bool:
    if config.server.worker_class == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if config.server.worker_class == "uvloop":
            raise
        return False
    return True


@dataclass(frozen=True)
class Listeners:
    """The listening sockets (all handed to Hypercorn as plain) and which ports are wss.

    With several workers, `per_worker` holds one set of sockets per worker, all bound to the same
    addresses with SO_REUSEPORT: the kernel spreads new connections evenly over the workers
    (with one shared socket, whichever worker wakes first takes the next connection, so most of
    them land on one worker). Worker `i` serves `for_worker(i)`, also after a restart.
    """

    sockets: Sockets
    wss_ports: frozenset[int]
    status: Any = None  # the status listener (status.bind), served by every worker
    per_worker: tuple[Sockets, ...] = ()

    def addresses(self) -> dict[str, list[str]]:
        """'ws', 'wss' and 'status' addresses actually bound (ports resolved)."""
        result: dict[str, list[str]] = {"ws": [], "wss": []}
        for sock in self.sockets.insecure_sockets:
            kind = "wss" if sock.getsockname()[1] in self.wss_ports else "ws"
            result[kind].append(_address(sock))
        result["status"] = [_address(self.status)] if self.status is not None else []
        return result

    def for_worker(self, index: int) -> Listeners:
        """The listeners worker `index` serves (its own SO_REUSEPORT sockets, when it has some)."""
        if not self.per_worker:
            return self
        return Listeners(self.per_worker[index], self.wss_ports, self.status)


def create_listeners(config: GatewayConfig, workers: int = 1) -> Listeners:
    """Bind every ws and wss listener: once, or once per worker with SO_REUSEPORT."""
    hc = HypercornConfig()
    hc.backlog = config.server.backlog
    binds = [*config.server.ws_bind, *config.tls.wss_bind]
    own_sockets = (
        workers > 1
        and hasattr(socket, "SO_REUSEPORT")
        and all(not bind.startswith(("unix:", "fd://")) for bind in binds)
    )
    if own_sockets:
        hc.workers = workers  # Hypercorn sets SO_REUSEPORT before binding
    ws = hc._create_sockets(list(config.server.ws_bind))
    wss = hc._create_sockets(list(config.tls.wss_bind))
    hc.workers = 1
    status = hc._create_sockets([config.status.bind]) if config.status.bind else []
    for sock in ws + wss + status:  # accept into the backlog at once, even before a worker serves
        sock.listen(hc.backlog)
    wss_ports = frozenset(s.getsockname()[1] for s in wss)
    per_worker: tuple[Sockets, ...] = ()
    if own_sockets:
        hc.workers = workers
        resolved = [_address(sock) for sock in ws + wss]  # port 0 became a real port
        sets = [ws + wss]
        for _ in range(workers - 1):
            more = hc._create_sockets(resolved)
            for sock in more:
                sock.listen(hc.backlog)
            sets.append(more)
        per_worker = tuple(Sockets([], sockets, []) for sockets in sets)
    return Listeners(
        Sockets([], ws + wss, []), wss_ports, status[0] if status else None, per_worker
    )


def prepare_certificates(config: GatewayConfig) -> None:
    """Dev mode: generate a dev CA and server certificates on the first start with wss."""
    if not (config.tls.wss_bind and config.tls.dev_certificates):
        return
    certs_dir = Path(config.tls.certs_dir)
    created = ensure_dev_certificates(certs_dir, config.tls.server_name)
    if created is not None:
        event(
            log,
            "dev_certificates_created",
            logging.WARNING,
            certs_dir=str(certs_dir),
            server_name=config.tls.server_name,
            detail="a development CA: not for production. Issue a charge point certificate with "
            "'ocpp-gateway ca issue-cp IDENTITY'",
        )


def run_worker(
    config: GatewayConfig, listeners: Listeners, supervisor_pid: int | None = None
) -> None:
    """One worker: serve the listeners until SIGTERM/SIGINT, then drain and stop."""
    configure_logging(config.log.format, config.log.level)
    tune_garbage_collector(config.server.gc_threshold)
    if _use_uvloop(config):
        import uvloop

        uvloop.run(_worker(config, listeners, supervisor_pid))
    else:
        asyncio.run(_worker(config, listeners, supervisor_pid))


def tune_garbage_collector(young_threshold: int) -> None:
    """Collect the young generation after `young_threshold` net allocations (0: Python's
    default) and keep what exists at start (modules, classes, configuration) out of every later
    collection (`gc.freeze`). A worker process only: frozen objects are never collected."""
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    gc.collect()
    gc.freeze()


async def _exit_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(1.0)
    event(log, "supervisor_gone", logging.ERROR, supervisor=supervisor_pid)
    stop.set()


async def _worker(config: GatewayConfig, listeners: Listeners, supervisor_pid: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watchdog = None
    if supervisor_pid is not None:  # a worker must not outlive its supervisor
        watchdog = loop.create_task(_exit_when_orphaned(supervisor_pid, stop))
    event(
        log,
        "worker_started",
        pid=os.getpid(),
        loop=type(loop).__module__.split(".")[0],
        gc_threshold=gc.get_threshold()[0],
    )
    await serve_gateway(config, listeners, stop)
    if watchdog is not None:
        watchdog.cancel()
    event(log, "worker_stopped")


async def serve_gateway(
    config: GatewayConfig,
    listeners: Listeners,
    stop: asyncio.Event,
    app: Quart | None = None,
    hc: HypercornConfig | None = None,
) -> None:
    """Serve the gateway on `listeners` in this event loop until `stop` is set, then drain."""
    from hypercorn.utils import wrap_app

    set_permessage_deflate(config.server.permessage_deflate)
    report_peer_close_codes()
    app = app or create_app(config)
    gateway = gateway_of(app)
    if listeners.wss_ports and gateway.trust.context is not None:
        gateway.tls_termination = tls_listener.TlsTermination(
            gateway.trust.context,
            listeners.wss_ports,
            config.tls.handshake_timeout_seconds,
            gateway.tls_failure,
        )
    await gateway.start_cluster()
    watcher = asyncio.get_running_loop().create_task(gateway.watch())
    sampler = asyncio.get_running_loop().create_task(gateway.metrics.sample_forever(gateway))
    status = StatusListener(gateway, listeners.status) if listeners.status is not None else None

    async def shutdown_trigger() -> None:
        gateway.listening = True  # serve_listeners calls this once every listener is served
        gateway.metrics.sample(gateway)  # ready at once, also for the other workers' scrapes
        await stop.wait()
        await gateway.drain(config.server.drain_seconds)

    hc = hc or hypercorn_config(config)
    event(log, "serving", **listeners.addresses())
    try:
        await serve_listeners(
            wrap_app(app, 0, "asgi"),
            hc,
            listeners.sockets.insecure_sockets,
            listeners.wss_ports,
            lambda: gateway.tls_termination,
            shutdown_trigger,
            admission=gateway.admission,
        )
    finally:
        watcher.cancel()
        sampler.cancel()
        if status is not None:
            await status.stop()
        await gateway.stop_cluster()


def serve(config: GatewayConfig) -> int:
    """Start the gateway as configured; return the exit status."""
    configure_logging(config.log.format, config.log.level)
    check_compatible()
    prepare_certificates(config)
    listeners = create_listeners(config, config.server.workers)
    event(
        log,
        "listening",
        **listeners.addresses(),
        path_prefix=config.server.path_prefix,
        versions=list(config.ocpp.versions),
        workers=config.server.workers,
    )
    metrics_dir = prepare_metrics_dir(config.server.workers, config.status.metrics)
    try:
        if config.server.workers == 1:
            run_worker(config, listeners)
            return 0
        return _supervise(config, listeners, metrics_dir)
    finally:
        if metrics_dir is not None:
            metrics_dir.close()


def _address(sock: Any) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _supervise(
    config: GatewayConfig, listeners: Listeners, metrics_dir: MetricsDir | None = None
) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> Any:
        process = context.Process(
            target=run_worker,
            args=(config, listeners.for_worker(index), os.getpid()),
            daemon=False,
        )
        process.start()
        return process

    workers = [start(index) for index in range(config.server.workers)]

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        alive = [p for p in workers if p.is_alive()]
        if not alive and stopping:
            break
        wait([p.sentinel for p in alive], timeout=1.0)
        for index, process in enumerate(workers):
            if not process.is_alive() and not stopping:
                event(log, "worker_died", logging.ERROR, pid=process.pid, code=process.exitcode)
                if metrics_dir is not None:  # its live gauges (connections, queues) vanish
                    metrics_dir.mark_dead(process.pid)
                workers[index] = start(index)
    for process in workers:
        process.join()
        if metrics_dir is not None:
            metrics_dir.mark_dead(process.pid)
    event(log, "stopped")
    return 0
