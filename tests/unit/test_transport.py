"""`ConnectionPipe` over real loopback sockets: TLS in memory BIOs, timeouts, flow control."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.transport import READ_HIGH_WATER, TlsClosed

from .pipes import Listeners, client_context, make_tls_files, tls_client


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tls_files(tmp_path_factory.mktemp("transport-tls"))


def server_context(files: dict[str, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files["cert"], files["key"])
    return context


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """Start a listener whose accepted connections are `ConnectionPipe`s; yields (port, pipes)."""
    async with Listeners() as listeners:
        yield listeners.start


async def test_plain_bytes_in_order_then_end_of_stream(serve: Callable[..., Any]) -> None:
    port, pipes = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.write(b"GET / HTTP/1.1\r\n")
    assert await asyncio.wait_for(pipe.read(), 2) == b"GET / HTTP/1.1\r\n"
    pipe.write(b"pong")
    assert await asyncio.wait_for(reader.readexactly(4), 2) == b"pong"
    writer.close()
    assert await asyncio.wait_for(pipe.read(), 2) is None


async def test_tls_handshake_data_both_ways_and_close_notify(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    port, pipes = await serve(server_context(tls_files))
    reader, writer, pipe = await tls_client(port, pipes, tls_files)
    assert pipe.tls_object is not None and pipe.tls_object.version() in ("TLSv1.2", "TLSv1.3")
    writer.write(b"x" * 100_000)  # several TLS records, decrypted through the shared scratch
    received = b""
    while len(received) < 100_000:
        chunk = await asyncio.wait_for(pipe.read(), 2)
        assert chunk is not None
        received += chunk
    assert received == b"x" * 100_000
    pipe.write(b"answer")
    assert await asyncio.wait_for(reader.readexactly(6), 2) == b"answer"
    await asyncio.wait_for(pipe.close(), 2)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # a clean close_notify, not a reset


async def test_client_hello_sent_before_the_handshake_is_awaited(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """TLS runs from the first byte: a ClientHello read before `handshake()` is not lost."""
    port, pipes = await serve(server_context(tls_files))
    client = asyncio.create_task(
        asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(tls_files), server_hostname="localhost"
        )
    )
    pipe = await asyncio.wait_for(pipes.get(), 2)
    await asyncio.sleep(0.2)  # the ClientHello arrives while nobody waits for it
    await pipe.handshake(2)
    _, writer = await asyncio.wait_for(client, 2)
    writer.write(b"hello")
    assert await asyncio.wait_for(pipe.read(), 2) == b"hello"
    writer.close()


async def test_plaintext_on_a_tls_pipe_fails_the_handshake_with_an_ssl_error(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    port, pipes = await serve(server_context(tls_files))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.write(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        await pipe.handshake(2)
    assert await asyncio.wait_for(reader.read(), 2) is not None  # closed by the server
    writer.close()


async def test_silent_client_times_out_and_closed_client_is_reported(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    port, pipes = await serve(server_context(tls_files))
    _, silent = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    with pytest.raises(TimeoutError):
        await pipe.handshake(0.2)
    silent.close()
    _, leaving = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    leaving.close()
    with pytest.raises(TlsClosed):
        await pipe.handshake(2)


async def test_read_timeout_ends_a_silent_connection_only(serve: Callable[..., Any]) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    pipe.set_read_timeout(0.3)
    for _ in range(5):  # data every 0.1 s keeps it alive past the timeout
        writer.write(b".")
        assert await asyncio.wait_for(pipe.read(), 1) == b"."
        await asyncio.sleep(0.1)
    assert not pipe.timed_out
    assert await asyncio.wait_for(pipe.read(), 2) is None  # then silence ends it
    assert pipe.timed_out
    writer.close()


async def test_reading_pauses_above_the_high_water_mark_and_resumes(
    serve: Callable[..., Any],
) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.write(b"y" * (READ_HIGH_WATER * 8))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if pipe._reading_paused:
            break
    assert pipe._reading_paused  # the rest waits in the socket buffers
    total = 0
    while total < READ_HIGH_WATER * 8:
        chunk = await asyncio.wait_for(pipe.read(), 2)
        assert chunk is not None
        total += len(chunk)
    assert total == READ_HIGH_WATER * 8
    writer.close()


async def test_drain_waits_for_a_peer_that_does_not_read(serve: Callable[..., Any]) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.transport.pause_reading()  # the client stops reading
    block = b"z" * 2**20
    for _ in range(64):
        pipe.write(block)
        if pipe.writing_paused:
            break
    assert pipe.writing_paused
    drained = asyncio.create_task(pipe.drain())
    await asyncio.sleep(0.1)
    assert not drained.done()
    writer.transport.resume_reading()
    await asyncio.wait_for(drained, 5)
    writer.close()


async def test_writing_after_the_peer_left_raises_connection_reset(
    serve: Callable[..., Any],
) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.close()
    assert await asyncio.wait_for(pipe.read(), 2) is None
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionResetError):
        pipe.write(b"late")
