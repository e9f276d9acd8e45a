"""`PingScheduler`: every WebSocket's keepalive pings from one timer per worker."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
from wsproto.events import Ping

from gateway.pings import MAX_TICK_SECONDS, PingScheduler, tick_for


class Stream:
    """What the scheduler uses of Hypercorn's `WSStream`: `closed` and `_send_wsproto_event`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, blocked: asyncio.Event | None = None):
        self.closed = False
        self.pinged_at: list[float] = []
        self.sends_started = 0
        self._loop = loop
        self._blocked = blocked

    async def _send_wsproto_event(self, event: object) -> None:
        assert isinstance(event, Ping)
        self.sends_started += 1
        if self._blocked is not None:  # a peer whose socket buffer is full
            await self._blocked.wait()
        self.pinged_at.append(self._loop.time())


class ManualClock:
    """The loop surface `PingScheduler` uses (`time`, `call_at`, `create_task`), with a clock
    moved by the test: a timer can be made to fire late, as on a loaded machine."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = 0.0
        self._loop = loop
        self._timers: list[ManualTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback) -> ManualTimer:
        timer = ManualTimer(when, callback)
        self._timers.append(timer)
        return timer

    def create_task(self, coroutine):
        return self._loop.create_task(coroutine)

    async def run_until(self, until: float, late: dict[float, float] | None = None) -> None:
        """Fire every timer due by `until` in order; the one due at `t` fires at `late[t]`."""
        while due := sorted(t for t in self._timers if not t.cancelled and t.when <= until):
            timer = due[0]
            self._timers.remove(timer)
            self.now = max(self.now, (late or {}).get(round(timer.when, 6), timer.when))
            timer.callback()
            for _ in range(3):  # the ping tasks run
                await asyncio.sleep(0)
        self.now = until


class ManualTimer:
    def __init__(self, when: float, callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def __lt__(self, other: ManualTimer) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        self.cancelled = True


async def test_each_stream_is_pinged_once_per_interval_from_one_interval_after_it_was_added():
    clock = ManualClock(asyncio.get_running_loop())
    pings = PingScheduler(clock, 0.2)  # type: ignore[arg-type]
    streams = [Stream(clock) for _ in range(50)]  # type: ignore[arg-type]
    for stream in streams:
        pings.add(stream)
    clock.now = 0.03  # added later: due later, in the next tick (0.05 s)
    late = Stream(clock)  # type: ignore[arg-type]
    pings.add(late)
    await clock.run_until(0.7)
    pings.close()
    for stream in streams:
        assert stream.pinged_at == pytest.approx([0.2, 0.4, 0.6])
    assert late.pinged_at == pytest.approx([0.25, 0.45, 0.65])


async def test_a_timer_that_fires_late_sends_one_ping_and_keeps_the_grid():
    """A loaded worker runs the timer late: the ping goes out then, the next one on the grid (no
    drift), and a stall longer than an interval gives one ping, not a burst of the missed ones."""
    clock = ManualClock(asyncio.get_running_loop())
    pings = PingScheduler(clock, 0.2)  # type: ignore[arg-type]
    stream = Stream(clock)  # type: ignore[arg-type]
    pings.add(stream)
    await clock.run_until(1.3, late={0.2: 0.33, 0.6: 1.05})
    assert stream.pinged_at == pytest.approx([0.33, 0.4, 1.05, 1.1, 1.3])


async def test_pings_on_the_real_loop_start_one_interval_after_the_stream_was_added():
    loop = asyncio.get_running_loop()
    pings = PingScheduler(loop, 0.2)
    started = loop.time()
    streams = [Stream(loop) for _ in range(50)]
    for stream in streams:
        pings.add(stream)
    await asyncio.sleep(0.7)
    pings.close()
    for stream in streams:
        # at about 0.2, 0.4 and 0.6 s (a loaded machine may run the last one late)
        assert 2 <= len(stream.pinged_at) <= 3, stream.pinged_at
        assert stream.pinged_at[0] - started >= 0.2 - 0.01  # not before one interval


async def test_a_discarded_stream_is_not_pinged_and_not_referenced():
    loop = asyncio.get_running_loop()
    pings = PingScheduler(loop, 0.1)
    kept, dropped = Stream(loop), Stream(loop)
    pings.add(kept)
    pings.add(dropped)
    pings.discard(dropped)
    pings.discard(dropped)  # twice: nothing happens
    assert len(pings) == 1
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()
    assert gone() is None, "the scheduler holds no reference to a discarded stream"
    await asyncio.sleep(0.25)
    pings.close()
    assert len(kept.pinged_at) >= 1


async def test_a_stream_found_closed_when_due_is_dropped_without_a_ping():
    loop = asyncio.get_running_loop()
    pings = PingScheduler(loop, 0.1)
    stream = Stream(loop)
    pings.add(stream)
    stream.closed = True
    await asyncio.sleep(0.2)
    assert stream.pinged_at == [] and len(pings) == 0
    pings.close()


async def test_a_peer_with_a_full_buffer_delays_only_its_own_ping():
    loop = asyncio.get_running_loop()
    pings = PingScheduler(loop, 0.1)
    blocked = asyncio.Event()
    stuck, healthy = Stream(loop, blocked), Stream(loop)
    pings.add(stuck)
    pings.add(healthy)
    await asyncio.sleep(0.35)
    assert stuck.pinged_at == [] and len(healthy.pinged_at) >= 2
    assert stuck.sends_started == 1, "no pile of pings behind one that cannot be written"
    blocked.set()
    await asyncio.sleep(0.01)
    assert stuck.pinged_at, "its pings go out once its buffer drains"
    pings.close()


async def test_close_stops_the_timer_and_cancels_pings_in_flight():
    loop = asyncio.get_running_loop()
    pings = PingScheduler(loop, 0.05)
    stuck = Stream(loop, asyncio.Event())
    pings.add(stuck)
    await asyncio.sleep(0.1)
    assert stuck.sends_started == 1, "a ping is in flight"
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert len(tasks) == 1
    pings.close()
    await asyncio.sleep(0)
    assert tasks[0].cancelled()
    assert len(pings) == 0
    await asyncio.sleep(0.15)
    assert stuck.sends_started == 1, "no ping after close"


async def test_a_failing_send_is_logged_and_the_stream_stays_scheduled(caplog):
    loop = asyncio.get_running_loop()

    class Broken(Stream):
        async def _send_wsproto_event(self, event: object) -> None:
            self.pinged_at.append(loop.time())
            raise ConnectionResetError("peer went away")

    pings = PingScheduler(loop, 0.05)
    stream = Broken(loop)
    pings.add(stream)
    with caplog.at_level("DEBUG", logger="gateway.pings"):
        await asyncio.sleep(0.14)
    pings.close()
    assert len(stream.pinged_at) >= 2
    assert "ping not sent" in caplog.text


async def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        PingScheduler(asyncio.get_running_loop(), 0)


@pytest.mark.parametrize("interval", [0.2, 0.5, 2.1, 4.0, 5.5, 60.0, 86400.0])
def test_the_tick_divides_the_interval_so_every_period_is_exact(interval: float) -> None:
    tick = tick_for(interval)
    assert tick <= MAX_TICK_SECONDS and tick <= interval / 4
    assert tick * round(interval / tick) == pytest.approx(interval)
