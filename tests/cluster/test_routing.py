"""Commands entering one node reach a charge point held by another node, and the real answer
comes back (through the UI API too)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
import websockets

from gateway.ocppj.codec import CallError, CallResult
from gateway.router import CallFailed
from security.tokens import new_token

from ..integration.clients import running_station


async def until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def until_async(read, check, timeout: float = 5.0):
    """The first value of `read()` that passes `check`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check(value := await read()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return value


CHANGE = {"key": "HeartbeatInterval", "value": "60"}


async def claimed(node, identity: str) -> None:
    """Wait until `node` holds `identity` cluster-wide (its claim is written)."""
    for _ in range(100):
        session = node.gateway.registry.get(identity)
        if session is not None and session.claim_epoch is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{identity} was not claimed")


async def test_call_entering_node_b_reaches_the_charge_point_on_node_a(nodes):
    (a, b), _, _ = nodes
    async with running_station(a.url("HELD-A"), "ocpp1.6", "HELD-A") as station:
        await claimed(a, "HELD-A")
        result = await b.gateway.router.call("HELD-A", "ChangeConfiguration", CHANGE)
        error = await b.gateway.router.call("HELD-A", "ClearCache", {})
    assert isinstance(result, CallResult) and result.payload == {"status": "Accepted"}
    assert station.changed == ("HeartbeatInterval", "60")
    assert isinstance(error, CallError) and error.error_code in {"NotImplemented", "NotSupported"}


async def test_remote_call_failures_are_reported_as_on_the_holding_node(nodes):
    (a, b), _, _ = nodes
    with pytest.raises(CallFailed) as offline:
        await b.gateway.router.call("NOWHERE", "ClearCache", {})
    assert offline.value.reason == "offline"
    async with running_station(a.url("HELD-B"), "ocpp1.6", "HELD-B"):
        await claimed(a, "HELD-B")
        with pytest.raises(CallFailed) as invalid:
            await b.gateway.router.call("HELD-B", "ChangeConfiguration", {"key": 1})
    assert invalid.value.reason == "invalid"


async def test_ui_command_on_node_b_returns_the_real_answer_from_node_a(nodes):
    (a, b), tokens, _ = nodes
    secret, record = new_token("operator")
    tokens.put(record)
    async with (
        running_station(a.url("HELD-C"), "ocpp1.6", "HELD-C"),
        websockets.connect(
            f"ws://127.0.0.1:{b.port}/ui", additional_headers={"Authorization": f"Bearer {secret}"}
        ) as ui,
    ):
        assert orjson.loads(await ui.recv())["type"] == "welcome"
        await claimed(a, "HELD-C")
        await ui.send(
            orjson.dumps(
                {
                    "type": "command",
                    "id": "c1",
                    "identity": "HELD-C",
                    "action": "ChangeConfiguration",
                    "payload": CHANGE,
                }
            ).decode()
        )
        answer = orjson.loads(await asyncio.wait_for(ui.recv(), 5))
    assert (answer["type"], answer["outcome"], answer["payload"]) == (
        "result",
        "callresult",
        {"status": "Accepted"},
    )


async def test_ui_subscriber_on_node_b_sees_events_of_a_charge_point_on_node_a(nodes):
    (a, b), tokens, _ = nodes
    secret, record = new_token("admin")
    tokens.put(record)
    async with websockets.connect(
        f"ws://127.0.0.1:{b.port}/ui", additional_headers={"Authorization": f"Bearer {secret}"}
    ) as ui:
        assert orjson.loads(await ui.recv())["type"] == "welcome"
        await ui.send(
            orjson.dumps(
                {
                    "type": "subscribe",
                    "id": "s",
                    "identities": ["FAR-*"],
                    "events": ["connection", "message"],
                }
            ).decode()
        )
        assert orjson.loads(await ui.recv())["type"] == "subscribed"
        await until(lambda: a.gateway.router.cluster_events.remote_watchers)  # B's announced
        async with websockets.connect(a.url("FAR-1"), subprotocols=["ocpp1.6"]) as cp:
            await cp.send('[2,"f1","Heartbeat",{}]')
            await asyncio.wait_for(cp.recv(), 2)
            seen = []
            while len(seen) < 3:
                message = orjson.loads(await asyncio.wait_for(ui.recv(), 3))
                if message["type"] == "event":
                    seen.append((message["event"], message.get("direction")))
    assert seen == [("connected", None), ("message", "in"), ("message", "out")]


async def test_ui_list_on_node_b_shows_charge_points_of_every_node_within_scope(nodes):
    (a, b), tokens, _ = nodes
    secret, token = new_token("viewer", ("LIST-*",))
    tokens.put(token)

    async def listed() -> dict:
        async with websockets.connect(
            f"ws://127.0.0.1:{b.port}/ui", additional_headers={"Authorization": f"Bearer {secret}"}
        ) as ui:
            assert orjson.loads(await ui.recv())["type"] == "welcome"
            await ui.send(orjson.dumps({"type": "list", "id": "l"}))
            return orjson.loads(await asyncio.wait_for(ui.recv(), 3))

    async with (
        running_station(a.url("LIST-A"), "ocpp1.6", "LIST-A"),
        running_station(b.url("LIST-B"), "ocpp2.0.1", "LIST-B"),
        running_station(a.url("HIDDEN-A"), "ocpp1.6", "HIDDEN-A"),
    ):
        for node, identity in ((a, "LIST-A"), (b, "LIST-B"), (a, "HIDDEN-A")):
            await claimed(node, identity)
        # the presence writer's batch reaches Redis
        answer = await until_async(listed, lambda answer: len(answer["charge_points"]) >= 2)
        assert "partial" not in answer
        by_identity = {item["identity"]: item for item in answer["charge_points"]}
        assert sorted(by_identity) == ["LIST-A", "LIST-B"]  # HIDDEN-A is out of the token's scope
        assert by_identity["LIST-A"]["node"] == "node-a"
        assert by_identity["LIST-A"]["last_message_at"] is None  # known on node A only
        assert by_identity["LIST-B"]["node"] == "node-b"
        assert by_identity["LIST-B"]["last_message_at"] > 0
        assert by_identity["LIST-A"]["subprotocol"] == "ocpp1.6"
    await until_async(listed, lambda answer: answer["charge_points"] == [])  # they leave it


async def test_the_listing_repairs_itself_after_lost_writes(nodes, redis_server):
    """A lost add and a ghost left by a lost remove are both corrected at the next heartbeat."""
    (a, b), _, _ = nodes
    prefix = a.gateway.config.redis.key_prefix
    client = aioredis.from_url(redis_server.url)
    key = f"{prefix}sessions:node-a"
    async with running_station(a.url("REPAIR-1"), "ocpp1.6", "REPAIR-1"):
        await claimed(a, "REPAIR-1")
        await asyncio.sleep(0.2)
        await client.hdel(key, "REPAIR-1")  # the add was lost
        await client.hset(key, "GHOST-1", orjson.dumps({"identity": "GHOST-1"}))  # a lost remove
        a.gateway.router.presence.beat()
        await asyncio.sleep(0.3)
        listed = {item["identity"] for item in await b.gateway.router.presence.others()}
    await client.aclose()
    assert listed == {"REPAIR-1"}


async def test_one_list_at_a_time_per_ui_client(nodes, monkeypatch):
    """A listing reads every node's sessions: a client cannot pile them up."""
    (_a, b), tokens, _ = nodes
    secret, token = new_token("viewer")
    tokens.put(token)
    presence = b.gateway.router.presence
    others = presence.others

    async def slow_others():
        await asyncio.sleep(0.3)
        return await others()

    monkeypatch.setattr(presence, "others", slow_others)
    async with websockets.connect(
        f"ws://127.0.0.1:{b.port}/ui", additional_headers={"Authorization": f"Bearer {secret}"}
    ) as ui:
        assert orjson.loads(await ui.recv())["type"] == "welcome"
        await ui.send(orjson.dumps({"type": "list", "id": "1"}))
        await ui.send(orjson.dumps({"type": "list", "id": "2"}))
        answers = [orjson.loads(await asyncio.wait_for(ui.recv(), 3)) for _ in range(2)]
        await ui.send(orjson.dumps({"type": "list", "id": "3"}))
        third = orjson.loads(await asyncio.wait_for(ui.recv(), 3))
    by_id = {answer["id"]: answer for answer in answers}
    assert by_id["2"]["code"] == "rate_limited"
    assert by_id["1"]["type"] == "charge_points"
    assert third["type"] == "charge_points"  # the first one finished: allowed again
