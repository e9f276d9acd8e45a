"""The few Hypercorn internals the gateway relies on, checked before use.

Hypercorn is pinned to exactly `PINNED_VERSION` (pyproject.toml). `check_compatible()` refuses to
start when the installed version or the internals moved; tests/unit/test_hypercorn_compat.py fails
on an upgrade, so each upgrade is a deliberate review of this module.

Internals used:
- `hypercorn.asyncio.lifespan.Lifespan`, `hypercorn.asyncio.worker_context.WorkerContext` and
  `hypercorn.asyncio.tcp_server.TCPServer`: the worker's accept loop (`gateway/listener.py`) serves
  plain sockets as Hypercorn's `worker_serve` does and hands TLS streams it terminated itself to
  `TCPServer` (Hypercorn has no way to expose client certificates or failed handshakes).
- `hypercorn.protocol.ws_stream.Handshake`: its `extensions` attribute holds the client's offered
  extensions; clearing it declines permessage-deflate, which Hypercorn otherwise always accepts.
- `hypercorn.config.Config._create_sockets(binds)`: binds listeners the way Hypercorn does.
- `hypercorn.asyncio.run.worker_serve(app, config, *, sockets, shutdown_trigger)`: serves the
  status listener (`gateway/status.py`) on a socket bound by the supervisor.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

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
    from hypercorn.asyncio.lifespan import Lifespan
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.asyncio.worker_context import WorkerContext
    from hypercorn.config import Config
    from hypercorn.protocol import ws_stream

    expected = {
        TCPServer.__init__: [
            "self",
            "app",
            "loop",
            "config",
            "context",
            "state",
            "reader",
            "writer",
        ],
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
    source = inspect.getsource(ws_stream.Handshake.accept)
    if "self.extensions is not None" not in source or "PerMessageDeflate()" not in source:
        raise HypercornIncompatible("hypercorn Handshake.accept no longer negotiates as expected")


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
