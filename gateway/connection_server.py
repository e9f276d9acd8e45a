"""One connection served by Hypercorn's HTTP/1.1 and WebSocket code over a `ConnectionPipe`.

This is Hypercorn's asyncio `TCPServer` (0.18.0) with the same protocol stack (`ProtocolWrapper`:
h11 then wsproto, the ASGI app in Hypercorn's task group, its keep-alive idle task) but without
asyncio streams: reads come from the pipe (no `wait_for` per read, the read timeout is a timer),
writes go straight to the transport and wait only when its buffer is full. TLS is terminated by
the pipe (`gateway/transport.py`).

One deliberate difference: a WebSocket's ping loop ends with its connection. Hypercorn's loop
(`WSStream._send_pings`, started through `TaskGroup.spawn`) notices that its stream closed only
after sleeping a full `websocket_ping_interval`, and the task group, so the whole connection
(pipe, TLS state, protocol objects), stays alive until then: up to a minute per closed
connection, a lot of memory in a reconnect storm.

Hypercorn internals used (pinned, checked by `hypercorn_compat`): `ProtocolWrapper`, `TaskGroup`,
`AsyncioSingleTask`, `ConnectionState`, `parse_socket_addr`, the `RawData`/`Closed`/`Updated`
events, `WSStream` (whose bound methods `TaskGroup.spawn` runs as ping loops).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.worker_context import AsyncioSingleTask, WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr

from .transport import ConnectionPipe


class ConnectionTaskGroup(TaskGroup):
    """Hypercorn's task group for one connection; its WebSocket ping loops end with it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._pings: list[asyncio.Task[Any]] = []  # one per WebSocket stream: a list is smaller
        self._ended = False

    def spawn(self, func: Any, *args: Any) -> None:
        if isinstance(getattr(func, "__self__", None), WSStream):  # a stream's ping loop
            if not self._ended:
                super().spawn(self._ping_loop, func, *args)
            return
        super().spawn(func, *args)

    async def _ping_loop(self, func: Any, *args: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pings.append(task)
        try:
            await func(*args)
        finally:
            self._pings.remove(task)

    def end_pings(self) -> None:
        """The connection is closed: no ping is due (Hypercorn's loop would sleep on)."""
        self._ended = True
        for task in self._pings:
            task.cancel()


class ConnectionServer:
    """Serve one connection until it closes (the counterpart of Hypercorn's `TCPServer`)."""

    __slots__ = (
        "__weakref__",
        "_task_group",
        "app",
        "config",
        "context",
        "idle_task",
        "loop",
        "pipe",
        "protocol",
        "state",
    )

    def __init__(
        self,
        app: Any,
        loop: asyncio.AbstractEventLoop,
        config: Config,
        context: WorkerContext,
        state: dict[str, Any],
        pipe: ConnectionPipe,
    ) -> None:
        self.app = app
        self.loop = loop
        self.config = config
        self.context = context
        self.state = state
        self.pipe = pipe
        self.protocol: ProtocolWrapper | None = None
        self.idle_task = AsyncioSingleTask()
        self._task_group: TaskGroup | None = None

    async def run(self) -> None:
        """Serve until the peer or the app closes the connection."""
        pipe = self.pipe
        try:
            sock = pipe.extra("socket")
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            tls = pipe.tls_object
            alpn = (tls.selected_alpn_protocol() or "http/1.1") if tls is not None else "http/1.1"
            pipe.set_read_timeout(self.config.read_timeout)
            async with ConnectionTaskGroup(self.loop) as task_group:
                self._task_group = task_group
                protocol = self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    tls is not None,
                    client,
                    server,
                    self.protocol_send,
                    alpn,
                )
                await protocol.initiate()
                await self.idle_task.restart(task_group, self._idle_timeout)
                # The read loop runs in this frame (no coroutine of its own per connection).
                while (data := await pipe.read()) is not None:
                    await protocol.handle(RawData(data))
                    data = None  # not held while the connection waits for the next read
                await protocol.handle(Closed())
                task_group.end_pings()
        except OSError:
            pass
        finally:
            await self._close()

    async def protocol_send(self, event: Event) -> None:
        """Hypercorn's protocol sends bytes, closes, or reports whether the connection is idle."""
        if type(event) is RawData:
            pipe = self.pipe
            try:
                pipe.write(event.data)
                if pipe.writing_paused:
                    await pipe.drain()
            except (ConnectionError, RuntimeError):
                await self.protocol.handle(Closed())  # type: ignore[union-attr]
        elif isinstance(event, Closed):
            await self._close()
        elif isinstance(event, Updated):
            if event.idle:
                await self.idle_task.restart(self._task_group, self._idle_timeout)
            else:
                await self.idle_task.stop()

    async def _close(self) -> None:
        try:
            await self.pipe.close()
        except asyncio.CancelledError:
            self.pipe.abort()
        finally:
            await self.idle_task.stop()

    async def _initiate_server_close(self) -> None:
        await self.protocol.handle(Closed())  # type: ignore[union-attr]
        await self.pipe.close()

    async def _idle_timeout(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        await asyncio.shield(self._initiate_server_close())
