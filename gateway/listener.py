"""The worker's accept loop: Hypercorn's connection handling, with the gateway's TLS termination.

Every connection is a `ConnectionPipe` (an asyncio Protocol, `gateway/transport.py`) served by
`ConnectionServer` (Hypercorn's protocol stack without asyncio streams,
`gateway/connection_server.py`). For wss sockets the gateway accepts the TCP connection itself
(`sock_accept`) and runs TLS from its first byte in the pipe's memory BIOs, so no byte of the
ClientHello can be read by anyone else; handshake failures become security events with the peer
address. The ASGI TLS extension is added to every scope of an established TLS connection
(`tls_listener`).

At most `limits.max_tls_handshakes` TLS handshakes run at once: the accept loop takes a handshake
slot before it accepts, so at the limit it stops accepting and new connections wait in the
kernel's listen backlog (and, once that is full, SYNs go unanswered and clients retry with TCP's
back-off). No CPU goes to a handshake the worker cannot finish in time. With several workers each
has its own socket (SO_REUSEPORT, `server.create_listeners`): the kernel spreads connections
evenly, and each worker's limit applies to its own share.

Hypercorn internals used (pinned, checked by `hypercorn_compat`): `Lifespan`, `WorkerContext`
and those of `connection_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig

from . import tls_listener
from .capacity import AdmissionControl
from .connection_server import ConnectionServer
from .logs import event
from .pings import PingScheduler
from .transport import ConnectionPipe

log = logging.getLogger("gateway.listener")


async def serve_listeners(
    app: Any,
    config: HypercornConfig,
    sockets: list[Any],
    wss_ports: frozenset[int],
    termination: Callable[[], tls_listener.TlsTermination | None],
    shutdown_trigger: Callable[[], Awaitable[None]],
    admission: AdmissionControl | None = None,
) -> None:
    """Serve `sockets` until `shutdown_trigger` returns, then stop as Hypercorn does.

    `admission` limits and counts the concurrent TLS handshakes (None: unlimited)."""
    loop = asyncio.get_running_loop()
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app, config, loop, lifespan_state)
    lifespan_task = loop.create_task(lifespan.handle_lifespan())
    await lifespan.wait_for_startup()
    if lifespan_task.done() and lifespan_task.exception() is not None:
        raise lifespan_task.exception()  # type: ignore[misc]
    context = WorkerContext(None)
    interval = config.websocket_ping_interval
    pings = PingScheduler(loop, interval) if interval else None
    connections: set[asyncio.Task[Any]] = set()

    def track(task: asyncio.Task[Any]) -> None:
        connections.add(task)
        task.add_done_callback(connections.discard)

    class PlainPipe(ConnectionPipe):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            server = ConnectionServer(app, loop, config, context, lifespan_state, self, pings)
            track(loop.create_task(server.run()))

    limit = admission.settings.max_tls_handshakes if admission is not None else 0
    slots = asyncio.Semaphore(limit) if limit else None

    async def secure(connection: socket.socket, address: Any) -> None:
        if admission is not None:
            admission.handshake_started()
        try:
            established = await _handshake(loop, connection, address, termination())
        finally:
            if admission is not None:
                admission.handshake_ended()
            if slots is not None:
                slots.release()
        if established is not None:
            pipe, extension = established
            connection_app = tls_listener.TlsScope(app, extension)
            server = ConnectionServer(
                connection_app, loop, config, context, lifespan_state, pipe, pings
            )
            await server.run()

    async def accept_tls(listening: socket.socket) -> None:
        while True:
            if slots is not None:  # a free handshake slot first; meanwhile the backlog queues
                if slots.locked() and admission is not None:
                    _accept_paused(admission)
                await slots.acquire()
            try:
                connection, address = await loop.sock_accept(listening)
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                if slots is not None:
                    slots.release()
                if admission is None:
                    event(log, "accept_failed", logging.ERROR, error=str(exc))
                elif count := admission.log_due("accept_failed"):  # e.g. EMFILE: once a second
                    event(log, "accept_failed", logging.ERROR, error=str(exc), failures=count)
                await asyncio.sleep(0.1)
                continue
            track(loop.create_task(secure(connection, address)))

    servers = []
    acceptors = []
    tls_sockets = [sock for sock in sockets if sock.getsockname()[1] in wss_ports]
    for sock in sockets:
        if sock in tls_sockets:
            acceptors.append(loop.create_task(accept_tls(sock)))
        else:
            servers.append(
                await loop.create_server(lambda: PlainPipe(loop), sock=sock, backlog=config.backlog)
            )
    try:
        await shutdown_trigger()
    finally:
        await context.terminated.set()
        for server in servers:
            server.close()
        for acceptor in acceptors:
            acceptor.cancel()
        for sock in tls_sockets:  # refuse new TCP connections during the graceful wait
            with contextlib.suppress(OSError):
                sock.close()
        if connections:
            _, pending = await asyncio.wait(set(connections), timeout=config.graceful_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if pings is not None:
            pings.close()
        await lifespan.wait_for_shutdown()
        lifespan_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lifespan_task


def _accept_paused(admission: AdmissionControl) -> None:
    """Counted; logged at once, then once a second with the number of pauses meanwhile."""
    admission.accept_pauses += 1
    count = admission.log_due("max_tls_handshakes")
    if count:
        event(
            log,
            "accept_paused",
            logging.WARNING,
            reason="max_tls_handshakes",
            handshakes=admission.handshakes,
            limit=admission.settings.max_tls_handshakes,
            pauses=count,
            total=admission.accept_pauses,
        )


async def _handshake(
    loop: asyncio.AbstractEventLoop,
    connection: socket.socket,
    address: Any,
    termination: tls_listener.TlsTermination | None,
) -> tuple[ConnectionPipe, dict[str, Any]] | None:
    """TLS over an accepted socket (TLS from its first byte); None when it failed (logged)."""
    peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "unknown"
    if termination is None:
        connection.close()
        return None
    try:
        _, pipe = await loop.connect_accepted_socket(
            lambda: ConnectionPipe(loop, termination.context), connection
        )
    except OSError as exc:
        termination.on_failure(peer, *tls_listener.failure_reason(exc))
        connection.close()
        return None
    except BaseException:
        connection.close()
        raise
    try:
        await pipe.handshake(termination.handshake_timeout)
    except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
        reason, detail = tls_listener.failure_reason(exc)
        termination.on_failure(peer, reason, detail)
        if not isinstance(exc, ssl.SSLError):  # an SSLError closed it after sending the alert
            pipe.abort()
        return None
    except BaseException:  # cancelled (shutdown) or unexpected: never leak the socket
        pipe.abort()
        raise
    try:
        extension = tls_listener.tls_extension(pipe.tls_object)
    except Exception:  # never let a malformed certificate crash the accept path
        event(log, "tls_extension_failed", logging.ERROR, peer=peer)
        pipe.abort()
        return None
    return pipe, extension
