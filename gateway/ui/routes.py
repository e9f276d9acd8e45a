"""The `/ui` WebSocket route (Quart) and the `/console` web page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib.resources import files
from typing import TYPE_CHECKING

from quart import Quart, Response, websocket

from ..logs import event
from .connection import CLOSE_POLICY_VIOLATION, UiConnection
from .protocol import encode, parse_client_message

if TYPE_CHECKING:
    from ..runtime import Gateway

log = logging.getLogger("gateway.ui")
STATIC = files("gateway.ui").joinpath("static")
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def _bearer(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def register_ui(app: Quart, gateway: Gateway) -> None:
    """Add `/ui` and `/console` to the app."""
    service = gateway.ui

    @app.websocket("/ui")
    async def ui_socket() -> Response | None:
        remote = websocket.remote_addr or "unknown"
        header = websocket.headers.get("Authorization")
        token = None
        if header is not None:
            token = service.authenticate(_bearer(header))
            if token is None:
                event(log, "ui_auth_failed", logging.WARNING, remote=remote, via="header")
                return Response(
                    "unauthorized: unknown, expired or revoked token\n",
                    401,
                    {"WWW-Authenticate": 'Bearer realm="ocpp-gateway"'},
                )
        await websocket.accept()
        if token is None:
            token = await _first_message_token(service, gateway, remote)
            if token is None:
                return None
        connection = UiConnection(
            token,
            service,
            gateway.router,
            websocket.send,
            websocket.close,
            gateway.last_message_at,
            gateway.security_actions,
        )
        event(log, "ui_connected", token=token.token_id, role=token.role, remote=remote)
        await websocket.send(
            encode(
                {
                    "type": "welcome",
                    "token_id": token.token_id,
                    "role": token.role,
                    "scopes": list(token.scopes),
                    "expires_at": token.expires_at,
                }
            )
        )
        gateway.router.subscribe(connection.on_event)
        gateway.ui_connections.add(connection)
        writer = asyncio.get_running_loop().create_task(connection.write())
        try:
            while not writer.done():
                await connection.handle(await websocket.receive())
        finally:
            gateway.router.unsubscribe(connection.on_event)
            gateway.ui_connections.discard(connection)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await connection.stop()
            event(log, "ui_disconnected", token=token.token_id, remote=remote)
        return None

    @app.get("/console")
    async def console() -> Response:
        return _static("console.html")

    @app.get("/console/<name>")
    async def console_asset(name: str) -> Response:
        return _static(name)


async def _first_message_token(service, gateway, remote: str):  # type: ignore[no-untyped-def]
    """Browsers cannot set headers: the token comes as the first message, within a deadline."""
    timeout = service.settings.auth_timeout_seconds
    try:
        frame = await asyncio.wait_for(websocket.receive(), timeout)
    except TimeoutError:
        event(log, "ui_auth_failed", logging.WARNING, remote=remote, via="timeout")
        await websocket.close(CLOSE_POLICY_VIOLATION, f"no auth message within {timeout:g} s")
        return None
    message = parse_client_message(frame)
    token = None
    if isinstance(message, dict) and message["type"] == "auth":
        token = service.authenticate(message["token"])
    if token is None:
        event(log, "ui_auth_failed", logging.WARNING, remote=remote, via="message")
        await websocket.close(CLOSE_POLICY_VIOLATION, "authentication failed")
    return token


def _static(name: str) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    resource = STATIC.joinpath(name)
    if suffix not in CONTENT_TYPES or "/" in name or not resource.is_file():
        return Response("not found\n", 404)
    headers = {
        "Content-Type": CONTENT_TYPES[suffix],
        "Cache-Control": "no-cache",
        "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(resource.read_bytes(), 200, headers)
