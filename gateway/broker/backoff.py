"""Reconnect delays of the broker's background loops: doubling from 0.1 s up to a cap."""

from __future__ import annotations

import asyncio


class Backoff:
    """The delay before the next retry; `reset` after a success."""

    def __init__(self, first: float = 0.1, cap: float = 1.0) -> None:
        self._first = first
        self._cap = cap
        self.delay = first

    def reset(self) -> None:
        """Back to the first delay (the last attempt worked)."""
        self.delay = self._first

    async def sleep(self) -> None:
        """Wait the current delay, then double it (up to the cap)."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self._cap)
