"""Events that the router publishes to its consumers (UI, backends): connections and messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

EventKind = Literal["connected", "disconnected", "message", "security"]
Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """One thing that happened to a charge point session."""

    kind: EventKind
    identity: str
    subprotocol: str
    at: float
    direction: Direction | None = None
    frame: str | None = None
    close_code: int | None = None
    reason: str | None = None  # security events: the stable reason code
    remote: str | None = None  # security events: the peer address
    detail: str | None = None


Listener = Callable[[GatewayEvent], None]
