"""The backend's commands: run once on some gateway node, the charge point's real answer (or why
there is none) in the result stream; a dead node's commands are taken over."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from ..integration import clients
from ..integration.clients import Station16, running_station

CHANGE = {"key": "HeartbeatInterval", "value": "60"}


class CountingStation(Station16):
    """A 1.6 charge point counting the ChangeConfiguration requests it gets."""

    received = 0

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.received += 1
        return result16.ChangeConfiguration(status="Accepted")


async def post(redis, prefix: str, command: dict | bytes) -> None:
    raw = command if isinstance(command, bytes) else orjson.dumps(command)
    await redis.xadd(f"{prefix}broker:commands", {"command": raw})


async def results(redis, prefix: str, count: int, timeout: float = 3.0) -> list[dict]:
    """The first `count` results of the result stream (waiting for them)."""
    for _ in range(int(timeout / 0.05)):
        entries = await redis.xrange(f"{prefix}broker:results")
        if len(entries) >= count:
            return [orjson.loads(fields[b"result"]) for _, fields in entries]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(entries)} of {count} results")


async def online(gateway, identity: str) -> None:
    for _ in range(100):
        session = gateway.gateway.registry.get(identity)
        if session is not None and session.claim_epoch is not None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{identity} did not connect")


async def test_a_command_returns_the_charge_points_real_answer_and_a_repeated_id_runs_once(
    forward_gateway, redis_client, prefix, monkeypatch
):
    monkeypatch.setitem(clients.STATIONS, "ocpp1.6", CountingStation)
    gateway = await forward_gateway()
    command = {"command_id": "c1", "identity": "CMD-1", "action": "ChangeConfiguration"}
    async with running_station(gateway.url("CMD-1"), "ocpp1.6", "CMD-1") as station:
        await online(gateway, "CMD-1")
        await post(redis_client, prefix, {**command, "payload": CHANGE, "timeout": 3})
        (first,) = await results(redis_client, prefix, 1)
        await post(redis_client, prefix, {**command, "payload": CHANGE})
        _, again = await results(redis_client, prefix, 2)
    assert first["status"] == "result" and first["payload"] == {"status": "Accepted"}
    assert (first["command_id"], first["identity"], first["action"]) == (
        "c1",
        "CMD-1",
        "ChangeConfiguration",
    )
    assert first["node"] == "node-a" and first["completed_at"].endswith("Z")
    assert again == first  # the remembered result, posted again
    assert station.received == 1
    pending = await redis_client.xpending(f"{prefix}broker:commands", "gateways")
    assert pending["pending"] == 0  # acknowledged once the result was written


async def test_commands_that_cannot_run_say_why(forward_gateway, redis_client, prefix):
    gateway = await forward_gateway()
    async with running_station(gateway.url("CMD-2"), "ocpp1.6", "CMD-2"):
        await online(gateway, "CMD-2")
        await post(
            redis_client,
            prefix,
            {"command_id": "off", "identity": "NOBODY", "action": "Reset", "payload": {}},
        )
        bad = {"command_id": "bad", "identity": "CMD-2", "action": "ChangeConfiguration"}
        await post(redis_client, prefix, {**bad, "payload": {"key": 1}})
        await post(redis_client, prefix, b"not json")
        found = {r["command_id"]: r for r in await results(redis_client, prefix, 3)}
    assert found["off"]["status"] == "offline"
    assert "not connected" in found["off"]["error"]["description"]
    assert found["bad"]["status"] == "invalid"  # the schema of the charge point's version
    assert found[None]["status"] == "invalid"
    assert found[None]["error"]["description"] == "the command is not JSON"


async def test_a_dead_nodes_pending_commands_are_reclaimed(forward_gateway, redis_client, prefix):
    stream = f"{prefix}broker:commands"
    await redis_client.xgroup_create(stream, "gateways", "0", mkstream=True)
    await post(
        redis_client,
        prefix,
        {
            "command_id": "c9",
            "identity": "CMD-3",
            "action": "ChangeConfiguration",
            "payload": CHANGE,
        },
    )
    # A node read it and died before running it: the entry is pending with that node.
    assert await redis_client.xreadgroup("gateways", "dead-node", {stream: ">"})
    gateway = await forward_gateway()
    async with running_station(gateway.url("CMD-3"), "ocpp1.6", "CMD-3") as station:
        await online(gateway, "CMD-3")
        gateway.gateway.broker.commands.claim_idle_seconds = 0.3
        (result,) = await results(redis_client, prefix, 1)
    assert result["status"] == "result" and result["node"] == "node-a"
    assert station.changed == ("HeartbeatInterval", "60")
    assert (await redis_client.xpending(stream, "gateways"))["pending"] == 0


async def test_commands_can_be_turned_off(forward_gateway, redis_client, prefix):
    await forward_gateway(commands=False)
    await post(redis_client, prefix, {"command_id": "x", "identity": "A", "action": "Reset"})
    await asyncio.sleep(0.3)
    assert not await redis_client.exists(f"{prefix}broker:results")
    assert not await redis_client.xinfo_groups(f"{prefix}broker:commands")
