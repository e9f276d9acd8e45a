"""What one worker takes on: TLS handshakes, charge point connections and boots per second.

A reconnect storm (every charge point of a region after a network or power outage, or of a node
that went away) must turn into a queue, not a collapse. `AdmissionControl` holds the limits and
the counts, decides, and counts what it refused; it does no IO:

- TLS handshakes: at `max_tls_handshakes` running handshakes the listener stops accepting (the
  connections wait in the kernel's listen backlog, see `gateway/listener.py`).
- Connections: above `max_connections` charge point connections an upgrade gets HTTP 503 with a
  `Retry-After` of `retry_after_seconds` plus a random jitter, so refused charge points come back
  spread out instead of together.
- Boots: at most `boots_per_second` BootNotifications are answered Accepted per second; the ones
  above that are answered Pending with a jittered `interval` (OCPP 2.0.1 B02, 1.6 section 4.2),
  which the charge point waits before it boots again.

Every count is a plain attribute (read by metrics): `handshakes`, `handshakes_peak`,
`connections`, `refused` (by reason), `accept_pauses`, `boots_accepted`, `boots_pending`.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from .config import GatewayConfig
from .handshake import Refuse

LOG_EVERY_SECONDS = 1.0  # a storm's refusals are logged as one line per reason and second


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """The limits of one worker (0 disables a limit)."""

    max_tls_handshakes: int = 256
    max_connections: int = 20000
    retry_after_s: int = 10
    retry_after_jitter_s: int = 20
    boots_per_second: int = 0
    boot_pending_interval_s: int = 60
    boot_pending_jitter_s: int = 60

    @classmethod
    def of(cls, config: GatewayConfig) -> CapacitySettings:
        """The limits configured in `limits` and `embedded`."""
        limits, embedded = config.limits, config.embedded
        return cls(
            max_tls_handshakes=limits.max_tls_handshakes,
            max_connections=limits.max_connections,
            retry_after_s=limits.retry_after_seconds,
            retry_after_jitter_s=limits.retry_after_jitter_seconds,
            boots_per_second=embedded.boot_pending_above,
            boot_pending_interval_s=embedded.boot_pending_interval_seconds,
            boot_pending_jitter_s=embedded.boot_pending_jitter_seconds,
        )


class AdmissionControl:
    """The counts and decisions of one worker; `clock` and `rng` are injectable for tests."""

    def __init__(
        self,
        settings: CapacitySettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self.handshakes = 0  # TLS handshakes running now
        self.handshakes_peak = 0  # the most that ever ran at once
        self.connections = 0  # charge point connections admitted and not ended yet
        self.refused: Counter[str] = Counter()  # 503 answers by reason
        self.accept_pauses = 0  # times the TLS accept loop waited for a free handshake slot
        self.boots_accepted = 0  # BootNotifications answered Accepted by the embedded system
        self.boots_pending = 0  # ... answered Pending because more than boots_per_second came
        self._accepted_at: deque[float] = deque()
        self._last_logged: dict[str, float] = {}
        self._not_logged: Counter[str] = Counter()

    # -- TLS handshakes (the listener) -----------------------------------------------------------

    def handshake_started(self) -> None:
        """A TLS handshake began (the listener holds one of `max_tls_handshakes` slots)."""
        self.handshakes += 1
        self.handshakes_peak = max(self.handshakes_peak, self.handshakes)

    def handshake_ended(self) -> None:
        """A TLS handshake succeeded, failed or timed out."""
        self.handshakes -= 1

    # -- charge point connections ------------------------------------------------------------------

    def open_connection(self) -> bool:
        """Count a new charge point connection; False (not counted) when the worker is full."""
        limit = self.settings.max_connections
        if limit and self.connections >= limit:
            return False
        self.connections += 1
        return True

    def close_connection(self) -> None:
        """An admitted connection ended."""
        self.connections -= 1

    def retry_after(self) -> int:
        """Seconds for a `Retry-After`: the configured wait plus a random jitter."""
        settings = self.settings
        return settings.retry_after_s + self._rng.randint(0, settings.retry_after_jitter_s)

    def full(self) -> Refuse:
        """The answer to an upgrade above `max_connections`: 503 with a jittered Retry-After."""
        return Refuse(
            503,
            "max_connections",
            f"this gateway node serves its maximum of {self.settings.max_connections} charge "
            "points: retry later or connect to another node",
            headers=((b"retry-after", str(self.retry_after()).encode()),),
        )

    # -- boots -----------------------------------------------------------------------------------

    def pace_boot(self) -> int | None:
        """None: answer this BootNotification Accepted (counted); else Pending with this interval.

        At most `boots_per_second` Accepted answers in any second (a sliding window); the interval
        of a Pending answer is `boot_pending_interval_s` plus a random jitter, so the charge points
        told to wait come back spread out.
        """
        limit = self.settings.boots_per_second
        now = self._clock()
        window = self._accepted_at
        while window and window[0] <= now - 1.0:
            window.popleft()
        if limit and len(window) >= limit:
            self.boots_pending += 1
            jitter = self._rng.randint(0, self.settings.boot_pending_jitter_s)
            return self.settings.boot_pending_interval_s + jitter
        if limit:
            window.append(now)
        self.boots_accepted += 1
        return None

    # -- logging a storm -----------------------------------------------------------------------

    def log_due(self, kind: str) -> int:
        """Count one `kind` event; the number to report when a log line is due now, else 0.

        The first event of a kind is logged at once; during a storm one line per second and kind
        reports how many happened since the previous line.
        """
        self._not_logged[kind] += 1
        now = self._clock()
        last = self._last_logged.get(kind)
        if last is not None and now - last < LOG_EVERY_SECONDS:
            return 0
        self._last_logged[kind] = now
        return self._not_logged.pop(kind)
