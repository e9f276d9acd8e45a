"""The load each charge point makes, inside a client process.

heartbeat: Heartbeat CALLs back to back, one outstanding per charge point (or paced to `rate`).
session: the charging cycle of `payloads` in a loop, one outstanding call, a required reply field
checked (1.6 StartTransaction's transactionId). storm: reconnect and BootNotification until
Accepted, refusals (503 with Retry-After, refused or reset connections, close 1012/1013) retried
after a bounded, jittered wait; a Pending boot is sent again after its interval (bounded likewise).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING

from .client import RETRY_CLOSE_CODES, ChargePoint, connect_error_kind, refusal_of, retry_wait
from .payloads import BOOTS, REQUIRED_REPLY_FIELDS, SESSIONS, ChargePointState
from .tally import Window

if TYPE_CHECKING:
    from .worker import Worker

_EMPTY: dict[str, object] = {}


class Pacer:
    """Spaces one charge point's calls `interval` seconds apart (None: back to back)."""

    __slots__ = ("interval", "next_at")

    def __init__(self, interval: float | None, begin: float, rng: random.Random) -> None:
        self.interval = interval
        self.next_at = begin + (rng.random() * interval if interval else 0.0)

    async def wait(self) -> None:
        if self.interval is None:
            return
        delay = self.next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        # Late (the server is slower than the rate): go on at once, no burst to catch up.
        self.next_at = max(self.next_at + self.interval, time.monotonic())


async def run_calls(worker: Worker, begin: float, start: float, end: float) -> None:
    """Every open charge point calls from `begin` until `end`; figures count [start, end)."""
    spec = worker.spec
    worker.tally.window = Window(start, end)
    interval = spec.connections / spec.rate if spec.rate else None
    rng = random.Random(worker.plan.index)
    delay = begin - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    loop = heartbeats if spec.scenario == "heartbeat" else sessions
    await asyncio.gather(
        *(loop(worker, point, end, Pacer(interval, begin, rng)) for point in worker.open_points())
    )


async def heartbeats(worker: Worker, point: ChargePoint, end: float, pacer: Pacer) -> None:
    call = point.call
    while not point.lost and time.monotonic() < end:
        await pacer.wait()
        await call("Heartbeat", _EMPTY)  # type: ignore[arg-type]


async def sessions(worker: Worker, point: ChargePoint, end: float, pacer: Pacer) -> None:
    spec = worker.spec
    script_of = SESSIONS[spec.payloads]
    required = REQUIRED_REPLY_FIELDS[spec.payloads] if spec.expect == "ocpp" else {}
    state = ChargePointState.of(point.identity, point.number)
    tally = worker.tally
    while not point.lost and time.monotonic() < end:
        script = script_of(state, spec.meter_values)
        answer = None
        try:
            action, payload = next(script)
            while not point.lost and time.monotonic() < end:
                await pacer.wait()
                reply = await point.call(action, payload)
                answer = reply.payload if reply is not None else None
                field = required.get(action)
                if field and reply is not None and field not in (answer or {}):
                    tally.error(f"bad_reply:missing_{field}", f"{point.identity} {action}")
                action, payload = script.send(answer)
        except StopIteration:
            pass


async def heartbeat_check(worker: Worker) -> None:
    """One Heartbeat from every open charge point; those answered are counted."""

    async def one(point: ChargePoint) -> None:
        if await point.call("Heartbeat", {}) is not None:
            worker.tally.checked += 1

    await asyncio.gather(*(one(point) for point in worker.open_points()))


async def storm_reconnect(worker: Worker, start: float, deadline: float) -> None:
    """Every charge point reconnects at `start` and boots; those not booted by `deadline` fail."""
    spec = worker.spec
    rng = random.Random(worker.plan.index)
    delay = start - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    jobs = [reboot(worker, point, start, deadline, rng) for point in worker.points]
    if spec.storm_concurrency is None:
        await asyncio.gather(*jobs)
    else:
        gate = asyncio.Semaphore(spec.storm_concurrency)

        async def gated(job):  # type: ignore[no-untyped-def]
            async with gate:
                await job

        await asyncio.gather(*(gated(job) for job in jobs))


async def reboot(
    worker: Worker, point: ChargePoint, start: float, deadline: float, rng: random.Random
) -> None:
    """Reconnect `point` and boot it (BootNotification Accepted), retrying refusals."""
    spec, tally = worker.spec, worker.tally
    state = ChargePointState.of(point.identity, point.number)
    boot = BOOTS[spec.payloads](state)
    attempt = 0

    async def pause(seconds: float) -> None:
        nonlocal attempt
        attempt += 1
        tally.retries += 1
        await asyncio.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            tally.error("unbooted", f"{point.identity}: not booted by the deadline")
            return
        try:
            point.connected(await worker.target.open(point, remaining))
        except Exception as exc:  # a refusal is retried, anything else is an error
            refusal = refusal_of(exc)
            if refusal is None:
                if isinstance(exc, TimeoutError):
                    continue  # the deadline passed while waiting: counted as unbooted
                tally.error(f"connect:{connect_error_kind(exc)}", f"{point.identity}: {exc}")
                return
            reason, retry_after = refusal
            tally.refusals[reason] += 1
            await pause(retry_wait(retry_after, attempt, spec.max_retry_wait, rng))
            continue
        while True:
            reply = await point.call("BootNotification", boot, count_close=False)
            if reply is None:
                if point.lost and point.close_code in RETRY_CLOSE_CODES:
                    tally.refusals[f"close_{point.close_code}"] += 1
                    await point.close()
                    await pause(retry_wait(None, attempt, spec.max_retry_wait, rng))
                    break  # reconnect
                if point.lost:
                    tally.error(f"close:{point.close_code}", f"{point.identity} during boot")
                return
            status = "Accepted" if spec.expect == "echo" else (reply.payload or {}).get("status")
            tally.boot_statuses[str(status)] += 1
            if status == "Accepted":
                now = time.monotonic()
                tally.booted += 1
                tally.boot_latency.add(now - start)
                tally.last_boot_at = max(tally.last_boot_at, now)
                return
            if status != "Pending":
                tally.error(f"boot:{status}", point.identity)
                return
            interval = (reply.payload or {}).get("interval")
            wait = float(interval) if isinstance(interval, int | float) and interval > 0 else None
            await pause(retry_wait(wait, attempt, spec.max_retry_wait, rng))
            if time.monotonic() >= deadline:
                tally.error("unbooted", f"{point.identity}: still Pending at the deadline")
                return
