"""Pub/sub keeps nothing for a subscriber that is not there yet: every listener learns when its
subscription is live (at start and after Redis was lost) and re-reads what the messages announce,
so a change announced while it was not subscribed is not missed."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import redis.asyncio as aioredis

from gateway.cluster.bus import listen_forever
from gateway.cluster.events import ClusterEvents
from gateway.cluster.mirror import MirroredRecordStore, StateMirror
from gateway.cluster.state import StateKeys, record_document
from security.records import ChargePointRecord


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def eventually_async(check, expected, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while await check() != expected:
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def subscribers(client: aioredis.Redis, channel: str) -> int:
    return dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0)


async def kill_subscribers(client: aioredis.Redis) -> None:
    """Drop every pub/sub connection, as a Redis restart or a network cut does."""
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")


async def test_on_subscribed_runs_once_redis_confirms_and_again_after_a_resubscription(
    redis_client,
):
    received: list[bytes] = []
    subscribed: list[int] = []

    def on_subscribed() -> None:
        subscribed.append(len(received))

    listener = asyncio.create_task(
        listen_forever(redis_client, "t:chan", received.append, on_subscribed)
    )
    try:
        await eventually(lambda: len(subscribed) == 1)
        # confirmed by Redis: a publish from another connection now reaches it
        assert await redis_client.publish("t:chan", b"one") == 1
        await eventually(lambda: received == [b"one"])
        await kill_subscribers(redis_client)
        await eventually(lambda: len(subscribed) == 2)
        assert await redis_client.publish("t:chan", b"two") == 1
        await eventually(lambda: received == [b"one", b"two"])
        assert subscribed == [0, 1]  # the subscribe confirmations are not messages
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_a_change_made_while_the_mirror_was_not_subscribed_is_read_on_resubscribing(
    redis_client,
):
    """Written without a delivered announcement (the node's subscription was down): the node
    reads it when it subscribes again, not at the next periodic check (minutes away here)."""
    records = MirroredRecordStore()
    mirror = StateMirror(redis_client, "m:", records, None)
    await mirror.start()
    try:
        await eventually_async(lambda: subscribers(redis_client, "m:state"), 1)
        await eventually(lambda: not mirror._applying)  # the read on first subscribing is done
        keys = StateKeys("m:")
        async with redis_client.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.hash("records"),
                "CPX",
                record_document(ChargePointRecord("CPX", security_profile=2)),
            )
            pipe.set(keys.version("records"), "changed-unannounced")
            await pipe.execute()
        await asyncio.sleep(0.2)
        assert records.get("CPX") is None, "nothing announced it, nothing read it yet"
        await kill_subscribers(redis_client)
        await eventually(lambda: records.get("CPX") is not None)
        assert records.get("CPX").security_profile == 2
    finally:
        await mirror.stop()


async def test_an_announcement_heard_during_a_watchers_read_is_not_overwritten_by_it(
    redis_client,
):
    """Node B reads the watchers set; node C joins it and announces while B's read is in flight:
    B must forward at once, not wait for its next read (its older read says nobody watches)."""
    events = ClusterEvents(redis_client, "w:", "node-b")
    read_started, finish_read = asyncio.Event(), asyncio.Event()
    next_read, reads = asyncio.Event(), []
    real_pipeline = redis_client.pipeline

    class SlowPipeline:
        def __init__(self, *args, **kwargs) -> None:
            self._pipe = real_pipeline(*args, **kwargs)

        async def __aenter__(self):
            await self._pipe.__aenter__()
            return self

        async def __aexit__(self, *exc) -> None:
            await self._pipe.__aexit__(*exc)

        def __getattr__(self, name):
            return getattr(self._pipe, name)

        async def execute(self):
            reads.append(1)
            if len(reads) > 1:  # the first read has been taken in: hold the next one
                next_read.set()
                await asyncio.Event().wait()
            results = await self._pipe.execute()  # nobody watches yet
            read_started.set()
            await finish_read.wait()
            return results

    redis_client.pipeline = SlowPipeline  # type: ignore[method-assign]
    await events.start(lambda event: None)
    try:
        await asyncio.wait_for(read_started.wait(), 5)
        await eventually_async(lambda: subscribers(redis_client, "w:events"), 1)
        assert not events.remote_watchers
        announcement = orjson.dumps({"node": "node-c", "watching": True})
        assert await redis_client.publish("w:events", announcement) == 1
        await eventually(lambda: events.remote_watchers)
        finish_read.set()  # the read that began before the announcement returns "nobody"
        await asyncio.wait_for(next_read.wait(), 5)
        assert events.remote_watchers, "an older read overwrote a newer announcement"
    finally:
        finish_read.set()
        await events.stop()
