"""The gateway of one worker process: wires the handshake, sessions, router and handler together.

`serve_charge_point` is the ASGI WebSocket entry of the charge point route; `drain` is the graceful
shutdown (refuse new upgrades, close sessions with 1001, bounded wait).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .config import GatewayConfig
from .connection import (
    CLOSE_GOING_AWAY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    ChargePointConnection,
    ConnectionSettings,
)
from .embedded.base import EmbeddedSettings
from .events import GatewayEvent
from .handler import CallHandler, EmbeddedCentralSystem
from .handshake import (
    Admit,
    HandshakeFacts,
    HandshakePipeline,
    NoCommonVersion,
    OpenPolicy,
    Refuse,
    SecurityPolicy,
)
from .identity import IdentityRules
from .logs import event
from .registry import InMemoryRegistry, SessionInfo, SessionRegistry
from .router import Router
from .session import OcppSession
from .versions import VERSIONS

log = logging.getLogger("gateway")
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: control frame payload <= 125 bytes, 2 for the code


def close_reason(text: str) -> str:
    """`text` cut to what fits a WebSocket close frame, on a character boundary."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class Gateway:
    """Everything one worker needs to serve charge points."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        registry: SessionRegistry | None = None,
        security: SecurityPolicy | None = None,
        handler: CallHandler | None = None,
    ) -> None:
        self.config = config
        self.identity_rules = IdentityRules(
            config.server.path_prefix, config.ocpp.identity_extra_characters
        )
        versions = [VERSIONS[name] for name in config.ocpp.versions]
        self.pipeline = HandshakePipeline(
            self.identity_rules, versions, security or OpenPolicy(), config.ocpp.validation
        )
        self.registry = registry or InMemoryRegistry()
        self.router = Router(self.registry)
        self.handler = handler or EmbeddedCentralSystem(
            EmbeddedSettings(
                boot_status=config.embedded.boot_status,
                heartbeat_interval_s=config.embedded.heartbeat_interval_seconds,
            )
        )
        self.connection_settings = ConnectionSettings(
            call_timeout=config.limits.call_timeout_seconds,
            close_timeout=config.limits.close_timeout_seconds,
        )
        self.draining = False

    async def serve_charge_point(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI WebSocket application of the charge point route."""
        if (await receive())["type"] != "websocket.connect":
            return
        client = scope.get("client")
        remote = f"{client[0]}:{client[1]}" if client else "unknown"
        if self.draining:
            refusal = Refuse(
                503,
                "draining",
                "the gateway is shutting down: reconnect to another node",
                headers=((b"retry-after", b"5"),),
            )
            await self._refuse(send, refusal, remote)
            return
        facts = HandshakeFacts(
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            subprotocols=tuple(scope.get("subprotocols") or ()),
            headers=tuple(scope.get("headers") or ()),
            client=remote,
            scheme=scope.get("scheme", "ws"),
        )
        verdict = self.pipeline.evaluate(facts)
        if isinstance(verdict, Refuse):
            await self._refuse(send, verdict, remote)
        elif isinstance(verdict, NoCommonVersion):
            event(
                log,
                "handshake_refused",
                logging.WARNING,
                identity=verdict.identity,
                remote=remote,
                status=101,
                reason="no_common_version",
                detail=verdict.detail,
            )
            await send({"type": "websocket.accept"})  # no Sec-WebSocket-Protocol header
            await send(
                {
                    "type": "websocket.close",
                    "code": CLOSE_PROTOCOL_ERROR,
                    "reason": close_reason(verdict.detail),
                }
            )
        else:
            await self._serve(verdict, remote, send, receive)

    async def _serve(self, admit: Admit, remote: str, send: Any, receive: Any) -> None:
        version = admit.version
        await send({"type": "websocket.accept", "subprotocol": version.subprotocol})
        info = SessionInfo(admit.identity, version.subprotocol, time.time(), remote, admit.profile)
        session = OcppSession(
            admit.identity,
            version,
            self.registry.boot_record(admit.identity),
            validation=admit.validation,
            max_bad_messages=self.config.limits.max_bad_messages,
            gate_unknown_boot=self.config.ocpp.gate_unknown_boot,
        )
        connection = ChargePointConnection(
            info, session, send, self.handler, self.router, self.connection_settings
        )
        previous = self.registry.claim(connection)
        event(
            log,
            "connected",
            identity=admit.identity,
            remote=remote,
            subprotocol=version.subprotocol,
            profile=admit.profile,
            validation=admit.validation,
        )
        if previous is not None:
            event(
                log,
                "session_replaced",
                identity=admit.identity,
                old_remote=previous.info.remote,
                new_remote=remote,
            )
            await previous.close(CLOSE_REPLACED, "replaced by a newer connection of this identity")
        if self.router.has_listeners:
            self.router.publish(
                GatewayEvent("connected", admit.identity, version.subprotocol, info.connected_at)
            )
        code = 1006
        try:
            code = await connection.run(receive)
        finally:
            self.registry.release(connection)
            event(
                log,
                "disconnected",
                identity=admit.identity,
                remote=remote,
                code=connection.close_code or code,
                seconds=round(time.time() - info.connected_at, 3),
            )
            if self.router.has_listeners:
                self.router.publish(
                    GatewayEvent(
                        "disconnected",
                        admit.identity,
                        version.subprotocol,
                        time.time(),
                        close_code=code,
                    )
                )

    async def _refuse(self, send: Any, refusal: Refuse, remote: str) -> None:
        event(
            log,
            "handshake_refused",
            logging.WARNING,
            identity=refusal.identity,
            remote=remote,
            status=refusal.status,
            reason=refusal.reason,
            detail=refusal.detail,
        )
        body = (refusal.detail + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *refusal.headers,
        ]
        await send(
            {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})

    async def drain(self, timeout: float) -> None:
        """Refuse new upgrades, close every session with 1001, wait for them (at most `timeout`)."""
        self.draining = True
        sessions = self.registry.local_sessions()
        event(log, "drain_started", sessions=len(sessions), timeout=timeout)
        await asyncio.gather(
            *(s.close(CLOSE_GOING_AWAY, "the gateway is shutting down") for s in sessions),
            return_exceptions=True,
        )
        deadline = time.monotonic() + timeout
        while self.registry.local_sessions() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        event(log, "drain_finished", remaining=len(self.registry.local_sessions()))
