"""The status routes `/healthz`, `/readyz` and `/metrics`, and the optional status listener.

`StatusRoutes` answers the three paths and passes everything else to the app behind it: in front
of the Quart app when the routes are served on the charge point listeners (`status.bind` empty),
alone (404 for the rest) on the status listener, which `serve_status` runs with Hypercorn on a
socket the supervisor bound once (every worker accepts on it, like on the charge point
listeners; /metrics merges all workers, so any worker's answer is the node's).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from socket import socket
from typing import TYPE_CHECKING, Any

import orjson
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from .cert_expiry import CertificateExpiry
from .metrics import CONTENT_TYPE, exposition
from .readiness import evaluate, facts_of

if TYPE_CHECKING:
    from .runtime import Gateway

log = logging.getLogger("gateway.status")
PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
JSON = b"application/json"
ALLOW = (b"allow", b"GET, HEAD")


class StatusRoutes:
    """ASGI: the status paths here, the rest to `app` (None: 404, as on the status listener)."""

    def __init__(self, app: Any, gateway: Gateway) -> None:
        self._app = app
        self._gateway = gateway
        self._metrics_enabled = gateway.config.status.metrics
        records = gateway.records
        self._expiry = CertificateExpiry(
            Path(gateway.config.tls.certs_dir),
            lambda: gateway.trust.store,
            lambda identity: getattr(records.get(identity), "enabled", False),
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] in PATHS:
            await self._serve(scope, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "http":
            await _respond(send, 404, b"text/plain; charset=utf-8", b"not found\n")
        elif kind == "websocket":  # the status listener serves no WebSocket: 403
            await _refuse_websocket(receive, send)

    async def _serve(self, scope: dict[str, Any], send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(
                send, 405, b"text/plain; charset=utf-8", b"use GET\n", scope, ALLOW
            )  # RFC 9110 15.5.6: a 405 names the methods that are allowed
            return
        path, gateway = scope["path"], self._gateway
        if path == "/healthz":
            body = {"status": "ok", "draining": gateway.draining}
            await _respond(send, 200, JSON, orjson.dumps(body), scope)
        elif path == "/readyz":
            readiness = evaluate(facts_of(gateway))
            status = 200 if readiness.ready else 503
            await _respond(send, status, JSON, orjson.dumps(readiness.body()), scope)
        elif not self._metrics_enabled:
            await _respond(send, 404, b"text/plain; charset=utf-8", b"metrics are off\n", scope)
        else:
            gateway.metrics.sample(gateway)  # this worker's gauges exact at the scrape
            # Merging the workers' files and reading certificates: off the event loop.
            try:
                body = await asyncio.to_thread(exposition, gateway.metrics, self._expiry)
            except Exception:  # an unreadable value file: say so, keep serving
                log.exception("metrics_scrape_failed")
                body = b"metrics unavailable, see the gateway's log\n"
                await _respond(send, 500, b"text/plain; charset=utf-8", body, scope)
                return
            await _respond(send, 200, CONTENT_TYPE.encode(), body, scope)


async def _respond(
    send: Any,
    status: int,
    content_type: bytes,
    body: bytes,
    scope: dict[str, Any] | None = None,
    *extra: tuple[bytes, bytes],
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    head = scope is not None and scope.get("method") == "HEAD"
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _refuse_websocket(receive: Any, send: Any) -> None:
    """Close before accepting: the server answers the upgrade with 403 (ASGI WebSocket spec)."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008})


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def status_hypercorn_config() -> HypercornConfig:
    """Hypercorn's configuration for the status listener: quiet, short timeouts."""
    hc = HypercornConfig()
    hc.accesslog = None
    quiet = logging.getLogger("gateway.status.hypercorn")  # no "Running on ..." lines
    quiet.setLevel(logging.WARNING)
    hc.errorlog = quiet
    hc.include_server_header = False
    hc.keep_alive_timeout = 5.0
    hc.graceful_timeout = 1.0
    return hc


async def serve_status(
    routes: StatusRoutes, sock: socket, shutdown: Callable[[], Awaitable[Any]]
) -> None:
    """Serve `routes` on the status listener `sock` until `shutdown` returns."""
    await worker_serve(
        wrap_app(routes, 0, "asgi"),
        status_hypercorn_config(),
        sockets=Sockets([], [sock], []),
        shutdown_trigger=shutdown,
    )


class StatusListener:
    """The status listener of one worker, served until `stop()`."""

    def __init__(self, gateway: Gateway, sock: socket) -> None:
        self._stop = asyncio.Event()
        routes = StatusRoutes(None, gateway)
        self._task = asyncio.get_running_loop().create_task(self._run(routes, sock))

    async def _run(self, routes: StatusRoutes, sock: socket) -> None:
        try:
            await serve_status(routes, sock, self._stop.wait)
        except Exception:  # the charge point listeners go on; say why this one stopped
            log.exception("status_listener_failed")

    async def stop(self) -> None:
        self._stop.set()
        await self._task
