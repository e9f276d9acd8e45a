"""WebSocket keepalive pings for a whole worker from one timer.

Hypercorn pings each WebSocket from a task of its own (`WSStream._send_pings`: ping, then sleep
`websocket_ping_interval`, for as long as the stream lives). That is a task, two coroutine frames,
a future and a timer handle per connection: about 3.6 KiB of an idle wss connection's 43.5 KiB,
measured with `python -m bench.idle_connections --connections 1000 --scheme wss` (39.9 KiB with
pings off). `PingScheduler` keeps the same schedule (a ping every interval per stream) in buckets
of `tick` seconds served by one timer; a stream costs a set entry and a dict entry. Each due ping
is sent from a short task of its own, so a peer whose socket buffer is full delays only its own
ping. Streams leave the schedule when they close (`discard`, called by the connection's task
group) or when the scheduler finds them closed.

Differences from Hypercorn: its first ping goes out right after the handshake, ours one interval
(plus up to one tick) later, and a stream's next ping waits while its last one is still being
sent (a peer that stops reading gets no pile of pings); the read timeout allows for the tick
(`gateway.server.hypercorn_config`).

Hypercorn internals used (pinned, checked by `hypercorn_compat`): `WSStream.closed` and
`WSStream._send_wsproto_event`, what its own ping loop calls.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from wsproto.events import Ping

log = logging.getLogger("gateway.pings")

MAX_TICK_SECONDS = 1.0


def tick_for(interval: float) -> float:
    """The scheduler's resolution for `interval`: at most 1 s, at most a quarter of the
    interval, and a whole fraction of it (so every period is exactly `interval`)."""
    return interval / max(4, math.ceil(interval / MAX_TICK_SECONDS))


class PingScheduler:
    """Pings every added stream once per `interval` seconds, within `tick` seconds."""

    __slots__ = (
        "_armed_for",
        "_bucket_of",
        "_buckets",
        "_interval",
        "_loop",
        "_sending",
        "_steps",
        "_tick",
        "_timer",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the ping interval must be positive")
        self._loop = loop
        self._interval = interval
        self._tick = tick_for(interval)
        self._steps = round(interval / self._tick)  # buckets per interval: a whole number
        self._buckets: dict[int, set[Any]] = {}  # bucket number -> streams due then
        self._bucket_of: dict[Any, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0  # the bucket the timer fires for
        self._sending: dict[Any, asyncio.Task[None]] = {}  # streams whose ping is being sent

    def __len__(self) -> int:
        return len(self._bucket_of)

    def add(self, stream: Any) -> None:
        """Ping `stream` one interval from now, and every interval after that."""
        self.discard(stream)
        self._schedule(stream, math.ceil((self._loop.time() + self._interval) / self._tick))

    def discard(self, stream: Any) -> None:
        """No more pings for `stream` (its connection ended); nothing if it had none."""
        number = self._bucket_of.pop(stream, None)
        if number is None:
            return
        bucket = self._buckets[number]
        bucket.discard(stream)
        if not bucket:
            del self._buckets[number]

    def close(self) -> None:
        """Stop: the timer and any ping still being sent (the worker is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._sending.values()):
            task.cancel()
        self._buckets.clear()
        self._bucket_of.clear()

    def _schedule(self, stream: Any, number: int) -> None:
        self._bucket_of[stream] = number
        bucket = self._buckets.get(number)
        if bucket is None:
            self._buckets[number] = {stream}
            self._arm(number)
        else:
            bucket.add(stream)

    def _arm(self, number: int) -> None:
        """The timer fires for bucket `number` unless it already fires for an earlier one."""
        if self._timer is not None:
            if self._armed_for <= number:
                return
            self._timer.cancel()
        self._armed_for = number
        self._timer = self._loop.call_at(number * self._tick, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        last_due = math.floor(now / self._tick + 0.01)  # a timer may fire a hair early
        for number in sorted(n for n in self._buckets if n <= last_due):
            then = max(number + self._steps, last_due + 1)  # a steady period, no catch-up burst
            for stream in self._buckets.pop(number):
                del self._bucket_of[stream]
                if stream.closed:
                    continue
                if stream not in self._sending:  # one ping at a time, as Hypercorn's loop
                    self._send(stream)
                self._schedule(stream, then)
        if self._buckets:
            self._arm(min(self._buckets))

    def _send(self, stream: Any) -> None:
        task = self._sending[stream] = self._loop.create_task(_ping(stream))
        task.add_done_callback(lambda _: self._sending.pop(stream, None))


async def _ping(stream: Any) -> None:
    try:
        await stream._send_wsproto_event(Ping())
    except Exception as exc:  # the connection broke meanwhile: its own read path ends it
        log.debug("ping not sent: %s", exc)
