"""Session events cross Redis only while some node has a watcher (UI client) for them."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
import websockets

from gateway.events import GatewayEvent
from gateway.registry import InMemoryRegistry
from gateway.router import Router
from security.tokens import new_token


async def channel_messages(pubsub, seconds: float) -> list[dict]:
    """What the events channel carried during `seconds`."""
    seen = []
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            seen.append(orjson.loads(message["data"]))
    return seen


async def heartbeats(cp, count: int) -> None:
    for index in range(count):
        await cp.send(f'[2,"h{index}","Heartbeat",{{}}]')
        await asyncio.wait_for(cp.recv(), 2)


async def test_events_cross_redis_only_while_another_node_watches(nodes, redis_server):
    (a, b), tokens, prefix = nodes
    secret, record = new_token("admin")
    tokens.put(record)
    spy = aioredis.from_url(redis_server.url)
    pubsub = spy.pubsub()
    await pubsub.subscribe(f"{prefix}events")
    try:
        async with websockets.connect(a.url("QUIET-1"), subprotocols=["ocpp1.6"]) as cp:
            await heartbeats(cp, 5)
            assert await channel_messages(pubsub, 0.5) == []  # nobody watches: no traffic
            assert not a.gateway.router.wants_messages

            async with websockets.connect(
                f"ws://127.0.0.1:{b.port}/ui",
                additional_headers={"Authorization": f"Bearer {secret}"},
            ) as ui:
                assert orjson.loads(await ui.recv())["type"] == "welcome"
                announced = await channel_messages(pubsub, 0.5)
                assert {"node": b.gateway.node_id, "watching": True} in announced
                assert a.gateway.router.wants_messages  # at once, not at the next refresh
                await heartbeats(cp, 2)
                carried = await channel_messages(pubsub, 0.3)
                kinds = [m["event"]["kind"] for m in carried if "event" in m]
                assert kinds.count("message") == 4  # 2 CALLs in, 2 answers out
            for _ in range(40):  # the watcher left: node A stops within a refresh or two
                if not a.gateway.router.wants_messages:
                    break
                await asyncio.sleep(0.1)
            assert not a.gateway.router.wants_messages
            await channel_messages(pubsub, 0.2)
            await heartbeats(cp, 3)
            assert await channel_messages(pubsub, 0.4) == []
    finally:
        await pubsub.aclose()
        await spy.aclose()


def test_a_listener_without_messages_does_not_make_frames_into_events():
    router = Router(InMemoryRegistry())
    seen: list[str] = []
    router.subscribe(lambda event: seen.append(event.kind), messages=False)
    assert router.has_listeners and not router.wants_messages
    router.publish(GatewayEvent("message", "CP1", "ocpp1.6", 0.0, direction="in", frame="[]"))
    router.publish(GatewayEvent("connected", "CP1", "ocpp1.6", 0.0))
    assert seen == ["connected"]
    watcher: list[str] = []
    router.subscribe(watcher.append)
    assert router.wants_messages
    router.unsubscribe(watcher.append)
    assert not router.wants_messages
    with pytest.raises(ValueError):
        router.unsubscribe(watcher.append)
