#!/usr/bin/env python3
"""A backend CSMS for the gateway's forward mode: the reference consumer (see docs/broker.md).

It reads the gateway's call stream with a consumer group (at-least-once delivery), answers the
charge points' CALLs of OCPP 1.6, 2.0.1 and 2.1 on the gateway node's reply stream, and
acknowledges an entry only after its answer is written. Start several with the same --group and
different --consumer names to share the load:

    python examples/backend_consumer.py --redis redis://localhost:6379/0 --prefix ocppgw: \\
        --group csms --consumer csms-1

What it shows, in order:

1. XGROUP CREATE ... MKSTREAM once (BUSYGROUP: the group exists already); a new group starts at
   the beginning of the retained stream;
2. on start, its own pending entries first (XREADGROUP ... 0): what it read before a crash and
   never acknowledged;
3. entries stuck with a dead consumer for --min-idle-ms are claimed (XAUTOCLAIM), then new ones
   are read (XREADGROUP ... >);
4. deduplication on the envelope's `id`: the answer is stored with SET NX EX, the commit point of
   the processing (a real backend commits its database transaction with a unique `id` instead);
   a redelivered entry gets the stored answer again and is not processed twice;
5. the answer is XADDed to the envelope's `reply_to` (MAXLEN ~, EXPIRE), then the entry is XACKed.

It prints one JSON line per entry (`processed`, `duplicate`, `event`, `skipped`) and never prints
payloads. Usable as a library: `await BackendConsumer(redis, ...).run(stop_event)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

BOOT_INTERVAL = 777  # a distinctive heartbeat interval: the embedded fallback answers 300
REPLY_MAXLEN = 10_000
REPLY_TTL_SECONDS = 86_400
BLOCK_MS = 1000

Payload = dict[str, Any]
Answer = Callable[[Payload], Payload]


def now() -> str:
    """The current time as OCPP wants it: RFC 3339 UTC with milliseconds."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fixed(answer: Payload) -> Answer:
    return lambda _request: dict(answer)


def idinfo_if(request_field: str, info_field: str) -> Answer:
    return lambda request: {info_field: {"status": "Accepted"}} if request_field in request else {}


COMMON: dict[str, Answer] = {
    "BootNotification": lambda _r: {
        "status": "Accepted",
        "currentTime": now(),
        "interval": BOOT_INTERVAL,
    },
    "Heartbeat": lambda _r: {"currentTime": now()},
    "DataTransfer": fixed({"status": "UnknownVendorId"}),
}
ANSWERS_16: dict[str, Answer] = {
    **COMMON,
    **dict.fromkeys(
        (
            "StatusNotification",
            "MeterValues",
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
            "SecurityEventNotification",
            "LogStatusNotification",
            "SignedFirmwareStatusNotification",
        ),
        fixed({}),
    ),
    "Authorize": fixed({"idTagInfo": {"status": "Accepted"}}),
    "StopTransaction": idinfo_if("idTag", "idTagInfo"),
    # StartTransaction needs a transactionId: see BackendConsumer.answer.
}
ANSWERS_2X: dict[str, Answer] = {
    **COMMON,
    **dict.fromkeys(
        (
            "StatusNotification",
            "MeterValues",
            "NotifyEvent",
            "NotifyReport",
            "NotifyMonitoringReport",
            "SecurityEventNotification",
            "FirmwareStatusNotification",
            "LogStatusNotification",
            "ReservationStatusUpdate",
            "NotifyChargingLimit",
            "ClearedChargingLimit",
            "NotifyCustomerInformation",
            "NotifyDisplayMessages",
            "PublishFirmwareStatusNotification",
            "ReportChargingProfiles",
        ),
        fixed({}),
    ),
    "Authorize": fixed({"idTokenInfo": {"status": "Accepted"}}),
    "TransactionEvent": idinfo_if("idToken", "idTokenInfo"),
}
ANSWERS: dict[str, dict[str, Answer]] = {
    "ocpp1.6": ANSWERS_16,
    "ocpp2.0.1": ANSWERS_2X,
    "ocpp2.1": ANSWERS_2X,
}


def calls_stream(prefix: str) -> str:
    """The gateway's call stream under `prefix` (docs/broker.md, "Keys")."""
    return f"{prefix}broker:{{calls}}"


class BackendConsumer:
    """One consumer of a consumer group on the gateway's call stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        prefix: str = "ocppgw:",
        group: str = "csms",
        consumer: str = "csms-1",
        *,
        min_idle_ms: int = 30_000,
        batch: int = 10,
        delay: float = 0.0,
        dedupe_seconds: int = 86_400,
        out: TextIO = sys.stdout,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.stream = calls_stream(prefix)
        self.group = group
        self.consumer = consumer
        self.min_idle_ms = min_idle_ms
        self.batch = batch
        self.delay = delay  # simulate a slow backend: seconds before each answer
        self.dedupe_seconds = dedupe_seconds
        self.out = out
        self.processed: list[str] = []  # ids processed by this consumer (not duplicates)
        self.online: dict[str, str] = {}  # identity -> its current session (from events)

    def report(self, what: str, **fields: Any) -> None:
        print(json.dumps({"event": what, "consumer": self.consumer, **fields}), file=self.out)
        self.out.flush()

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until `stop` is set (forever without one); survives Redis restarts."""
        stop = stop or asyncio.Event()
        ready, next_claim = False, 0.0
        while not stop.is_set():
            try:
                if not ready:
                    await self.ensure_group()
                    await self.process_own_pending()
                    ready = True
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + max(self.min_idle_ms / 1000 / 2, 0.05)
                    await self.claim_stale()
                response = await self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=BLOCK_MS
                )
                for _, entries in response or []:
                    for entry_id, fields in entries:
                        await self.handle(entry_id, fields)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                self.report("redis_unavailable", error=str(exc)[:200])
                ready = False
                await asyncio.sleep(0.5)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):  # else Redis lost its data: create the group again
                    raise
                ready = False

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def process_own_pending(self) -> None:
        """Entries delivered to this consumer name earlier and never acknowledged."""
        after: bytes | str = "0"
        while True:
            response = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: after}, count=self.batch
            )
            entries = response[0][1] if response else []
            if not entries:
                return
            for entry_id, fields in entries:
                await self.handle(entry_id, fields)
            after = entries[-1][0]

    async def claim_stale(self) -> None:
        """Entries another consumer read but did not acknowledge within min_idle_ms (it died)."""
        start: bytes | str = "0-0"
        while True:
            start, entries, *_ = await self.redis.xautoclaim(
                self.stream, self.group, self.consumer, self.min_idle_ms, start, count=self.batch
            )
            for entry_id, fields in entries:
                self.report("claimed", entry=entry_id.decode())
                await self.handle(entry_id, fields)
            if start in (b"0-0", "0-0"):
                return

    # -- one entry -------------------------------------------------------------------------------

    async def handle(self, entry_id: bytes, fields: dict[bytes, bytes] | None) -> None:
        """Process one entry, write its answer, then acknowledge it."""
        try:
            envelope = json.loads(fields[b"envelope"]) if fields else None
        except (KeyError, ValueError):
            envelope = None
        if not isinstance(envelope, dict) or envelope.get("v") != 1:
            self.report("skipped", entry=entry_id.decode(), reason="not a version 1 envelope")
            await self.redis.xack(self.stream, self.group, entry_id)
            return
        if envelope["kind"] == "event":
            self.on_event(envelope)
            await self.redis.xack(self.stream, self.group, entry_id)
            return
        done_key = f"{self.prefix}csms:{self.group}:done:{envelope['id']}"
        if self.delay:
            await asyncio.sleep(self.delay)
        call = envelope["kind"] == "call"
        answer = json.dumps(await self.answer(envelope)) if call else "{}"
        if await self.redis.set(done_key, answer, nx=True, ex=self.dedupe_seconds):
            self.processed.append(envelope["id"])
            self.report("processed", id=envelope["id"], action=envelope["action"])
        else:  # delivered before: answer what we answered then, do nothing else
            answer = (await self.redis.get(done_key)) or answer
            self.report("duplicate", id=envelope["id"], action=envelope["action"])
        if call and envelope.get("reply_to"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xadd(
                    envelope["reply_to"], {"answer": answer}, maxlen=REPLY_MAXLEN, approximate=True
                )
                pipe.expire(envelope["reply_to"], REPLY_TTL_SECONDS)
                await pipe.execute()
        await self.redis.xack(self.stream, self.group, entry_id)

    def on_event(self, envelope: Payload) -> None:
        """Who is online: a `disconnected` of another session than the current one is stale."""
        identity, session = envelope["identity"], envelope["session"]
        if envelope["event"] == "connected":
            self.online[identity] = session
        elif self.online.get(identity) == session:
            del self.online[identity]
        self.report("event", kind=envelope["event"], identity=identity, node=envelope["node"])

    async def answer(self, envelope: Payload) -> Payload:
        """The answer to a CALL: `{"id", "payload"}`, or `{"id", "error"}` for unknown actions."""
        action, request = envelope["action"], envelope["payload"]
        if envelope["version"] == "ocpp1.6" and action == "StartTransaction":
            transaction_id = await self.redis.incr(f"{self.prefix}csms:transaction_id")
            payload = {"transactionId": transaction_id, "idTagInfo": {"status": "Accepted"}}
            return {"id": envelope["id"], "payload": payload}
        table = ANSWERS.get(envelope["version"], {})
        handler = table.get(action)
        if handler is None:
            error = {
                "code": "NotImplemented",
                "description": f"this backend does not implement {action}",
                "details": {},
            }
            return {"id": envelope["id"], "error": error}
        return {"id": envelope["id"], "payload": handler(request)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://localhost:6379/0", help="Redis URL")
    parser.add_argument("--prefix", default="ocppgw:", help="the gateway's redis.key_prefix")
    parser.add_argument("--group", default="csms", help="consumer group (one per backend)")
    parser.add_argument("--consumer", default="csms-1", help="this consumer's unique name")
    parser.add_argument(
        "--min-idle-ms",
        type=int,
        default=30_000,
        help="claim entries another consumer has held unacknowledged this long",
    )
    parser.add_argument("--batch", type=int, default=10, help="entries per read")
    parser.add_argument(
        "--delay-ms", type=int, default=0, help="simulate a slow backend: wait before each answer"
    )
    args = parser.parse_args(argv)

    async def consume() -> None:
        redis = aioredis.from_url(args.redis, socket_timeout=5, socket_connect_timeout=5)
        consumer = BackendConsumer(
            redis,
            args.prefix,
            args.group,
            args.consumer,
            min_idle_ms=args.min_idle_ms,
            batch=args.batch,
            delay=args.delay_ms / 1000,
        )
        consumer.report("started", stream=consumer.stream, group=args.group)
        try:
            await consumer.run()
        finally:
            await redis.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(consume())


if __name__ == "__main__":
    main()
