"""The worker's accept loop: Hypercorn's connection handling, with the gateway's TLS termination.

Plain ws sockets are served exactly as Hypercorn's own `worker_serve` does. For wss sockets the
gateway accepts the TCP connection itself (`sock_accept`) and wraps the socket in TLS from its first
byte (`connect_accepted_socket`, server side), so no byte of the ClientHello can be read by anyone
else; handshake failures become security events with the peer address. The established TLS
streams go to Hypercorn's `TCPServer` with the ASGI TLS extension added to every scope of the
connection (`tls_listener`).

At most `limits.max_tls_handshakes` TLS handshakes run at once: the accept loop takes a handshake
slot before it accepts, so at the limit it stops accepting and new connections wait in the
kernel's listen backlog (and, once that is full, SYNs go unanswered and clients retry with TCP's
back-off). No CPU goes to a handshake the worker cannot finish in time, and with several workers
on one socket the ones with free slots take the connections.

Hypercorn internals used (pinned, checked by `hypercorn_compat`): `Lifespan`, `WorkerContext`,
`TCPServer(app, loop, config, context, state, reader, writer)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio.lifespan import Lifespan
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig

from . import tls_listener
from .capacity import AdmissionControl
from .logs import event

log = logging.getLogger("gateway.listener")
STREAM_LIMIT = 2**16


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
    connections: set[asyncio.Task[Any]] = set()

    def track(task: asyncio.Task[Any]) -> None:
        connections.add(task)
        task.add_done_callback(connections.discard)

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        track(asyncio.current_task())  # type: ignore[arg-type]
        await TCPServer(app, loop, config, context, lifespan_state, reader, writer)

    limit = admission.settings.max_tls_handshakes if admission is not None else 0
    slots = asyncio.Semaphore(limit) if limit else None

    async def secure(connection: socket.socket, address: Any) -> None:
        if admission is not None:
            admission.handshake_started()
        try:
            streams = await _handshake(loop, connection, address, termination())
        finally:
            if admission is not None:
                admission.handshake_ended()
            if slots is not None:
                slots.release()
        if streams is not None:
            reader, writer, extension = streams
            connection_app = tls_listener.TlsScope(app, extension)
            await TCPServer(connection_app, loop, config, context, lifespan_state, reader, writer)

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
                event(log, "accept_failed", logging.ERROR, error=str(exc))
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
                await asyncio.start_server(
                    plain, sock=sock, backlog=config.backlog, limit=STREAM_LIMIT
                )
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
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]] | None:
    """TLS over an accepted socket (TLS from its first byte); None when it failed (logged)."""
    peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "unknown"
    if termination is None:
        connection.close()
        return None
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    try:
        transport, _ = await loop.connect_accepted_socket(
            lambda: protocol,
            connection,
            ssl=termination.context,
            ssl_handshake_timeout=termination.handshake_timeout,
        )
    except (OSError, TimeoutError, ConnectionError, EOFError) as exc:
        reason, detail = tls_listener.failure_reason(exc)
        termination.on_failure(peer, reason, detail)
        connection.close()
        return None
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    try:
        extension = tls_listener.tls_extension(transport.get_extra_info("ssl_object"))
    except Exception:  # never let a malformed certificate crash the accept path
        event(log, "tls_extension_failed", logging.ERROR, peer=peer)
        transport.abort()
        return None
    return reader, writer, extension
