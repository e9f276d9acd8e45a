"""Security events: every security decision that refuses or closes something, as one stream.

Each event is a `security_event` log line (warning level) with a stable `reason` code and is
published to the router's listeners (the UI's security stream).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .events import GatewayEvent
from .logs import event
from .router import Router

log = logging.getLogger("gateway.security")


class SecurityEvents:
    """Emits security events to the log and to the router's listeners."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def emit(
        self, reason: str, *, identity: str | None, remote: str, detail: str, **fields: Any
    ) -> None:
        """Record one security decision (never pass a secret in `detail` or `fields`)."""
        event(
            log,
            "security_event",
            logging.WARNING,
            reason=reason,
            identity=identity,
            remote=remote,
            detail=detail,
            **fields,
        )
        if self._router.has_listeners:
            self._router.publish(
                GatewayEvent(
                    "security",
                    identity or "",
                    "",
                    time.time(),
                    reason=reason,
                    detail=detail,
                    remote=remote,
                )
            )
