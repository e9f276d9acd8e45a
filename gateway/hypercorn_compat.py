"""The few Hypercorn internals the gateway relies on, checked before use.

Hypercorn is pinned to exactly `PINNED_VERSION` (pyproject.toml). `check_compatible()` refuses to
start when the installed version or the internals moved; tests/unit/test_hypercorn_compat.py fails
on an upgrade, so each upgrade is a deliberate review of this module.

Internals used:
- `hypercorn.asyncio.lifespan.Lifespan`, `hypercorn.asyncio.worker_context.WorkerContext`: the
  worker's accept loop (`gateway/listener.py`) runs the app's lifespan as `worker_serve` does.
- `hypercorn.protocol.ProtocolWrapper`, `hypercorn.asyncio.task_group.TaskGroup`,
  `AsyncioSingleTask`, `hypercorn.utils.parse_socket_addr` and the `RawData`/`Closed`/`Updated`
  events: `gateway/connection_server.py` serves each connection with Hypercorn's protocol stack
  as `hypercorn.asyncio.tcp_server.TCPServer` does, over the gateway's own transport (no asyncio
  streams; TLS terminated by the gateway, which Hypercorn cannot report or expose).
- `hypercorn.protocol.ws_stream.Handshake`: its `extensions` attribute holds the client's offered
  extensions; clearing it declines permessage-deflate, which Hypercorn otherwise always accepts.
- `hypercorn.protocol.ws_stream.Connection` (the wsproto class `Handshake.accept` instantiates)
  and `WSStream.handle`: Hypercorn reports every close the app did not start as 1006 (abnormal);
  `report_peer_close_codes()` records the code of the peer's close frame and reports that one.
- `hypercorn.config.Config._create_sockets(binds)`: binds listeners the way Hypercorn does.
- `hypercorn.asyncio.run.worker_serve(app, config, *, sockets, shutdown_trigger)`: serves the
  status listener (`gateway/status.py`) on a socket bound by the supervisor.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

PINNED_VERSION = "0.18.0"


class HypercornIncompatible(RuntimeError):
    """The installed Hypercorn is not the one this gateway was reviewed against."""


def check_compatible() -> None:
    """Raise `HypercornIncompatible` unless the pinned Hypercorn and its internals are present."""
    installed = version("hypercorn")
    if installed != PINNED_VERSION:
        raise HypercornIncompatible(
            f"hypercorn {installed} is installed but the gateway is pinned to {PINNED_VERSION}: "
            "install the pinned version (pip install -e .) or review gateway/hypercorn_compat.py"
        )
    from hypercorn import events
    from hypercorn.asyncio.lifespan import Lifespan
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.asyncio.task_group import TaskGroup, _handle
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.asyncio.worker_context import AsyncioSingleTask, WorkerContext
    from hypercorn.config import Config
    from hypercorn.protocol import ProtocolWrapper, ws_stream
    from hypercorn.utils import parse_socket_addr

    expected = {
        ProtocolWrapper.__init__: [
            "self",
            "app",
            "config",
            "context",
            "task_group",
            "state",
            "ssl",
            "client",
            "server",
            "send",
            "alpn_protocol",
        ],
        TaskGroup.__init__: ["self", "loop"],
        TaskGroup.spawn_app: ["self", "app", "config", "scope", "send"],
        _handle: ["app", "config", "scope", "receive", "send", "sync_spawn", "call_soon"],
        ws_stream.WSStream._send_wsproto_event: ["self", "event"],
        AsyncioSingleTask.restart: ["self", "task_group", "action"],
        parse_socket_addr: ["family", "address"],
        Lifespan.__init__: ["self", "app", "config", "loop", "lifespan_state"],
        WorkerContext.__init__: ["self", "max_requests"],
        ws_stream.Handshake.__init__: ["self", "headers", "http_version"],
        worker_serve: ["app", "config", "sockets", "shutdown_trigger"],
    }
    for function, parameters in expected.items():
        if list(inspect.signature(function).parameters) != parameters:
            raise HypercornIncompatible(f"hypercorn {function.__qualname__} changed its signature")
    for name in ("handle_lifespan", "wait_for_startup", "wait_for_shutdown"):
        if not callable(getattr(Lifespan, name, None)):
            raise HypercornIncompatible(f"hypercorn Lifespan.{name} is gone")
    if not callable(getattr(Config, "_create_sockets", None)):
        raise HypercornIncompatible("hypercorn Config._create_sockets is gone")
    for name in ("RawData", "Closed", "Updated"):
        if not isinstance(getattr(events, name, None), type):
            raise HypercornIncompatible(f"hypercorn events.{name} is gone")
    # connection_server mirrors TCPServer: a change there needs the same change in the mirror
    mirrored = inspect.getsource(TCPServer)
    for needle in (
        "self.protocol = ProtocolWrapper(",
        "await self.protocol.initiate()",
        "await self.idle_task.restart(task_group, self._idle_timeout)",
        "if event.idle:",
        "await self.protocol.handle(Closed())",
        "self.config.keep_alive_timeout",
    ):
        if needle not in mirrored:
            raise HypercornIncompatible("hypercorn TCPServer changed: review connection_server")
    handle = inspect.getsource(_original_stream_handle or ws_stream.WSStream.handle)
    if "code = CloseReason.ABNORMAL_CLOSURE.value" not in handle or "StreamClosed" not in handle:
        raise HypercornIncompatible("hypercorn WSStream.handle no longer closes as expected")
    source = inspect.getsource(ws_stream.Handshake.accept)
    if "self.extensions is not None" not in source or "PerMessageDeflate()" not in source:
        raise HypercornIncompatible("hypercorn Handshake.accept no longer negotiates as expected")
    if "Connection(ConnectionType.SERVER" not in source:
        raise HypercornIncompatible("hypercorn Handshake.accept no longer makes the connection")
    handle_events = inspect.getsource(ws_stream.WSStream._handle_events)
    if "self.connection.state == ConnectionState.REMOTE_CLOSING" not in handle_events:
        raise HypercornIncompatible("hypercorn WSStream no longer answers close frames as expected")
    if "self.task_group.spawn(self._send_pings)" not in inspect.getsource(ws_stream.WSStream):
        raise HypercornIncompatible("hypercorn WSStream no longer spawns its ping loop")
    pings = inspect.getsource(ws_stream.WSStream._send_pings)
    if "while not self.closed:" not in pings or "self._send_wsproto_event(Ping())" not in pings:
        raise HypercornIncompatible("hypercorn WSStream pings differently: review gateway/pings.py")
    # connection_server.ConnectionTaskGroup.spawn_app mirrors it with an AppInbox for the queue
    spawn_app = inspect.getsource(TaskGroup.spawn_app)
    for needle in (
        "asyncio.Queue(config.max_app_queue_size)",
        "app_queue.get,",
        "partial(self._loop.run_in_executor, None)",
        "return app_queue.put",
    ):
        if needle not in spawn_app:
            raise HypercornIncompatible("hypercorn TaskGroup.spawn_app changed: review the mirror")


_original_handshake_init = None


def set_permessage_deflate(enabled: bool) -> None:
    """Accept or decline permessage-deflate on every WebSocket handshake of this process."""
    global _original_handshake_init
    from hypercorn.protocol import ws_stream

    if _original_handshake_init is None:
        _original_handshake_init = ws_stream.Handshake.__init__
    original = _original_handshake_init
    if enabled:
        ws_stream.Handshake.__init__ = original  # type: ignore[method-assign]
        return

    def init_without_extensions(
        self: ws_stream.Handshake, headers: list, http_version: str
    ) -> None:
        original(self, headers, http_version)
        self.extensions = None

    ws_stream.Handshake.__init__ = init_without_extensions  # type: ignore[method-assign]


_original_stream_handle = None


def report_peer_close_codes() -> None:
    """Report the peer's close code (e.g. 1000) to the app instead of Hypercorn's 1006."""
    global _original_stream_handle
    from hypercorn.protocol import ws_stream
    from hypercorn.protocol.events import StreamClosed
    from wsproto.connection import Connection
    from wsproto.connection import ConnectionState as WsState
    from wsproto.events import CloseConnection

    if _original_stream_handle is not None:
        return

    class PeerCloseRecordingConnection(Connection):
        """Records the code of the peer's close frame when Hypercorn echoes it (only a peer's
        close frame puts the connection in REMOTE_CLOSING; a malformed frame does not). Hooked
        on `send` (one type check per frame sent, about 0.2 us), not on the `events()`
        generator, which would cost a generator per frame received."""

        peer_close_code: int | None = None

        def send(self, event: Any) -> bytes:
            if type(event) is CloseConnection and self.state is WsState.REMOTE_CLOSING:
                self.peer_close_code = event.code
            return super().send(event)

    original = _original_stream_handle = ws_stream.WSStream.handle
    app_closed = {ws_stream.ASGIWebsocketState.HTTPCLOSED, ws_stream.ASGIWebsocketState.CLOSED}

    async def handle(self: ws_stream.WSStream, event: Any) -> None:
        if isinstance(event, StreamClosed) and self.app_put is not None and not self.closed:
            code = getattr(getattr(self, "connection", None), "peer_close_code", None)
            if code is not None and self.state not in app_closed:  # the peer closed first
                self.closed = True
                await self.app_put({"type": "websocket.disconnect", "code": int(code)})
                return
        await original(self, event)

    ws_stream.Connection = PeerCloseRecordingConnection  # type: ignore[misc]
    ws_stream.WSStream.handle = handle  # type: ignore[method-assign]
