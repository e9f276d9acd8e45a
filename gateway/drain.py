"""The graceful drain of one worker: live sessions closed in batches, within a bound.

A worker that closes all its sessions at once sends every charge point to the other nodes in the
same instant. The drain closes `batch_size` sessions at a time and spreads the batches over the
drain time, leaving the last batch time to answer its close frames before the bound.
The close code is 1012 (Service Restart, IANA WebSocket Close Code Number Registry, RFC 6455
section 11.7): the service restarts, the client may reconnect and should wait a randomized
delay before doing so; OCPP-J 2.0.1 part 4 section 5.3 has charge points reconnect with a
randomized back-off too.

`DrainPlan` is the pure schedule; `close_in_batches` runs it over the registry's live sessions.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .logs import event

log = logging.getLogger("gateway")
TICK = 0.05  # how often the drain looks for sessions that ended or appeared


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """Close `batch_size` sessions (0: all) every `pause` seconds; all within `spread` seconds."""

    batch_size: int
    pause: float
    spread: float

    @classmethod
    def of(
        cls, sessions: int, batch_size: int, drain_seconds: float, close_timeout: float
    ) -> DrainPlan:
        """The schedule for `sessions` live sessions.

        The batches are spread over the drain time minus the time a peer gets to answer a close
        frame (`close_timeout`, at most half the drain), so the last batch's close handshakes
        end within `drain_seconds` too.
        """
        spread = max(0.0, drain_seconds - min(close_timeout, drain_seconds / 2))
        if batch_size <= 0 or sessions <= batch_size:
            return cls(batch_size, 0.0, spread)
        batches = math.ceil(sessions / batch_size)
        return cls(batch_size, spread / (batches - 1), spread)


async def close_in_batches(
    live: Callable[[], list[Any]],
    close: Callable[[Any], None],
    plan: DrainPlan,
    timeout: float,
) -> None:
    """Close the sessions `live()` lists as `plan` says, until none is left or `timeout` passed.

    `close(session)` starts a session's close (it ends when the peer answers or the close times
    out). Sessions that appear meanwhile (accepted just before the drain began) join the next
    batch; what is still open when the spread time is over is closed at once, and so is what has
    not been asked to close when `timeout` is reached (with a drain time of 0: everything, at
    once). A late wake-up (a busy event loop) closes every batch that fell due meanwhile, so the
    schedule never piles sessions up for one last wave.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    all_at = min(started + plan.spread, deadline)  # from then on: whatever is left, at once
    step = plan.pause or TICK
    next_batch, batch = started, 0
    while True:
        sessions = live()
        now = loop.time()
        if not sessions:
            return
        if now >= next_batch or now >= all_at:
            due = 1
            if now >= next_batch:  # every batch whose time has come since the last wake-up
                due = int((now - next_batch) // step) + 1
                next_batch += due * step
            everything = plan.batch_size <= 0 or now >= all_at
            limit = None if everything else plan.batch_size * due
            if _close_waiting(sessions, close, limit, batch + 1, round(now - started, 3)):
                batch += 1
        if now >= deadline:
            return
        await asyncio.sleep(max(0.0, min(TICK, next_batch - loop.time(), deadline - now)))


def _close_waiting(
    sessions: list[Any], close: Callable[[Any], None], limit: int | None, batch: int, at: float
) -> bool:
    """Close up to `limit` (None: all) of the `sessions` not closing yet; False when none was."""
    waiting = [s for s in sessions if not getattr(s, "closed", True)]
    if not waiting:
        return False
    chosen = waiting if limit is None else waiting[:limit]
    for session in chosen:
        close(session)
    event(
        log,
        "drain_batch",
        batch=batch,
        closed=len(chosen),
        waiting=len(waiting) - len(chosen),
        at=at,
    )
    return True
