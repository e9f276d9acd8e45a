"""Two gateway nodes sharing one real Redis: a new session of an identity on node B closes the old
one on node A (pub/sub), and a claim lost while a message was missed closes at the next refresh."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import websockets

from gateway import runtime
from gateway.cluster.directory import RedisDirectory


async def _heartbeat(ws, message_id: str) -> None:
    await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
    assert (await asyncio.wait_for(ws.recv(), 2)).startswith(f'[3,"{message_id}"')


@pytest.fixture
async def two_nodes(start_gateway, redis_server, request):
    prefix = f"t-{request.node.name[:20]}:"
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    nodes = []
    for name in ("node-a", "node-b"):
        nodes.append(
            await start_gateway(
                redis={"url": redis_server.url, "node_id": name, "key_prefix": prefix}
            )
        )
    yield nodes, RedisDirectory(client, prefix=prefix)
    await client.aclose()


async def test_session_on_another_node_replaces_the_old_one(two_nodes):
    (a, b), directory = two_nodes
    async with websockets.connect(a.url("MOVE1"), subprotocols=["ocpp1.6"]) as old:
        await _heartbeat(old, "1")
        assert (await directory.holder("MOVE1")).node == "node-a"
        async with websockets.connect(b.url("MOVE1"), subprotocols=["ocpp1.6"]) as new:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(old.recv(), 3)
            assert closed.value.rcvd.code == 4000
            assert "replaced" in closed.value.rcvd.reason
            await asyncio.sleep(0.1)  # node A released its (stale) claim: a no-op
            await _heartbeat(new, "2")
            holder = await directory.holder("MOVE1")
            assert holder.node == "node-b"
    for _ in range(50):
        if await directory.holder("MOVE1") is None:
            break
        await asyncio.sleep(0.02)
    assert await directory.holder("MOVE1") is None, "node B released its claim on disconnect"


async def test_claim_lost_without_a_message_closes_the_session_at_the_next_refresh(two_nodes):
    (a, _), directory = two_nodes
    async with websockets.connect(a.url("MOVE2"), subprotocols=["ocpp1.6"]) as old:
        await _heartbeat(old, "1")
        await directory.claim("MOVE2", "node-gone")  # e.g. the pub/sub message was missed
        await a.gateway.refresh_claims()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), 3)
    assert closed.value.rcvd.code == 4000


async def test_reconnects_of_one_identity_racing_across_nodes_leave_one_session(two_nodes):
    (a, b), directory = two_nodes
    sockets = await asyncio.gather(
        *(
            websockets.connect((a if i % 2 else b).url("RACE1"), subprotocols=["ocpp1.6"])
            for i in range(10)
        )
    )
    deadline = asyncio.get_running_loop().time() + 10
    while sum(ws.close_code is None for ws in sockets) > 1:  # the losers are being closed
        assert asyncio.get_running_loop().time() < deadline, "more than one session survives"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and stays so
    alive = []
    for ws in sockets:
        try:
            await _heartbeat(ws, "x")
            alive.append(ws)
        except (websockets.ConnectionClosed, TimeoutError):
            pass
    holder = await directory.holder("RACE1")
    local = [n for n in (a, b) if n.gateway.registry.get("RACE1") is not None]
    for ws in sockets:
        await ws.close()
    assert len(alive) == 1, "exactly one of the racing sessions survives"
    assert len(local) == 1 and holder is not None
    assert local[0].gateway.node_id == holder.node
    assert not a.gateway._claim_locks and not b.gateway._claim_locks, "no per-identity lock leaks"


async def test_restoring_a_failed_claim_does_not_evict_the_newer_session_elsewhere(two_nodes):
    (a, b), directory = two_nodes
    async with websockets.connect(a.url("STALE1"), subprotocols=["ocpp1.6"]) as old:
        await _heartbeat(old, "1")
        a.gateway.registry.get("STALE1").claim_epoch = None  # its claim had failed (Redis blip)
        await directory.release("STALE1", "node-a", (await directory.holder("STALE1")).epoch)
        async with websockets.connect(b.url("STALE1"), subprotocols=["ocpp1.6"]) as new:
            await _heartbeat(new, "2")
            await a.gateway.refresh_claims()  # A must not take the identity back
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(old.recv(), 3)  # A's stale session is the one closed
            await _heartbeat(new, "3")
            assert (await directory.holder("STALE1")).node == "node-b"


async def test_a_claim_redis_took_but_answered_too_late_is_adopted_not_taken_for_a_takeover(
    two_nodes, monkeypatch
):
    """Redis stored the claim, the answer came after the gateway's timeout: the session has no
    epoch; the refresh finds this worker's own claim and keeps the session (it used to close it
    as replaced)."""
    (a, _), directory = two_nodes
    monkeypatch.setattr(runtime, "REDIS_TIMEOUT", 0.2)
    claim = a.gateway.directory.claim

    async def late_claim(identity: str, node: str):
        taken = await claim(identity, node)  # lands in Redis...
        await asyncio.sleep(0.5)  # ...and answers after the timeout
        return taken

    monkeypatch.setattr(a.gateway.directory, "claim", late_claim)
    async with websockets.connect(a.url("LATE1"), subprotocols=["ocpp1.6"]) as ws:
        await _heartbeat(ws, "1")
        session = a.gateway.registry.get("LATE1")
        assert session.claim_epoch is None, "the claim's answer timed out"
        held = await directory.holder("LATE1")
        assert held.node == "node-a"
        await a.gateway.refresh_claims()
        assert session.claim_epoch == held.epoch and not session.closed
        await _heartbeat(ws, "2")


async def test_the_takeover_message_does_not_hold_up_the_new_session(two_nodes, monkeypatch):
    """Telling the old node goes in the background: a Redis that stops answering after the claim
    does not delay the new session's first answer."""
    (a, b), _ = two_nodes
    async with websockets.connect(a.url("SLOWBUS"), subprotocols=["ocpp1.6"]) as old:
        await _heartbeat(old, "1")
        hang = asyncio.Event()

        async def publish_never_answers(node, message):
            await hang.wait()

        monkeypatch.setattr(b.gateway.bus, "publish", publish_never_answers)
        async with websockets.connect(b.url("SLOWBUS"), subprotocols=["ocpp1.6"]) as new:
            await _heartbeat(new, "2")  # within 2 s
        hang.set()


async def test_a_restore_whose_answer_was_lost_is_adopted_at_the_next_refresh(two_nodes):
    """A refresh cancelled after its restore landed leaves a newer claim of this node in Redis
    and the old epoch on the session: the next refresh adopts it instead of closing the session
    as replaced."""
    (a, _), directory = two_nodes
    async with websockets.connect(a.url("LOST1"), subprotocols=["ocpp1.6"]) as ws:
        await _heartbeat(ws, "1")
        session = a.gateway.registry.get("LOST1")
        old_epoch = session.claim_epoch
        landed = await directory.claim("LOST1", "node-a")  # the restore Redis took
        assert landed.epoch > old_epoch
        await a.gateway.refresh_claims()
        assert session.claim_epoch == landed.epoch and not session.closed
        await _heartbeat(ws, "2")


async def test_one_identitys_broken_keys_do_not_stop_the_others_being_restored(
    two_nodes, redis_server, request, caplog
):
    """Claims lost (Redis restarted empty); one identity's claim name holds a foreign value:
    that one is reported, the others are restored in the same round."""
    (a, _), directory = two_nodes
    prefix = f"t-{request.node.name[:20]}:"
    client = aioredis.from_url(redis_server.url)
    try:
        sockets = [
            await websockets.connect(a.url(name), subprotocols=["ocpp1.6"])
            for name in ("ODD1", "FINE1", "FINE2")
        ]
        for ws in sockets:
            await _heartbeat(ws, "1")
        for name in ("ODD1", "FINE1", "FINE2"):
            await client.delete(f"{prefix}{{cp:{name}}}:claim", f"{prefix}{{cp:{name}}}:epoch")
        await client.set(f"{prefix}{{cp:ODD1}}:claim", "not a hash")
        await a.gateway.refresh_claims()
        for name in ("FINE1", "FINE2"):
            assert (await directory.holder(name)).node == "node-a"
        failed = [r.fields for r in caplog.records if r.msg == "claim_refresh_failed"]
        assert [f.get("identity") for f in failed] == ["ODD1"]
        for ws in sockets:
            await _heartbeat(ws, "2")  # none closed
            await ws.close()
    finally:
        await client.aclose()
