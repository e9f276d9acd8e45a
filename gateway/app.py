"""The ASGI application: the Quart app, with the charge point route in front of it.

Charge point WebSockets under the path prefix go straight to the lean OCPP handler (no per-message
framework machinery on the hot path); `/healthz`, `/readyz` and `/metrics` go to `StatusRoutes`
(unless `status.bind` moves them to the status listener); everything else (the UI API and
console) is served by Quart.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from quart import Quart

from . import __version__
from .config import GatewayConfig
from .runtime import Gateway
from .status import StatusRoutes
from .ui.routes import register_ui

EXTENSION_KEY = "ocpp_gateway"


class ChargePointRoute:
    """ASGI middleware: sends the charge point route to the gateway, the rest to Quart."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self._app = app
        self._gateway = gateway
        self._matches = gateway.identity_rules.matches

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        """The awaitable that serves `scope`, returned rather than awaited here: no coroutine
        frame of this route stays alive for as long as a charge point is connected."""
        kind = scope["type"]
        if kind != "lifespan" and self._matches(scope.get("raw_path") or scope["path"].encode()):
            if kind == "websocket":
                return self._gateway.serve_charge_point(scope, receive, send)
            return _upgrade_required(send)
        return self._app(scope, receive, send)


async def _upgrade_required(send: Any) -> None:
    body = b"this is an OCPP-J WebSocket endpoint: connect with ws:// or wss://\n"
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(config: GatewayConfig, gateway: Gateway | None = None) -> Quart:
    """The gateway's Quart application for one worker."""
    gateway = gateway or Gateway(config)
    app = Quart("ocpp_gateway")
    app.extensions[EXTENSION_KEY] = gateway
    if not config.status.bind:  # else on the status listener only (gateway/status.py)
        app.asgi_app = StatusRoutes(app.asgi_app, gateway)  # type: ignore[method-assign]
    app.asgi_app = ChargePointRoute(app.asgi_app, gateway)  # type: ignore[method-assign]

    register_ui(app, gateway)

    @app.get("/")
    async def index() -> dict[str, Any]:
        return {
            "service": "ocpp-gateway",
            "version": __version__,
            "charge_point_url": f"{config.server.path_prefix}/{{chargePointId}}",
            "subprotocols": list(config.ocpp.versions),
        }

    return app


def gateway_of(app: Quart) -> Gateway:
    """The `Gateway` behind an app made by `create_app`."""
    return app.extensions[EXTENSION_KEY]
