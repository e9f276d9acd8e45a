"""The drain schedule under pressure: a busy event loop and a drain time of zero.

The drain closes `batch_size` sessions every `pause` seconds so that charge points reconnect
spread out (RFC 6455 1012 Service Restart: the client reconnects after a randomized delay); the
schedule must hold even when the worker wakes up late, and every session must get its 1012.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from gateway.drain import DrainPlan, close_in_batches


class Session:
    def __init__(self, live: list[Session]) -> None:
        self.closed, self._live = False, live

    def close(self) -> None:
        self.closed = True
        asyncio.get_running_loop().call_later(0.01, self._live.remove, self)


async def busy_neighbour(block: float) -> None:
    """Other work of the worker: holds the event loop `block` seconds per turn."""
    while True:
        time.sleep(block)
        await asyncio.sleep(0)


async def drain_waves(sessions: int, plan: DrainPlan, timeout: float) -> tuple[Counter[int], Any]:
    """Drain `sessions` sessions: how many each wake-up of the drain closed, and the sessions."""
    live: list[Session] = []
    live.extend(Session(live) for _ in range(sessions))
    wake_ups = 0
    waves: Counter[int] = Counter()

    def snapshot() -> list[Session]:
        nonlocal wake_ups
        wake_ups += 1
        return list(live)

    def close(session: Session) -> None:
        waves[wake_ups] += 1
        session.close()

    await close_in_batches(snapshot, close, plan, timeout)
    return waves, live


async def test_a_late_wake_up_closes_every_batch_due_instead_of_piling_them_up_for_the_end():
    # 200 sessions, 2 per batch, 100 batches over 0.5 s: one every 5 ms. The worker is busy
    # 8 ms at a time, so the drain wakes up late every time.
    plan = DrainPlan.of(200, 2, drain_seconds=1.0, close_timeout=0.5)
    neighbour = asyncio.create_task(busy_neighbour(0.008))
    try:
        waves, live = await drain_waves(200, plan, timeout=1.0)
    finally:
        neighbour.cancel()
    assert sum(waves.values()) == 200 and live == []
    assert max(waves.values()) <= 20, f"a wave of {max(waves.values())}: the schedule fell behind"


async def test_a_drain_time_of_zero_still_closes_every_session_at_once():
    waves, _ = await drain_waves(5, DrainPlan.of(5, 2, drain_seconds=0, close_timeout=5), 0)
    assert list(waves.values()) == [5]


async def test_sessions_not_yet_asked_to_close_at_the_timeout_are_closed_before_it_returns():
    # The spread ends after the timeout (a plan made for a longer drain): at the timeout the
    # sessions still waiting for their batch are closed, not left to be cut off.
    waves, _ = await drain_waves(6, DrainPlan(batch_size=2, pause=1.0, spread=2.0), timeout=0.2)
    assert sum(waves.values()) == 6
    assert list(waves.values()) == [2, 4]
