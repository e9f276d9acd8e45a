"""Runs the gateway: Hypercorn around the app, in one process or a supervisor with N workers.

The supervisor creates the listening sockets once and hands them to each worker (spawned
processes); every worker serves them with its own event loop (uvloop where available) and drains
its sessions on SIGTERM before Hypercorn stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import signal
from multiprocessing.connection import wait
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from .app import create_app, gateway_of
from .config import GatewayConfig
from .hypercorn_compat import check_compatible, set_permessage_deflate
from .logs import configure_logging, event

log = logging.getLogger("gateway.server")


def hypercorn_config(config: GatewayConfig) -> HypercornConfig:
    """Hypercorn's configuration derived from ours."""
    hc = HypercornConfig()
    hc.bind = list(config.server.ws_bind)
    hc.insecure_bind = []
    hc.websocket_max_message_size = config.limits.max_frame_bytes
    ping = config.limits.ping_interval_seconds
    hc.websocket_ping_interval = ping or None
    # Hypercorn sends pings but never checks pongs: a peer that sends nothing (not even a pong)
    # for ping + pong_timeout seconds is dead, and the read timeout closes its socket.
    hc.read_timeout = math.ceil(ping + config.limits.pong_timeout_seconds) if ping else None
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


def run_worker(config: GatewayConfig, sockets: Sockets, supervisor_pid: int | None = None) -> None:
    """One worker: serve `sockets` until SIGTERM/SIGINT, then drain and stop."""
    configure_logging(config.log.format, config.log.level)
    set_permessage_deflate(config.server.permessage_deflate)
    if _use_uvloop(config):
        import uvloop

        uvloop.run(_serve(config, sockets, supervisor_pid))
    else:
        asyncio.run(_serve(config, sockets, supervisor_pid))


async def _exit_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    while os.getppid() == supervisor_pid:
        await asyncio.sleep(1.0)
    event(log, "supervisor_gone", logging.ERROR, supervisor=supervisor_pid)
    stop.set()


async def _serve(config: GatewayConfig, sockets: Sockets, supervisor_pid: int | None) -> None:
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import wrap_app

    app = create_app(config)
    gateway = gateway_of(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        await gateway.drain(config.server.drain_seconds)

    if supervisor_pid is not None:  # a worker must not outlive its supervisor
        watchdog = loop.create_task(_exit_when_orphaned(supervisor_pid, stop))
    event(log, "worker_started", pid=os.getpid(), loop=type(loop).__module__.split(".")[0])
    await worker_serve(
        wrap_app(app, 0, "asgi"),
        hypercorn_config(config),
        sockets=sockets,
        shutdown_trigger=shutdown_trigger,
    )
    if supervisor_pid is not None:
        watchdog.cancel()
    event(log, "worker_stopped")


def serve(config: GatewayConfig) -> int:
    """Start the gateway as configured; return the exit status."""
    configure_logging(config.log.format, config.log.level)
    check_compatible()
    sockets = hypercorn_config(config).create_sockets()
    listening = [_address(s) for s in sockets.insecure_sockets + sockets.secure_sockets]
    event(
        log,
        "listening",
        addresses=listening,
        path_prefix=config.server.path_prefix,
        versions=list(config.ocpp.versions),
        workers=config.server.workers,
    )
    if config.server.workers == 1:
        run_worker(config, sockets)
        return 0
    return _supervise(config, sockets)


def _address(sock: Any) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _supervise(config: GatewayConfig, sockets: Sockets) -> int:
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> Any:
        process = context.Process(
            target=run_worker, args=(config, sockets, os.getpid()), daemon=False
        )
        process.start()
        return process

    workers = [start() for _ in range(config.server.workers)]

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
                workers[index] = start()
    for process in workers:
        process.join()
    event(log, "stopped")
    return 0
