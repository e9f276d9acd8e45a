"""The session directory contract, run against both implementations (in-memory and real Redis)."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from gateway.cluster import directory as directory_module
from gateway.cluster.directory import InMemoryDirectory, RedisDirectory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def backend(request) -> str:
    return request.param


@pytest.fixture
async def directory(backend, redis_server):
    if backend == "memory":
        yield InMemoryDirectory(ttl=30.0)
        return
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    yield RedisDirectory(client, prefix="test:", ttl=30.0)
    await client.aclose()


async def test_first_claim_is_free_and_the_next_takes_over_with_a_higher_epoch(directory):
    first = await directory.claim("CP1", "node-a")
    assert (first.previous_node, first.previous_epoch) == (None, None)
    second = await directory.claim("CP1", "node-b")
    assert second.epoch > first.epoch
    assert (second.previous_node, second.previous_epoch) == ("node-a", first.epoch)
    holder = await directory.holder("CP1")
    assert (holder.node, holder.epoch) == ("node-b", second.epoch)


async def test_a_replaced_session_can_neither_release_nor_refresh_its_successor(directory):
    old = await directory.claim("CP2", "node-a")
    new = await directory.claim("CP2", "node-b")
    assert not await directory.release("CP2", "node-a", old.epoch)
    assert not await directory.refresh("CP2", "node-a", old.epoch)
    assert not await directory.release("CP2", "node-b", old.epoch), "the epoch is the fence"
    assert (await directory.holder("CP2")).node == "node-b"
    assert await directory.refresh("CP2", "node-b", new.epoch)
    assert await directory.release("CP2", "node-b", new.epoch)
    assert await directory.holder("CP2") is None
    again = await directory.claim("CP2", "node-a")
    assert again.epoch > new.epoch and again.previous_node is None, "epochs never go back"


async def test_identities_are_independent(directory):
    a = await directory.claim("CP-A", "node-a")
    b = await directory.claim("CP-B", "node-b")
    assert a.previous_node is None and b.previous_node is None
    assert (await directory.holder("CP-A")).node == "node-a"


async def test_concurrent_claims_of_one_identity_form_a_single_chain_of_holders(directory):
    """A reconnect storm of one identity across nodes: linearizable claims, never two holders."""
    nodes = itertools.cycle(["node-a", "node-b", "node-c", "node-d", "node-e"])
    claims = await asyncio.gather(*(directory.claim("RACE", next(nodes)) for _ in range(60)))
    epochs = sorted(c.epoch for c in claims)
    assert epochs == list(range(epochs[0], epochs[0] + 60)), "every claim got its own epoch"
    by_epoch = {c.epoch: c for c in claims}
    for claim in claims:
        if claim.epoch != epochs[0]:
            assert claim.previous_epoch == claim.epoch - 1, "each claim replaced exactly the last"
    last = by_epoch[epochs[-1]]
    holder = await directory.holder("RACE")
    assert holder.epoch == last.epoch


async def test_in_memory_claim_expires_after_its_ttl():
    clock = FakeClock()
    directory = InMemoryDirectory(ttl=15.0, clock=clock)
    claim = await directory.claim("CP3", "node-a")
    clock.now += 10
    assert await directory.refresh("CP3", "node-a", claim.epoch)
    clock.now += 14
    assert (await directory.holder("CP3")).node == "node-a", "refreshed: still held"
    clock.now += 2
    assert await directory.holder("CP3") is None, "a dead node's claim expires"


async def test_redis_claim_expires_after_its_ttl(redis_client):
    # Redis's own clock (PX): half a TTL of room at each step for a slow machine
    directory = RedisDirectory(redis_client, prefix="test:", ttl=1.5)
    claim = await directory.claim("CP4", "node-a")
    await asyncio.sleep(0.75)
    assert await directory.refresh("CP4", "node-a", claim.epoch)
    await asyncio.sleep(1.0)  # past the first TTL, within the refreshed one
    assert (await directory.holder("CP4")).node == "node-a"
    refreshed_until = asyncio.get_running_loop().time() + 0.75
    while await directory.holder("CP4") is not None:
        assert asyncio.get_running_loop().time() < refreshed_until + 2, "the claim never expired"
        await asyncio.sleep(0.05)


async def test_redis_keys_of_one_identity_share_a_cluster_hash_slot(redis_client):
    directory = RedisDirectory(redis_client, prefix="ocppgw:", ttl=30)
    await directory.claim("CP5", "node-a")
    keys = sorted(k.decode() for k in await redis_client.keys("ocppgw:*"))
    assert keys == ["ocppgw:{cp:CP5}:claim", "ocppgw:{cp:CP5}:epoch"]


async def test_claim_if_free_never_takes_over(directory):
    """Restoring claims after a Redis outage must not evict a newer session elsewhere."""
    held = await directory.claim("CP6", "node-b")
    assert await directory.claim_if_free("CP6", "node-a") is None
    assert (await directory.holder("CP6")).node == "node-b"
    assert await directory.release("CP6", "node-b", held.epoch)
    restored = await directory.claim_if_free("CP6", "node-a")
    assert restored is not None and restored.epoch > held.epoch
    assert (await directory.holder("CP6")).node == "node-a"


async def test_a_superseded_claim_does_not_come_back_after_its_successor_ended(directory):
    """Node A missed the takeover message; B's newer session ended (released) before A's next
    refresh: A's session is superseded (False, closed), not restorable (None)."""
    old = await directory.claim("CP9", "node-a")
    new = await directory.claim("CP9", "node-b")
    assert await directory.release("CP9", "node-b", new.epoch)
    assert await directory.refresh("CP9", "node-a", old.epoch) is False
    assert await directory.holder("CP9") is None


async def test_a_claim_that_expired_with_no_newer_one_is_restorable(redis_client):
    """Expired (or lost with Redis's data) and nothing newer: None, the caller may restore it."""
    directory = RedisDirectory(redis_client, prefix="exp:", ttl=30)
    claim = await directory.claim("CP10", "node-a")
    await redis_client.delete("exp:{cp:CP10}:claim")  # expired
    assert await directory.refresh("CP10", "node-a", claim.epoch) is None
    await redis_client.delete("exp:{cp:CP10}:epoch")  # Redis lost everything
    assert await directory.refresh("CP10", "node-a", claim.epoch) is None


async def test_refresh_many_answers_each_claim_in_order_as_refresh_does(directory):
    held = await directory.claim("M1", "node-a")
    taken = await directory.claim("M2", "node-a")
    await directory.claim("M2", "node-b")  # taken over
    answers = await directory.refresh_many(
        "node-a", [("M1", held.epoch), ("M2", taken.epoch), ("M3", 7)]
    )
    assert answers == [True, False, None]
    assert await directory.refresh_many("node-a", []) == []


async def test_redis_refresh_many_spans_several_pipelined_batches(redis_client, monkeypatch):
    monkeypatch.setattr(directory_module, "BATCH", 4)
    directory = RedisDirectory(redis_client, prefix="many:", ttl=30)
    claims = [(f"B{n}", (await directory.claim(f"B{n}", "node-a")).epoch) for n in range(10)]
    await directory.claim("B5", "node-b")
    answers = await directory.refresh_many("node-a", claims)
    assert answers == [n != 5 for n in range(10)]


async def test_redis_refresh_many_answers_a_broken_key_alone(redis_client):
    """A foreign value under one claim's name fails that claim's script only (it used to fail
    the whole round: every claim of the worker would have expired)."""
    directory = RedisDirectory(redis_client, prefix="odd:", ttl=30)
    good = await directory.claim("G1", "node-a")
    bad = await directory.claim("G2", "node-a")
    await redis_client.delete("odd:{cp:G2}:claim")
    await redis_client.set("odd:{cp:G2}:claim", "not a hash")
    answers = await directory.refresh_many("node-a", [("G1", good.epoch), ("G2", bad.epoch)])
    assert answers == [True, None]


async def test_redis_refresh_many_runs_a_batch_again_when_redis_forgot_the_script(
    redis_client, monkeypatch
):
    directory = RedisDirectory(redis_client, prefix="ns:", ttl=30)
    claim = await directory.claim("N1", "node-a")
    real_batch, calls = directory._refresh_batch, []

    async def forgetful(node, batch):
        calls.append(len(batch))
        if len(calls) == 1:  # Redis restarted between the script check and the pipeline
            return [NoScriptError("NOSCRIPT No matching script")] * len(batch)
        return await real_batch(node, batch)

    monkeypatch.setattr(directory, "_refresh_batch", forgetful)
    assert await directory.refresh_many("node-a", [("N1", claim.epoch)]) == [True]
    assert calls == [1, 1]
