"""`ConnectionPipe` edge cases, on asyncio's loop and on uvloop (the production loop).

Concurrent writers under backpressure, the read timeout while the reader is busy, TLS records
that arrive with the handshake, post-handshake TLS messages (KeyUpdate, renegotiation), a peer
that leaves without close_notify, and connections that must not outlive their socket.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import shutil
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import transport
from gateway.transport import READ_HIGH_WATER, ConnectionPipe
from security.tls import server_context as production_server_context

from .pipes import Listeners, client_context, make_tls_files, tls_client

uvloop = pytest.importorskip("uvloop")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_runner(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Runs a test body on asyncio's loop or on uvloop, with its listeners closed after it."""
    runner = uvloop.run if request.param == "uvloop" else asyncio.run

    def run_body(body: Callable[..., Any], **fixtures: Any) -> Any:
        async def bounded() -> Any:
            async with Listeners() as listeners:
                return await asyncio.wait_for(body(listeners.start, **fixtures), 30)

        return runner(bounded())

    return run_body


def on_both_loops(body: Callable[..., Any]) -> Callable[..., Any]:
    """`async def test_x(serve, *fixtures)` becomes a test run on asyncio's loop and on uvloop."""
    fixtures = list(inspect.signature(body).parameters.values())[1:]

    def test(loop_runner: Callable[..., Any], **values: Any) -> None:
        loop_runner(body, **values)

    runner = inspect.Parameter("loop_runner", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    test.__signature__ = inspect.Signature([runner, *fixtures])  # type: ignore[attr-defined]
    test.__name__ = test.__qualname__ = body.__name__
    test.__doc__ = body.__doc__
    return test


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tls_files(tmp_path_factory.mktemp("transport-review-tls"))


def gateway_context(files: dict[str, Path]) -> ssl.SSLContext:
    """The context the gateway's wss listener uses (security.tls.server_context)."""
    return production_server_context([(files["cert"], files["key"])], None)


async def fill_until_writing_pauses(pipe: ConnectionPipe) -> None:
    block = b"z" * 2**20
    for _ in range(64):
        pipe.write(block)
        if pipe.writing_paused:
            return
    raise AssertionError("the transport never paused writing")


# -- writing: every concurrent writer waits its turn and is woken ---------------------------------


@on_both_loops
async def test_every_concurrent_drain_resumes_when_the_peer_reads_again(
    serve: Callable[..., Any],
) -> None:
    """Hypercorn writes from several tasks at once (the app, its ping task, pong/close replies
    from the reading task): each one blocked in drain() must be woken, not only the last."""
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**26)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.transport.pause_reading()
    await fill_until_writing_pauses(pipe)
    app_send = asyncio.create_task(pipe.drain())
    ping_send = asyncio.create_task(pipe.drain())
    await asyncio.sleep(0.05)
    assert not app_send.done() and not ping_send.done()
    writer.transport.resume_reading()
    await asyncio.wait_for(asyncio.gather(app_send, ping_send), 5)
    writer.close()


@on_both_loops
async def test_every_concurrent_drain_fails_when_the_connection_is_lost(
    serve: Callable[..., Any],
) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**26)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.transport.pause_reading()
    await fill_until_writing_pauses(pipe)
    drains = [asyncio.create_task(pipe.drain()) for _ in range(3)]
    await asyncio.sleep(0.05)
    pipe.abort()
    results = await asyncio.wait_for(asyncio.gather(*drains, return_exceptions=True), 5)
    assert all(isinstance(result, ConnectionResetError) for result in results), results
    writer.close()


# -- the read timeout counts only the time spent waiting for the peer -----------------------------


@on_both_loops
async def test_read_timeout_does_not_end_a_peer_held_back_while_the_reader_is_busy(
    serve: Callable[..., Any],
) -> None:
    """A busy reader pauses the socket (flow control): the peer is held back, not silent.
    Hypercorn's TCPServer only times the reads it waits in."""
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    pipe.set_read_timeout(0.5)
    sent = READ_HIGH_WATER * 8
    writer.write(b"y" * sent)
    await asyncio.sleep(1.0)  # the app is busy for twice the read timeout
    received = 0
    while received < sent:
        chunk = await asyncio.wait_for(pipe.read(), 2)
        assert chunk is not None, f"ended after {received} of {sent} bytes"
        received += len(chunk)
    writer.write(b"more")  # the peer is alive: its next bytes are read
    assert await asyncio.wait_for(pipe.read(), 2) == b"more"
    assert not pipe.timed_out
    assert await asyncio.wait_for(pipe.read(), 2) is None  # then real silence ends it
    assert pipe.timed_out
    writer.close()


@on_both_loops
async def test_read_timeout_starts_when_the_reader_waits_not_at_the_last_byte(
    serve: Callable[..., Any],
) -> None:
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    pipe.set_read_timeout(0.5)
    writer.write(b"request")
    assert await asyncio.wait_for(pipe.read(), 2) == b"request"
    await asyncio.sleep(0.8)  # handling the request takes longer than the read timeout
    reading = asyncio.create_task(pipe.read())
    await asyncio.sleep(0.1)
    writer.write(b"next")  # 0.1 s after the reader started waiting: in time
    assert await asyncio.wait_for(reading, 2) == b"next"
    assert not pipe.timed_out
    writer.close()


@on_both_loops
async def test_a_lost_connection_arms_no_read_timer_that_would_keep_it_alive(
    serve: Callable[..., Any],
) -> None:
    """TLS: the peer can leave between the handshake and the first read (`set_read_timeout`)."""
    port, pipes = await serve()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.transport.abort()
    assert await asyncio.wait_for(pipe.read(), 2) is None
    await asyncio.sleep(0.05)
    pipe.set_read_timeout(3600)
    assert pipe._timer is None
    gone = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert gone() is None


def test_connections_of_two_threads_never_see_each_others_plaintext(
    tls_files: dict[str, Path],
) -> None:
    """SSLObject.read releases the GIL: two threads with an event loop each (tests, tools) decrypt
    at the same time, so the scratch buffer must be per thread."""
    size = 8 * 2**20
    foreign: dict[bytes, int] = {}

    async def receive(fill: bytes) -> None:
        async with Listeners() as listeners:
            port, pipes = await listeners.start(gateway_context(tls_files))
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context(tls_files), server_hostname="localhost"
            )
            pipe = await asyncio.wait_for(pipes.get(), 5)
            await pipe.handshake(5)
            writer.write(fill * size)
            received = wrong = 0
            while received < size:
                chunk = await asyncio.wait_for(pipe.read(), 10)
                assert chunk is not None
                received += len(chunk)
                wrong += len(chunk) - chunk.count(fill)
            foreign[fill] = wrong
            writer.close()

    threads = [threading.Thread(target=asyncio.run, args=(receive(fill),)) for fill in (b"a", b"b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert foreign == {b"a": 0, b"b": 0}


# -- TLS records --------------------------------------------------------------------------------


class MemoryClient:
    """A TLS client over memory BIOs on a raw socket: it decides how records share TCP writes."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, context: ssl.SSLContext
    ) -> None:
        self.loop, self.sock = loop, sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    @classmethod
    async def connect(cls, port: int, context: ssl.SSLContext) -> MemoryClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        return cls(loop, sock, context)

    @classmethod
    async def holding_back_finished(
        cls, serve: Callable[..., Any], tls_files: dict[str, Path]
    ) -> tuple[MemoryClient, ConnectionPipe]:
        """A client whose handshake is done but for its last flight, and the server's pipe."""
        port, pipes = await serve(gateway_context(tls_files))
        client = await cls.connect(port, client_context(tls_files))
        pipe = await asyncio.wait_for(pipes.get(), 2)
        await asyncio.wait_for(client.handshake_holding_back_finished(), 5)
        return client, pipe

    async def handshake_holding_back_finished(self) -> None:
        """Run the handshake; the client's last flight stays in the BIO (not sent)."""
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                await self.flush()
                self.incoming.write(await self.loop.sock_recv(self.sock, 65536))

    async def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)


@on_both_loops
async def test_a_pipe_whose_handshake_failed_is_freed_without_the_cycle_collector(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """Scanners and misconfigured charge points fail handshakes all day: each pipe (with its
    OpenSSL state) goes as soon as it is dropped, not at the next full collection."""
    port, pipes = await serve(gateway_context(tls_files))
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    pipe = await asyncio.wait_for(pipes.get(), 2)
    writer.write(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        await pipe.handshake(2)
    except ssl.SSLError:
        pass
    else:
        raise AssertionError("plaintext completed a TLS handshake")
    await asyncio.wait_for(pipe.close(), 2)
    for _ in range(3):
        await asyncio.sleep(0)
    gone = weakref.ref(pipe)
    gc.disable()
    try:
        del pipe
        assert gone() is None
    finally:
        gc.enable()
    writer.close()


@on_both_loops
async def test_application_data_sent_with_the_client_finished_is_not_lost(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    client, pipe = await MemoryClient.holding_back_finished(serve, tls_files)
    client.tls.write(b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n")
    await client.flush()  # Finished and the first request in one TCP write
    await pipe.handshake(2)
    assert await asyncio.wait_for(pipe.read(), 2) == b"GET /ocpp/CP1 HTTP/1.1\r\n\r\n"
    client.sock.close()


@on_both_loops
async def test_decrypted_data_is_immutable_bytes_not_the_shared_scratch_buffer(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """Records of two connections pass through one scratch buffer: what each read returns is
    its own copy (bytes, as Hypercorn's RawData declares), whatever is decrypted after it."""
    port, pipes = await serve(gateway_context(tls_files))
    pairs = []
    for _ in range(2):
        _, writer, pipe = await tls_client(port, pipes, tls_files)
        pairs.append((pipe, writer))
    (first, first_writer), (second, second_writer) = pairs
    first_writer.write(b"a" * 1000)
    got_first = await asyncio.wait_for(first.read(), 2)
    second_writer.write(b"b" * 1000)
    got_second = await asyncio.wait_for(second.read(), 2)
    assert type(got_first) is bytes and type(got_second) is bytes
    assert got_first == b"a" * 1000 and got_second == b"b" * 1000
    for _, writer in pairs:
        writer.close()


@on_both_loops
async def test_a_peer_leaving_without_close_notify_ends_the_stream_after_its_data(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """A TCP FIN without close_notify (truncation) is the end of the stream, not an error."""
    client, pipe = await MemoryClient.holding_back_finished(serve, tls_files)
    client.tls.write(b"last words")
    await client.flush()
    await pipe.handshake(2)
    client.sock.shutdown(socket.SHUT_WR)  # FIN, no close_notify
    assert await asyncio.wait_for(pipe.read(), 2) == b"last words"
    assert await asyncio.wait_for(pipe.read(), 2) is None
    await asyncio.wait_for(pipe.close(), 2)
    client.sock.close()


@on_both_loops
async def test_large_messages_cross_tls_both_ways_under_backpressure(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """Messages far above one TLS record and READ_HIGH_WATER (limits.max_frame_bytes allows
    64 MiB): every byte arrives, in order, both ways."""
    size = 4 * 2**20
    upload = bytes(range(256)) * (size // 256)
    port, pipes = await serve(gateway_context(tls_files))
    reader, writer, pipe = await tls_client(port, pipes, tls_files)
    writer.write(upload)
    received = bytearray()
    while len(received) < size:
        chunk = await asyncio.wait_for(pipe.read(), 5)
        assert chunk is not None
        received += chunk
    assert received == upload
    download = upload[::-1]
    for offset in range(0, size, 2**18):
        pipe.write(download[offset : offset + 2**18])
        if pipe.writing_paused:
            await asyncio.wait_for(pipe.drain(), 5)
    assert await asyncio.wait_for(reader.readexactly(size), 10) == download
    writer.close()


async def openssl_client(port: int, files: dict[str, Path], version: str) -> Any:
    return await asyncio.create_subprocess_exec(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        version,
        "-CAfile",
        str(files["root"]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_line_with(process: Any, needle: bytes) -> bytes:
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 5)
        if needle in line or not line:
            return line


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@on_both_loops
async def test_a_tls13_key_update_requested_by_the_client_is_answered(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """s_client's 'K' sends KeyUpdate(update_requested): the server's own KeyUpdate goes out with
    the next write, and data keeps flowing both ways under the new keys."""
    port, pipes = await serve(gateway_context(tls_files))
    process = await openssl_client(port, tls_files, "-tls1_3")
    try:
        pipe = await asyncio.wait_for(pipes.get(), 5)
        await pipe.handshake(5)
        process.stdin.write(b"before\n")
        assert await asyncio.wait_for(pipe.read(), 5) == b"before\n"
        process.stdin.write(b"K\n")  # KEYUPDATE, update requested
        await asyncio.sleep(0.2)
        process.stdin.write(b"after\n")
        assert await asyncio.wait_for(pipe.read(), 5) == b"after\n"
        pipe.write(b"answer\n")
        assert b"answer" in await read_line_with(process, b"answer")
        process.stdin.close()
        assert await asyncio.wait_for(pipe.read(), 5) is None  # its close_notify
        await asyncio.wait_for(pipe.close(), 2)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert b"KEYUPDATE" in await process.stderr.read()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@on_both_loops
async def test_client_initiated_tls12_renegotiation_is_refused_and_ends_the_connection(
    serve: Callable[..., Any], tls_files: dict[str, Path]
) -> None:
    """OP_NO_RENEGOTIATION: the server answers no_renegotiation; the peer gives up. The pipe
    reports the end of the stream and closes; nothing raises into the event loop."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    port, pipes = await serve(gateway_context(tls_files))
    process = await openssl_client(port, tls_files, "-tls1_2")
    try:
        pipe = await asyncio.wait_for(pipes.get(), 5)
        await pipe.handshake(5)
        process.stdin.write(b"R\n")  # RENEGOTIATING
        assert await asyncio.wait_for(pipe.read(), 5) is None
        with pytest.raises(ConnectionResetError):
            pipe.write(b"late")
        await asyncio.wait_for(pipe.close(), 2)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert loop_errors == []


@on_both_loops
async def test_an_exception_inside_data_received_closes_the_connection_instead_of_hanging(
    serve: Callable[..., Any], tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both loops turn an error in a protocol callback into a fatal error that closes the
    transport: the reader sees the end of the stream."""
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: loop_errors.append(context))
    port, pipes = await serve(gateway_context(tls_files))
    _, writer, pipe = await tls_client(port, pipes, tls_files)

    def broken(self: Any, data: bytes) -> tuple[bytes, bool]:
        raise ValueError("bug")

    monkeypatch.setattr(transport._Tls, "receive", broken)
    writer.write(b"anything")
    assert await asyncio.wait_for(pipe.read(), 2) is None
    assert [type(error.get("exception")) for error in loop_errors] == [ValueError]
    writer.close()
