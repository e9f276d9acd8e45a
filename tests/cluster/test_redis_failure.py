"""When Redis goes away and comes back: sessions stay up and answered, commands to local charge
points keep working, claims are restored when Redis returns, and takeovers work again."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
import websockets

from gateway.cluster.directory import RedisDirectory

from ..redis_server import start_redis


async def _heartbeat(ws, message_id: str) -> None:
    await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
    assert (await asyncio.wait_for(ws.recv(), 3)).startswith(f'[3,"{message_id}"')


async def test_redis_restart_under_live_sessions(start_gateway):
    redis = start_redis()
    try:
        settings = {"url": redis.url, "key_prefix": "f:"}
        a = await start_gateway(redis={**settings, "node_id": "node-a"})
        b = await start_gateway(redis={**settings, "node_id": "node-b"})
        async with websockets.connect(a.url("SURV-1"), subprotocols=["ocpp1.6"]) as first:
            await _heartbeat(first, "1")
            redis.stop()  # Redis is gone
            await _heartbeat(first, "2")  # the session is still answered
            async with websockets.connect(a.url("SURV-2"), subprotocols=["ocpp1.6"]) as second:
                await _heartbeat(second, "3")  # new connections too (claims fail, logged)
                assert a.gateway.registry.get("SURV-2").claim_epoch is None
                redis = start_redis(port=redis.port)  # back, with none of its data
                client = aioredis.from_url(redis.url)
                directory = RedisDirectory(client, prefix="f:")
                await a.gateway.refresh_claims()  # the periodic refresh, without waiting for it
                assert (await directory.holder("SURV-1")).node == "node-a"
                assert (await directory.holder("SURV-2")).node == "node-a"
                await asyncio.sleep(3)  # node A's pub/sub listener resubscribes (backoff)
                async with websockets.connect(b.url("SURV-1"), subprotocols=["ocpp1.6"]) as moved:
                    try:
                        await asyncio.wait_for(first.recv(), 5)
                        raise AssertionError("the old session should have been closed")
                    except websockets.ConnectionClosed as closed:
                        assert closed.rcvd.code == 4000
                    await _heartbeat(moved, "4")
                await client.aclose()
    finally:
        redis.stop()


async def test_new_connections_can_be_refused_while_redis_is_down(start_gateway):
    redis = start_redis()
    try:
        node = await start_gateway(
            redis={
                "url": redis.url,
                "key_prefix": "g:",
                "node_id": "node-r",
                "when_unavailable": "refuse",
            }
        )
        async with websockets.connect(node.url("UP-1"), subprotocols=["ocpp1.6"]) as live:
            await _heartbeat(live, "1")
            redis.stop()
            await node.gateway.refresh_claims()  # the periodic health check finds Redis gone
            try:
                await websockets.connect(node.url("UP-2"), subprotocols=["ocpp1.6"])
                raise AssertionError("expected a refusal")
            except websockets.exceptions.InvalidStatus as refused:
                assert refused.response.status_code == 503
                assert refused.response.headers["Retry-After"] == "10"
            await _heartbeat(live, "2")  # the live session is still served
            redis = start_redis(port=redis.port)
            await node.gateway.refresh_claims()
            async with websockets.connect(node.url("UP-3"), subprotocols=["ocpp1.6"]) as back:
                await _heartbeat(back, "3")
    finally:
        redis.stop()
