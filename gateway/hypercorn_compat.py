"""The few Hypercorn internals the gateway relies on, checked before use.

Hypercorn is pinned to exactly `PINNED_VERSION` (pyproject.toml). `check_compatible()` refuses to
start when the installed version or the internals moved; tests/unit/test_hypercorn_compat.py fails
on an upgrade, so each upgrade is a deliberate review of this module.

Internals used:
- `hypercorn.asyncio.run.worker_serve(app, config, *, sockets, shutdown_trigger)`: serve sockets
  created once by the supervisor in every worker, with our own drain as the shutdown trigger.
- `hypercorn.protocol.ws_stream.Handshake`: its `extensions` attribute holds the client's offered
  extensions; clearing it declines permessage-deflate, which Hypercorn otherwise always accepts.
- `hypercorn.config.Config._create_sockets(binds)`: binds listeners the way Hypercorn does.
- `hypercorn.asyncio.tcp_server.TCPServer.run` reading `self.writer` and `self.app`: the gateway
  terminates TLS at its start (`gateway/tls_listener.py`) and wraps `self.app` per connection.
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
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.protocol import ws_stream

    params = inspect.signature(worker_serve).parameters
    if not {"app", "config", "sockets", "shutdown_trigger"} <= set(params):
        raise HypercornIncompatible("hypercorn.asyncio.run.worker_serve changed its signature")
    handshake_init = inspect.signature(ws_stream.Handshake.__init__).parameters
    if list(handshake_init) != ["self", "headers", "http_version"]:
        raise HypercornIncompatible("hypercorn Handshake.__init__ changed its signature")
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.config import Config

    if not callable(getattr(Config, "_create_sockets", None)):
        raise HypercornIncompatible("hypercorn Config._create_sockets is gone")
    from . import tls_listener

    run = tls_listener.original_run() or TCPServer.run
    run_source = inspect.getsource(run)
    if 'self.writer.get_extra_info("ssl_object")' not in run_source or "self.app" not in run_source:
        raise HypercornIncompatible(
            "hypercorn TCPServer.run no longer reads writer/app as expected"
        )
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
