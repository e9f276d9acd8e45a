"""Bytes in and out of one accepted TCP connection: an asyncio `Protocol`, TLS in memory BIOs.

`ConnectionPipe` is what Hypercorn's connection handling reads from and writes to
(`gateway/connection_server.py`), in place of the asyncio streams Hypercorn's own `TCPServer`
uses. Per connection it holds the transport, the plaintext not yet read and, for wss, an
`ssl.SSLObject` over two memory BIOs:

- no per-connection read buffer: uvloop reads into one loop-wide buffer, decrypted records go
  through one scratch buffer per thread (`SSLObject.read` releases the GIL, so two threads with
  an event loop each must not share one), and OpenSSL releases its record buffers between
  records (CPython sets `SSL_MODE_RELEASE_BUFFERS`). An idle wss
  connection costs a few KiB of TLS state instead of the 175-250 KiB of the event loop's TLS
  transports (their read buffers are per connection);
- no `wait_for` per read: a read timeout is one timer per connection, re-armed lazily; like
  Hypercorn's `wait_for(reader.read(), read_timeout)` it counts only the time a reader waits;
- flow control both ways: reading pauses above `READ_HIGH_WATER` buffered bytes, `drain()` waits
  (in every task that writes) while the transport's write buffer is above its high-water mark.

Pure asyncio and `ssl`: nothing here knows HTTP or OCPP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from typing import Any

READ_HIGH_WATER = 2**16  # plaintext bytes buffered before the socket stops being read
TLS_RECORD_SCRATCH = 2**16  # one decrypt buffer shared by every connection of a thread's loop


class _Scratch(threading.local):
    """The thread's decrypt buffer: OpenSSL writes into it without the GIL."""

    def __init__(self) -> None:
        self.buffer = bytearray(TLS_RECORD_SCRATCH)
        self.view = memoryview(self.buffer)


_scratch = _Scratch()


class TlsClosed(ConnectionResetError):
    """The peer went away before the TLS handshake completed."""


class _Tls:
    """The server side of one TLS connection over memory BIOs (no IO of its own)."""

    __slots__ = ("established", "incoming", "object", "outgoing")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.object = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.established = False

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """Feed ciphertext; return (plaintext, peer closed). Raises `ssl.SSLError` on failure."""
        self.incoming.write(data)
        tls = self.object
        if not self.established:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                return b"", False
            self.established = True
        scratch = _scratch
        buffer, view = scratch.buffer, scratch.view
        incoming = self.incoming
        chunks = []
        try:
            while True:
                size = tls.read(TLS_RECORD_SCRATCH, buffer)
                if not size:
                    return b"".join(chunks), True
                chunks.append(bytes(view[:size]))  # a copy: the buffer is reused at once
                if not incoming.pending and not tls.pending():
                    break  # all read: no read that can only raise SSLWantReadError
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:  # close_notify
            return b"".join(chunks), True
        if len(chunks) == 1:
            return chunks[0], False
        return b"".join(chunks), False

    def send(self, data: bytes) -> bytes:
        """Encrypt `data`; the ciphertext to write."""
        self.object.write(data)
        return self.outgoing.read()

    def pending_output(self) -> bytes:
        """Handshake messages, session tickets or alerts waiting to be written."""
        return self.outgoing.read() if self.outgoing.pending else b""

    def close_notify(self) -> bytes:
        """Our close_notify alert (without waiting for the peer's)."""
        with contextlib.suppress(ssl.SSLError, ValueError):  # the peer's is not awaited
            self.object.unwrap()
        return self.pending_output()


class ConnectionPipe(asyncio.Protocol):
    """Plaintext in and out of one connection (TLS terminated here when started)."""

    __slots__ = (
        "__weakref__",
        "_buffered",
        "_chunks",
        "_drain_waiters",
        "_eof",
        "_last_read",
        "_loop",
        "_lost",
        "_read_timeout",
        "_reading_paused",
        "_timer",
        "_tls",
        "_tls_error",
        "_waiter",
        "timed_out",
        "transport",
        "writing_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, tls: ssl.SSLContext | None = None) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None  # the one reader (or handshake) waiting
        self._drain_waiters: list[asyncio.Future[None]] = []  # every task waiting in drain()
        self._reading_paused = False
        self.writing_paused = False  # the transport's write buffer is above its high-water mark
        self._eof = False  # nothing more will be read: EOF, close_notify, timeout or lost
        self._lost: asyncio.Future[None] = loop.create_future()
        self._tls = _Tls(tls) if tls is not None else None  # TLS from the first byte
        self._tls_error: BaseException | None = None
        self._read_timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0
        self.timed_out = False

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._read_timeout is not None:
            self._last_read = self._loop.time()
        tls = self._tls
        if tls is not None:
            was_established = tls.established
            try:
                data, closed = tls.receive(data)
            except ssl.SSLError as exc:
                self._fail_tls(exc)
                return
            self._flush_tls()
            if closed:
                self._eof = True
            if not was_established and tls.established:
                self._wake()  # the handshake is done
            if not data:
                if closed:
                    self._wake()
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if self._timer is not None:
            self._timer.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake()
        self._wake_drains()  # they raise ConnectionResetError

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_drains()

    def _wake_drains(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- TLS ---------------------------------------------------------------------------------------

    async def handshake(self, timeout: float) -> None:
        """Wait for the server side of the TLS handshake to complete; raises `ssl.SSLError`,
        `TimeoutError` or `TlsClosed`."""
        tls = self._tls
        if tls is None:
            raise RuntimeError("this connection has no TLS")
        async with asyncio.timeout(timeout):
            while not tls.established:
                if self._tls_error is not None:
                    self._raise_tls_error()
                if self._eof:
                    raise TlsClosed("the peer closed the connection during the TLS handshake")
                await self._wait()

    @property
    def tls_object(self) -> ssl.SSLObject | None:
        """The established TLS connection (peer certificate, version, cipher), if any."""
        return self._tls.object if self._tls is not None else None

    def _raise_tls_error(self) -> None:
        """Raise the handshake's error once; the pipe keeps no reference to it, as its
        traceback holds frames that hold the pipe (a cycle only the cycle collector frees)."""
        error, self._tls_error = self._tls_error, None
        try:
            raise error  # type: ignore[misc]
        finally:
            del error

    def _fail_tls(self, exc: BaseException) -> None:
        self._tls_error = exc
        self._eof = True
        self._flush_tls()  # the alert tells the peer why
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _flush_tls(self) -> None:
        output = self._tls.pending_output()  # type: ignore[union-attr]
        if output and self.transport is not None and not self.transport.is_closing():
            self.transport.write(output)

    # -- reading -----------------------------------------------------------------------------------

    def set_read_timeout(self, seconds: float | None) -> None:
        """End reading (as at EOF) once a read waited `seconds` for data (None: never).

        As Hypercorn's `wait_for(reader.read(), read_timeout)`: only the time a reader waits
        counts, not the time it spends elsewhere (the peer is held back meanwhile)."""
        self._read_timeout = seconds
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds and not self._lost.done():  # a timer would only keep a dead pipe alive
            self._last_read = self._loop.time()
            self._timer = self._loop.call_later(seconds, self._check_read_timeout)

    def _check_read_timeout(self) -> None:
        timeout = self._read_timeout
        assert timeout is not None
        if self._waiter is None:  # nobody waits for data: the reader is busy, not the peer idle
            self._timer = self._loop.call_later(timeout, self._check_read_timeout)
            return
        idle = self._loop.time() - self._last_read
        if idle < timeout:
            self._timer = self._loop.call_later(timeout - idle, self._check_read_timeout)
            return
        self._timer = None
        self.timed_out = True
        self._eof = True
        self._wake()

    async def read(self) -> bytes | None:
        """The plaintext received since the last read; None at the end of the stream."""
        if not self._chunks and self._read_timeout is not None:
            self._last_read = self._loop.time()  # the read timeout counts from here
        while not self._chunks:
            if self._eof:
                return None
            # As `_wait()`, inlined: one coroutine less held by every connection waiting here.
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()
        return data

    async def _wait(self) -> None:
        # `read()` has its own copy of these lines (one coroutine frame less): keep them in step.
        waiter = self._waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- writing and closing -----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send `data` (encrypted on wss); raises `ConnectionResetError` once closed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection closed")
        tls = self._tls
        transport.write(tls.send(data) if tls is not None else data)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark.

        Several tasks may wait at once (Hypercorn writes from the app, its ping task and the
        reading task): each waits on its own future, so cancelling one leaves the others."""
        while self.writing_paused:
            if self._lost.done():
                raise ConnectionResetError("connection lost")
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                self._drain_waiters.remove(waiter)

    async def close(self, timeout: float = 5.0) -> None:
        """Close (TLS close_notify first), flushing what is buffered for at most `timeout`."""
        transport = self.transport
        if transport is None:
            return
        if not transport.is_closing():
            if self._tls is not None and self._tls.established:
                try:
                    output = self._tls.close_notify()
                except Exception:  # never let a broken TLS state keep the socket open
                    output = b""
                if output:
                    transport.write(output)
            transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:  # the peer does not read: drop what is left
            transport.abort()

    def abort(self) -> None:
        """Drop the connection at once."""
        if self.transport is not None:
            self.transport.abort()

    def extra(self, name: str) -> Any:
        """The transport's extra info (`socket`, `peername`, `sockname`)."""
        return self.transport.get_extra_info(name) if self.transport is not None else None
