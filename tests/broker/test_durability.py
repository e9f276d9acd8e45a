"""Nothing acknowledged is lost: a killed backend consumer, a gateway restart, a Redis restart.

"Acknowledged" means the charge point got the backend's answer: the message was then in the call
stream, and stays there through every restart below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis
import websockets

from examples.backend_consumer import BOOT_INTERVAL

from ..redis_server import start_redis
from .support import BOOT16, connect, envelopes, exchange, replica_of, running_backend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "backend_consumer.py"


def _logged(caplog, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name]


class ConsumerProcess:
    """examples/backend_consumer.py as a real process, with its JSON lines."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict] = []

    @classmethod
    async def start(cls, redis_url: str, prefix: str, name: str, *args: str) -> ConsumerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            "--redis",
            redis_url,
            "--prefix",
            prefix,
            "--consumer",
            name,
            *args,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        return cls(process)

    def ids(self, kind: str) -> list[str]:
        return [line["id"] for line in self.lines if line["event"] == kind]

    async def read_until(self, done, timeout: float = 5.0) -> None:
        """Read lines until `done(self)` is true."""
        deadline = time.monotonic() + timeout
        while not done(self):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"consumer output so far: {self.lines}"
            raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            assert raw, f"the consumer exited; output: {self.lines}"
            self.lines.append(orjson.loads(raw))

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


async def test_entries_a_killed_consumer_never_acknowledged_are_processed_by_the_next_one(
    forward_gateway, redis_server, redis_client, prefix
):
    gateway = await forward_gateway(answer_timeout_seconds=0.3)

    async def charge_point(identity: str) -> None:  # answered by the fallback: no backend yet
        async with connect(gateway, identity) as ws:
            for n in range(2):
                assert (await exchange(ws, [2, f"m{n}", "Heartbeat", {}]))[0] == 3

    await asyncio.gather(*(charge_point(f"KILL-{i}") for i in range(4)))
    forwarded = {e["id"] for e in await envelopes(redis_client, prefix, "call")}
    assert len(forwarded) == 8
    stream = f"{prefix}broker:{{calls}}"
    # The first consumer reads every entry at once, answers slowly, and dies after one.
    first = await ConsumerProcess.start(
        redis_server.url, prefix, "c1", "--batch", "50", "--delay-ms", "200"
    )
    try:
        await first.read_until(lambda c: c.ids("processed"))
    finally:
        await first.kill()
    pending = (await redis_client.xpending(stream, "csms"))["pending"]
    assert pending > len(forwarded) - len(first.ids("processed"))  # read, never acknowledged
    # The next one (another name) claims them from the dead consumer.
    second = await ConsumerProcess.start(redis_server.url, prefix, "c2", "--min-idle-ms", "100")
    try:
        await second.read_until(
            lambda c: set(first.ids("processed")) | set(c.ids("processed")) == forwarded
        )
        for _ in range(60):  # and the session events after them
            if not (await redis_client.xpending(stream, "csms"))["pending"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("entries are still pending")
    finally:
        await second.kill()
    assert not set(first.ids("processed")) & set(second.ids("processed"))  # none twice
    for message in forwarded:
        assert await redis_client.exists(f"{prefix}csms:csms:done:{message}")


async def test_every_answered_message_survives_a_gateway_restart_and_in_flight_ones_are_answered(
    gateways, forward_gateway, redis_client, prefix
):
    """CALLs in flight when the gateway stops are re-sent by the charge points (same message
    ids, OCPP-J 4.1.3) to the restarted node; they are not appended again and get the backend's
    answer that arrived meanwhile."""
    current = {"gateway": await forward_gateway()}
    answers: dict[str, list] = {}

    async def charge_point(identity: str) -> None:
        n = 0
        while n < 6:
            with contextlib.suppress(OSError, websockets.WebSocketException):
                async with connect(current["gateway"], identity) as ws:
                    while n < 6:
                        frame = [2, f"r{n}", "BootNotification", BOOT16]
                        answers[f"{identity}:r{n}"] = await exchange(ws, frame)
                        n += 1
            await asyncio.sleep(0.05)

    async with running_backend(redis_client, prefix, delay=0.1):
        traffic = asyncio.gather(*(charge_point(f"RESTART-{i}") for i in range(3)))
        await asyncio.sleep(0.35)
        await gateways.stop(current["gateway"])
        current["gateway"] = await forward_gateway()  # the same node name
        await asyncio.wait_for(traffic, 8)
    calls = [e["id"] for e in await envelopes(redis_client, prefix, "call")]
    assert sorted(calls) == sorted(answers) and len(calls) == 18  # each once
    assert {a[2]["interval"] for a in answers.values()} == {BOOT_INTERVAL}


async def test_messages_answered_by_the_backend_survive_a_redis_restart_with_aof(
    forward_gateway, prefix
):
    """Redis with appendfsync always is SIGKILLed under traffic: while it is down the fallback
    answers at once; once it is back the backend answers again, and every message the charge
    points got a backend answer for is still in the call stream."""
    redis = start_redis(appendonly=True)
    client = aioredis.from_url(redis.url)
    gateway = await forward_gateway(url=redis.url, answer_timeout_seconds=0.4)
    answered: dict[str, tuple[int, float, str]] = {}  # id -> (interval, seconds, phase at send)
    phase = {"name": "before"}
    backend_after_restart = asyncio.Event()

    async def charge_point(identity: str) -> None:
        n = 0
        async with connect(gateway, identity) as ws:
            while not backend_after_restart.is_set():
                started, sent_in = time.monotonic(), phase["name"]
                answer = await exchange(ws, [2, f"x{n}", "BootNotification", BOOT16])
                interval = answer[2]["interval"]
                answered[f"{identity}:x{n}"] = (interval, time.monotonic() - started, sent_in)
                if phase["name"] == "after" and interval == BOOT_INTERVAL:
                    backend_after_restart.set()
                n += 1

    try:
        async with running_backend(client, prefix):
            traffic = asyncio.gather(*(charge_point(f"AOF-{i}") for i in range(2)))
            for _ in range(100):  # some backend answers before the crash
                if sum(a[0] == BOOT_INTERVAL for a in answered.values()) >= 4:
                    break
                await asyncio.sleep(0.03)
            redis.process.kill()  # SIGKILL: only what is on disk survives
            redis.process.wait(5)
            phase["name"] = "down"  # CALLs in flight now wait their 0.4 s, then the next ones
            await asyncio.sleep(0.8)
            phase["name"] = "starting"
            redis = await asyncio.to_thread(
                start_redis, redis.port, appendonly=True, directory=redis.directory
            )
            phase["name"] = "after"
            await asyncio.wait_for(traffic, 5)
        by_backend = {k for k, (interval, *_) in answered.items() if interval == BOOT_INTERVAL}
        stored = {e["id"] for e in await envelopes(client, prefix, "call")}
        assert by_backend <= stored
        assert len(by_backend) > 4
        # Sent while Redis was down: the fallback answered at once (the timeout is 0.4 s).
        down = [(interval, s) for interval, s, sent_in in answered.values() if sent_in == "down"]
        assert down and all(interval == 300 and s < 0.35 for interval, s in down)
    finally:
        await client.aclose()
        redis.stop()


async def test_with_wait_replicas_a_message_counts_as_stored_once_a_replica_holds_it(
    forward_gateway, redis_server, redis_client, prefix, caplog
):
    """broker.wait_replicas: WAIT after the append; without the replicas the fallback answers."""
    caplog.set_level(logging.INFO, logger="gateway.broker")
    await redis_client.config_set("repl-diskless-sync-delay", 0)  # a replica syncs at once
    gateway = await forward_gateway(wait_replicas=1, answer_timeout_seconds=0.5)
    async with running_backend(redis_client, prefix), connect(gateway, "WAIT-1") as ws:
        alone = await exchange(ws, [2, "w1", "BootNotification", BOOT16])
        with replica_of(redis_server):
            replicated = await exchange(ws, [2, "w2", "BootNotification", BOOT16])
    assert alone[2]["interval"] == 300  # the embedded fallback: not stored durably
    assert replicated[2]["interval"] == BOOT_INTERVAL
    assert [f["id"] for f in _logged(caplog, "broker_not_replicated")] == ["WAIT-1:w1"]
