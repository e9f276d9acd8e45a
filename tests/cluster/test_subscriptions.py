"""Pub/sub keeps nothing for a subscriber that is not there yet: every listener learns when its
subscription is live (at start and after Redis was lost) and re-reads what the messages announce,
so a change announced while it was not subscribed is not missed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson
import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from gateway.cluster import bus
from gateway.cluster.bus import listen_forever
from gateway.cluster.client import connect
from gateway.cluster.events import ClusterEvents
from gateway.cluster.mirror import (
    UNREAD,
    MirroredRecordStore,
    MirroredTokenStore,
    StateMirror,
    script_failed_on_this_key,
)
from gateway.cluster.state import RedisRecordStore, StateKeys, record_document
from security.records import ChargePointRecord
from security.tokens import new_token

from ..redis_server import start_redis
from .processes import eventually as until_async


async def eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def subscribed(client: aioredis.Redis, channel: str) -> None:
    """Until exactly one client listens on `channel`."""

    async def one() -> bool:
        return dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0) == 1

    await until_async(one, 5, f"one subscriber of {channel}")


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
        await subscribed(redis_client, "m:state")
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
        await subscribed(redis_client, "w:events")
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


class BlackholeProxy:
    """A TCP relay to Redis whose links can be cut silently: bytes are swallowed, no FIN, no
    RST (a failover behind a virtual IP, a NAT or load balancer that forgot the flow)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._links: list[dict[str, bool]] = []
        self._writers: list[asyncio.StreamWriter] = []

    def cut(self) -> None:
        """Every link open now swallows what it is given; new links work."""
        for link in self._links:
            link["cut"] = True

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        link = {"cut": False}
        self._links.append(link)
        self._writers += [writer, upstream_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                if not link["cut"]:
                    sink.write(data)
                    await sink.drain()

        await asyncio.gather(
            pump(reader, upstream_writer), pump(upstream_reader, writer), return_exceptions=True
        )

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


async def test_a_pubsub_connection_whose_path_dies_silently_is_noticed_and_resubscribed(
    redis_server, redis_client, monkeypatch, caplog
):
    """Without a ping, `listen` waits on a dead path forever: every message is lost, unlogged."""
    monkeypatch.setattr(bus, "IDLE_PING", 0.3)
    monkeypatch.setattr(bus, "PONG_TIMEOUT", 0.3)
    caplog.set_level(logging.WARNING, logger="gateway.cluster")
    proxy = BlackholeProxy(redis_server.port)
    relay = await asyncio.start_server(proxy.relay, "127.0.0.1", 0)
    through_proxy = connect(f"redis://127.0.0.1:{relay.sockets[0].getsockname()[1]}/0")
    received: list[bytes] = []
    subscribed: list[float] = []
    listener = asyncio.create_task(
        listen_forever(
            through_proxy, "t:silent", received.append, lambda: subscribed.append(time.monotonic())
        )
    )
    try:
        await eventually(lambda: len(subscribed) == 1)
        await asyncio.sleep(0.8)  # idle past a ping: an answered ping keeps the subscription
        assert len(subscribed) == 1 and not caplog.records
        proxy.cut()
        cut_at = time.monotonic()
        assert await redis_client.publish("t:silent", b"lost") >= 1  # swallowed on the way
        await eventually(lambda: [r.msg for r in caplog.records] == ["cluster_channel_lost"])
        assert "no answer to a ping" in caplog.records[0].fields["error"]
        await eventually(lambda: len(subscribed) == 2)  # on a new connection
        assert subscribed[1] - cut_at < 3.0
        await redis_client.publish("t:silent", b"after")
        await eventually(lambda: received == [b"after"])
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await through_proxy.aclose()
        proxy.close()
        relay.close()


async def test_a_write_redis_rejects_is_dropped_with_a_warning_and_the_others_still_go(
    redis_client, caplog
):
    """A stored record that is not JSON makes the write script fail for that key: the token
    revocation queued behind it must still reach Redis (it used to wait forever)."""
    caplog.set_level(logging.WARNING, logger="gateway.cluster")
    records, tokens = MirroredRecordStore(), MirroredTokenStore()
    mirror = StateMirror(redis_client, "f:", records, tokens)
    keys = StateKeys("f:")
    records.put(ChargePointRecord("CPBAD", security_profile=1))
    await mirror.flush()
    await redis_client.hset(keys.hash("records"), "CPBAD", b"{not json")  # corrupted elsewhere
    records.put(ChargePointRecord("CPBAD", security_profile=2))  # a patch: decodes the old one
    _, token = new_token("viewer")
    tokens.put(token)
    assert tokens.revoke(token.token_id)
    await mirror.flush()
    stored = orjson.loads(await redis_client.hget(keys.hash("tokens"), token.hash))
    assert stored["revoked"] is True
    (refused,) = [r.fields for r in caplog.records if r.msg == "state_write_refused"]
    assert refused["identity"] == "CPBAD" and refused["reason"].startswith("rejected")
    assert not records.hash.pending and not tokens.hash.pending


async def test_a_sync_whose_snapshot_is_older_than_an_applied_announcement_does_not_undo_it(
    redis_server, redis_client, monkeypatch
):
    """The whole hash is on its way (a big HGETALL) when the CLI disables CPOLD and the
    announcement is applied: the older snapshot must not enable it again."""
    records = MirroredRecordStore()
    mirror = StateMirror(redis_client, "o:", records, None)
    cli = RedisRecordStore(sync_redis.Redis.from_url(redis_server.url), "o:")
    await mirror.start()
    try:
        await subscribed(redis_client, "o:state")
        cli.put(ChargePointRecord("CPOLD", security_profile=1))
        await eventually(lambda: records.get("CPOLD") is not None)
        snapshot_taken, deliver = asyncio.Event(), asyncio.Event()
        real_hgetall = redis_client.hgetall

        async def slow_hgetall(key):
            snapshot = await real_hgetall(key)
            snapshot_taken.set()
            await deliver.wait()
            return snapshot

        monkeypatch.setattr(redis_client, "hgetall", slow_hgetall)
        records.hash.version = UNREAD  # this sync reads the whole hash
        sync = asyncio.create_task(mirror.sync())
        await asyncio.wait_for(snapshot_taken.wait(), 5)
        cli.put(ChargePointRecord("CPOLD", security_profile=1, enabled=False))
        await eventually(lambda: not records.get("CPOLD").enabled)  # the announcement
        deliver.set()
        await asyncio.wait_for(sync, 5)
        assert not records.get("CPOLD").enabled, "the older snapshot undid the newer change"
        monkeypatch.undo()
        records.hash.version = UNREAD
        await mirror.sync()  # a later full read agrees
        assert not records.get("CPOLD").enabled
    finally:
        await mirror.stop()
        cli._client.close()


async def test_a_write_redis_refuses_for_now_is_kept_and_retried_not_dropped():
    """Out of memory (or read-only after a failover): not the key's fault. The change stays
    pending and in the node's copy, and reaches Redis once it takes writes again."""
    server = start_redis()
    client = aioredis.from_url(server.url)
    try:
        records = MirroredRecordStore()
        mirror = StateMirror(client, "r:", records, None)
        records.put(ChargePointRecord("CPMEM", security_profile=1))
        await mirror.flush()
        await client.config_set("maxmemory-policy", "noeviction")
        await client.config_set("maxmemory", 1)
        records.put(ChargePointRecord("CPMEM", security_profile=1, enabled=False))
        with pytest.raises(sync_redis.ResponseError):
            await mirror.flush()
        assert records.hash.pending and not records.get("CPMEM").enabled
        await client.config_set("maxmemory", 0)
        await mirror.flush()
        stored = orjson.loads(await client.hget(StateKeys("r:").hash("records"), "CPMEM"))
        assert stored["enabled"] is False and not records.hash.pending
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize(
    ("message", "own"),
    [
        ("user_script:3: Expected value but found invalid token at character 1 script: f", True),
        ("ERR Error running script (call to f_1): @user_script:3: Expected value", True),
        ("ERR Error running script (call to f_1): @user_script:1: -OOM command not allowed", False),
        ("MISCONF Redis is configured to save RDB snapshots, script: f, on @user_script:1.", False),
        ("BUSY Redis is busy running a script", False),
    ],
)
def test_only_the_scripts_own_failures_count_as_the_keys(message: str, own: bool) -> None:
    assert script_failed_on_this_key(sync_redis.ResponseError(message)) is own
    assert not script_failed_on_this_key(sync_redis.exceptions.ReadOnlyError(message))


async def test_a_full_read_asked_for_before_our_write_was_acknowledged_does_not_undo_it(
    redis_client, monkeypatch
):
    """Our write is pending when the periodic sync sends HGETALL; the write's reply comes first
    (pending cleared), the older snapshot lands while flush reads the key back: the record this
    node just created must not vanish, not even for a moment (its session would be closed as
    removed by the change listener)."""
    records = MirroredRecordStore()
    mirror = StateMirror(redis_client, "a:", records, None)
    seen: list[tuple[set[str], bool]] = []
    mirror.on_change = lambda kind, keys: seen.append((keys, records.get("CP9") is not None))
    records.put(ChargePointRecord("CP9", security_profile=1))  # pending
    snapshot_taken, deliver = asyncio.Event(), asyncio.Event()
    real_hgetall, real_hget = redis_client.hgetall, redis_client.hget

    async def slow_hgetall(key):
        snapshot = await real_hgetall(key)  # without CP9
        snapshot_taken.set()
        await deliver.wait()
        return snapshot

    monkeypatch.setattr(redis_client, "hgetall", slow_hgetall)
    sync = asyncio.create_task(mirror.sync())
    await asyncio.wait_for(snapshot_taken.wait(), 5)

    async def hget_after_the_snapshot(key, field):  # flush reads its write back
        deliver.set()
        await asyncio.wait_for(sync, 5)
        return await real_hget(key, field)

    monkeypatch.setattr(redis_client, "hget", hget_after_the_snapshot)
    await mirror.flush()
    assert sync.done() and records.get("CP9") is not None
    assert all(present for _, present in seen), seen


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[1]", b'{"kind": [1], "key": "x"}', b'{"kind": "records", "key": 5}'],
)
def test_a_malformed_state_message_is_logged_and_does_not_raise(redis_client, caplog, data):
    """An exception here would end the listener's subscription (and lose what is in flight)."""
    caplog.set_level(logging.WARNING, logger="gateway.cluster")
    mirror = StateMirror(redis_client, "x:", MirroredRecordStore(), None)
    mirror._on_message(data)
    assert [r.msg for r in caplog.records] == ["state_message_invalid"]
    mirror._on_message(b'{"kind": "tokens", "key": "t"}')  # not mirrored here: ignored
    assert len(caplog.records) == 1 and not mirror._applying
