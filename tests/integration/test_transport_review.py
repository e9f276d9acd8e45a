"""Closed connections leave nothing behind: no pipe, no connection server, no file descriptor.

One in-process gateway (ws and wss) serves 200 connections that end every way a connection can:
a WebSocket session closed by the charge point, a TCP connection closed before its first byte,
a wss session, plaintext on the wss port, a TLS handshake cut off by a reset. Afterwards the
number of live `ConnectionPipe` and `ConnectionServer` objects is back to zero (once the cycle
collector ran) and so is the number of open file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

from gateway.connection_server import ConnectionServer
from gateway.transport import ConnectionPipe


def live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), kind))  # proxies too


def nothing_left() -> bool:
    gc.collect()
    return live(ConnectionPipe) == 0 and live(ConnectionServer) == 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def ws_session(url: str, context: ssl.SSLContext | None = None) -> None:
    """A WebSocket session closed normally by the client (or refused by the gateway)."""
    with contextlib.suppress(websockets.InvalidStatus):
        async with websockets.connect(url, subprotocols=["ocpp1.6"], ssl=context, open_timeout=5):
            pass


async def tcp_only(port: int) -> None:
    """Connect and leave without a byte."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()


async def plaintext_on_tls(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /ocpp/CP HTTP/1.1\r\nHost: x\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(reader.read(), 5)
    writer.close()


async def reset_mid_handshake(port: int) -> None:
    """A ClientHello, then a TCP reset (SO_LINGER 0) before the handshake ends."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    hello = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="localhost"
    )
    with contextlib.suppress(ssl.SSLWantReadError):
        hello.do_handshake()
    await loop.sock_sendall(sock, outgoing.read())
    await asyncio.sleep(0.01)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def test_two_hundred_closed_connections_leave_no_pipe_server_or_descriptor(
    start_gateway: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    server = await start_gateway(
        tls={"wss_bind": ["127.0.0.1:0"], "certs_dir": str(certs)},
        security={"records_file": "", "dev_auto_register": True, "max_auth_failures": 0},
    )
    trusting = ssl.create_default_context(cafile=str(certs / "trust" / "dev-root.pem"))
    assert server.wss_port is not None
    await ws_session(server.url("WARMUP"))  # lazily created state is not a leak
    assert await until(nothing_left), (live(ConnectionPipe), live(ConnectionServer))
    fds_before = open_fds()

    endings: list[Callable[[int], Awaitable[None]]] = [
        lambda i: ws_session(server.url(f"WS{i}")),
        lambda i: tcp_only(server.port),
        lambda i: ws_session(server.wss_url(f"WSS{i}"), trusting),
        lambda i: plaintext_on_tls(server.wss_port),  # type: ignore[arg-type]
        lambda i: reset_mid_handshake(server.wss_port),  # type: ignore[arg-type]
    ]
    for batch in range(0, 200, 10):  # a few at a time: CI shares the machine
        await asyncio.gather(*(endings[i % 5](i) for i in range(batch, batch + 10)))

    assert await until(nothing_left), (live(ConnectionPipe), live(ConnectionServer))
    assert await until(lambda: open_fds() <= fds_before), (open_fds(), fds_before)


async def test_a_closed_websocket_is_released_before_its_next_ping_is_due(
    start_gateway: Callable[..., Awaitable[Any]],
) -> None:
    """Hypercorn's ping loop sleeps a full interval (60 s here) before it sees the close: the
    connection's task group, pipe and protocol objects must not wait for it."""
    server = await start_gateway(limits={"ping_interval_seconds": 60})
    await ws_session(server.url("BRIEF"))
    assert await until(nothing_left, 5), (live(ConnectionPipe), live(ConnectionServer))
