"""Who is connected: live sessions by identity, and each identity's boot status.

`SessionRegistry` is the contract; `InMemoryRegistry` is the embedded implementation (the Redis one
comes with the multi-node issue and must pass the same contract tests).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from .ocppj.codec import CallError, CallResult
from .session import BootRecord


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """The facts of one live charge point session."""

    identity: str
    subprotocol: str
    connected_at: float
    remote: str
    security_profile: int = 0
    certificate_not_after: float | None = None  # profile 3: expiry of the client certificate


class LiveSession(Protocol):
    """A connected charge point, as the registry and router see it."""

    info: SessionInfo

    def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> Awaitable[CallResult | CallError]: ...

    def close(self, code: int, reason: str) -> Awaitable[None]: ...


class SessionRegistry(Protocol):
    """Live sessions by identity; a claim replaces the previous holder."""

    def claim(self, session: LiveSession) -> LiveSession | None:
        """Make `session` the holder of its identity; return the session it replaces."""

    def release(self, session: LiveSession) -> bool:
        """Remove `session` if it still holds its identity (compare-and-delete)."""

    def get(self, identity: str) -> LiveSession | None:
        """The session holding `identity`, if any."""

    def sessions(self) -> list[SessionInfo]:
        """Facts of every live session."""

    def local_sessions(self) -> list[LiveSession]:
        """The live sessions this process serves (for shutdown and reloads)."""

    def boot_record(self, identity: str) -> BootRecord:
        """The boot status record of `identity` (kept across reconnects)."""


class InMemoryRegistry:
    """Process-local registry: the embedded default."""

    def __init__(self) -> None:
        self._live: dict[str, LiveSession] = {}
        self._boots: dict[str, BootRecord] = {}

    def claim(self, session: LiveSession) -> LiveSession | None:
        identity = session.info.identity
        previous = self._live.get(identity)
        self._live[identity] = session
        return previous

    def release(self, session: LiveSession) -> bool:
        identity = session.info.identity
        if self._live.get(identity) is session:
            del self._live[identity]
            return True
        return False

    def get(self, identity: str) -> LiveSession | None:
        return self._live.get(identity)

    def sessions(self) -> list[SessionInfo]:
        return [s.info for s in self._live.values()]

    def local_sessions(self) -> list[LiveSession]:
        return list(self._live.values())

    def boot_record(self, identity: str) -> BootRecord:
        record = self._boots.get(identity)
        if record is None:
            record = self._boots[identity] = BootRecord()
        return record

    def __len__(self) -> int:
        return len(self._live)
