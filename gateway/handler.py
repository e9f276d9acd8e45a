"""What answers the charge points' CALLs: the contract, and the embedded central system."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from .embedded.base import EmbeddedContext, EmbeddedSettings, EmbeddedState
from .ocppj.codec import Call, Send
from .registry import SessionInfo
from .versions.base import OcppVersion

Payload = dict[str, Any]


class ActionNotHandled(Exception):
    """The handler knows the action but does not serve it (answered NotSupported)."""


class CallHandler(Protocol):
    """Answers a charge point CALL with a response payload, at once or later (awaitable)."""

    def handle(
        self, info: SessionInfo, version: OcppVersion, call: Call
    ) -> Payload | Awaitable[Payload]: ...

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None: ...


class EmbeddedCentralSystem:
    """Answers every charge-point-initiated action from the version's embedded handler table."""

    def __init__(self, settings: EmbeddedSettings) -> None:
        self._settings = settings
        self._state = EmbeddedState()

    def handle(self, info: SessionInfo, version: OcppVersion, call: Call) -> Payload:
        """The embedded answer to `call` (synchronous: no IO)."""
        handler = version.embedded_handlers.get(call.action)
        if handler is None:
            raise ActionNotHandled(call.action)
        context = EmbeddedContext(info.identity, self._settings, self._state)
        return handler(call.payload, context)

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None:
        """SEND messages need no answer; the embedded system only lets them be logged."""
