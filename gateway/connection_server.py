"""One connection served by Hypercorn's HTTP/1.1 and WebSocket code over a `ConnectionPipe`.

This is Hypercorn's asyncio `TCPServer` (0.18.0) with the same protocol stack (`ProtocolWrapper`:
h11 then wsproto, the ASGI app in Hypercorn's task group, its keep-alive idle task) but without
asyncio streams: reads come from the pipe (no `wait_for` per read, the read timeout is a timer),
writes go straight to the transport and wait only when its buffer is full. TLS is terminated by
the pipe (`gateway/transport.py`).

Two deliberate differences, both for memory per idle connection:
- A WebSocket's keepalive pings come from the worker's `PingScheduler` (`gateway/pings.py`), not
  from a task per connection (`WSStream._send_pings`, started through `TaskGroup.spawn`), and stop
  when the connection ends (Hypercorn's loop noticed a closed stream only a full ping interval
  later, keeping the whole connection alive until then).
- The app's ASGI `receive` queue is an `AppInbox` (`gateway/app_inbox.py`), not an `asyncio.Queue`.

Hypercorn internals used (pinned, checked by `hypercorn_compat`): `ProtocolWrapper`, `TaskGroup`
(and its `spawn_app`, mirrored), `_handle` (the ASGI app call), `AsyncioSingleTask`,
`ConnectionState`, `parse_socket_addr`, the `RawData`/`Closed`/`Updated` events, `WSStream` (whose
bound `_send_pings` `TaskGroup.spawn` is asked to run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio.task_group import TaskGroup, _handle
from hypercorn.asyncio.worker_context import AsyncioSingleTask, WorkerContext
from hypercorn.config import Config
from hypercorn.events import Closed, Event, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import AppWrapper, ASGIReceiveEvent, ASGISendEvent, ConnectionState, Scope
from hypercorn.utils import parse_socket_addr

from .app_inbox import AppInbox
from .pings import PingScheduler
from .transport import ConnectionPipe


class ConnectionTaskGroup(TaskGroup):
    """Hypercorn's task group for one connection, with a lighter app queue and shared pings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pings: PingScheduler | None) -> None:
        super().__init__(loop)
        self._pings = pings
        self._stream: WSStream | None = None  # pinged by the scheduler (HTTP/1.1: one at most)

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        """Hypercorn's `TaskGroup.spawn_app` with an `AppInbox` as the app's queue."""
        inbox = AppInbox(config.max_app_queue_size)
        loop = self._loop

        def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(func(*args), loop).result()

        self.spawn(
            _handle,
            app,
            config,
            scope,
            inbox.get,
            send,
            partial(loop.run_in_executor, None),
            _call_soon,
        )
        return inbox.put

    def spawn(self, func: Any, *args: Any) -> None:
        if getattr(func, "__func__", None) is WSStream._send_pings:  # the scheduler pings instead
            if self._pings is not None:
                self._stream = func.__self__
                self._pings.add(self._stream)
            return
        super().spawn(func, *args)

    def end_pings(self) -> None:
        """The connection is closed: no ping is due."""
        if self._stream is not None and self._pings is not None:
            self._pings.discard(self._stream)
            self._stream = None


class ConnectionServer:
    """Serve one connection until it closes (the counterpart of Hypercorn's `TCPServer`)."""

    __slots__ = (
        "_task_group",
        "app",
        "config",
        "context",
        "idle_task",
        "loop",
        "pings",
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
        pings: PingScheduler | None,
    ) -> None:
        self.app = app
        self.pings = pings  # the worker's (None: no keepalive pings)
        self.loop = loop
        self.config = config
        self.context = context
        self.state = state
        self.pipe = pipe
        self.protocol: ProtocolWrapper | None = None
        self.idle_task = AsyncioSingleTask()
        self._task_group: ConnectionTaskGroup | None = None

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
            async with ConnectionTaskGroup(self.loop, self.pings) as task_group:
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
        except OSError:
            pass
        finally:
            if self._task_group is not None:  # however the connection ended
                self._task_group.end_pings()
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
