"""What answers the charge points' CALLs: the contract, and the embedded central system."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from .certificates import CertificateService
from .embedded.base import EmbeddedContext, EmbeddedSettings, EmbeddedState
from .ocppj.codec import Call, Send
from .ocppj.errors import RpcErrorKind
from .registry import SessionInfo
from .versions.base import OcppVersion

Payload = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A response payload, and work to start once it has been sent (e.g. a CALL of our own)."""

    payload: Payload
    after: Callable[[], Coroutine[Any, Any, None]]


class ActionNotHandled(Exception):
    """The handler knows the action but does not serve it (answered NotSupported)."""


class CallRefused(Exception):
    """The handler answers with a CALLERROR: an RPC error kind (named per version) and why."""

    def __init__(self, kind: RpcErrorKind, description: str, details: Payload | None = None):
        super().__init__(description)
        self.kind = kind
        self.description = description
        self.details = details or {}


class CallHandler(Protocol):
    """Answers a charge point CALL with a response payload, at once or later (awaitable)."""

    def handle(
        self, info: SessionInfo, version: OcppVersion, call: Call
    ) -> Payload | FollowUp | Awaitable[Payload | FollowUp]: ...

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None: ...


class EmbeddedCentralSystem:
    """Answers every charge-point-initiated action from the version's embedded handler table."""

    def __init__(self, settings: EmbeddedSettings, state: EmbeddedState | None = None) -> None:
        self._settings = settings
        self._state = state or EmbeddedState()

    def handle(self, info: SessionInfo, version: OcppVersion, call: Call) -> Payload:
        """The embedded answer to `call` (synchronous: no IO)."""
        handler = version.embedded_handlers.get(call.action)
        if handler is None:
            raise ActionNotHandled(call.action)
        context = EmbeddedContext(info.identity, self._settings, self._state)
        return handler(call.payload, context)

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None:
        """SEND messages need no answer; the embedded system only lets them be logged."""


class GatewayHandler:
    """The gateway's own actions first (certificates), everything else to the inner handler."""

    def __init__(self, inner: CallHandler, certificates: CertificateService) -> None:
        self._inner = inner
        self._certificates = certificates

    def handle(
        self, info: SessionInfo, version: OcppVersion, call: Call
    ) -> Payload | FollowUp | Awaitable[Payload | FollowUp]:
        """SignCertificate is answered by the gateway's CA; the rest by the inner handler."""
        if call.action == "SignCertificate":
            payload, after = self._certificates.sign_certificate(info, version, call.payload)
            return FollowUp(payload, after) if after is not None else payload
        return self._inner.handle(info, version, call)

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None:
        """SEND messages go to the inner handler."""
        self._inner.notify(info, version, send)
