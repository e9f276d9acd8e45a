"""Brute-force protection: failed authentications per key (identity, source address) with lockout.

Pure: the caller passes the time. Memory is bounded: the oldest keys are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Entry:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class FailureLimiter:
    """Locks a key for `lockout_s` after `max_failures` failures within `window_s`."""

    def __init__(
        self, max_failures: int, window_s: float, lockout_s: float, max_keys: int = 100_000
    ) -> None:
        self._max = max_failures
        self._window = window_s
        self._lockout = lockout_s
        self._max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def locked_for(self, key: str, now: float) -> float:
        """Seconds `key` stays locked (0 when it may try)."""
        entry = self._entries.get(key)
        if entry is None or entry.locked_until <= now:
            return 0.0
        return entry.locked_until - now

    def failure(self, key: str, now: float) -> bool:
        """Count a failure for `key`; True when this failure locks it."""
        if self._max <= 0:
            return False
        entry = self._entries.pop(key, None) or _Entry()
        entry.failures = [t for t in entry.failures if now - t < self._window]
        entry.failures.append(now)
        locked = len(entry.failures) >= self._max
        if locked:
            entry.locked_until = now + self._lockout
            entry.failures.clear()
        self._entries[key] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return locked

    def success(self, key: str) -> None:
        """Forget the failures of `key` after a successful authentication."""
        self._entries.pop(key, None)
