"""The backend's commands: run once on some gateway node, the charge point's real answer (or why
there is none) in the result stream; a dead node's commands are taken over."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from ocpp.routing import on
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16

from gateway.broker import commands

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


class SlowStation(Station16):
    """A 1.6 charge point that takes a while to answer ChangeConfiguration, and counts them."""

    received: list[str] = []

    @on(Action16.change_configuration)
    async def on_change_configuration(self, key: str, value: str) -> Any:
        self.received = [*self.received, value]
        await asyncio.sleep(0.45)
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


def _logged(caplog, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name]


async def test_commands_of_a_busy_node_are_not_run_again_by_another_node(
    forward_gateway, redis_client, prefix, monkeypatch
):
    """A node with every slot taken reads no more commands, and keeps the ones it runs fresh:
    a node started meanwhile never mistakes them for a dead node's. Each command reaches the
    charge point once, though each takes longer than the claim idle time."""
    monkeypatch.setitem(clients.STATIONS, "ocpp1.6", SlowStation)
    monkeypatch.setattr(commands, "MAX_IN_FLIGHT", 1)  # stands for 200 long CALLs
    a = await forward_gateway(node="node-a")
    a.gateway.broker.commands.claim_idle_seconds = 0.3
    async with running_station(a.url("BUSY-1"), "ocpp1.6", "BUSY-1") as station:
        await online(a, "BUSY-1")
        for n in range(4):
            change = {"key": "HeartbeatInterval", "value": str(n)}
            command = {"command_id": f"busy-{n}", "identity": "BUSY-1", "payload": change}
            await post(redis_client, prefix, {**command, "action": "ChangeConfiguration"})
        b = await forward_gateway(node="node-b")
        b.gateway.broker.commands.claim_idle_seconds = 0.3
        found = await results(redis_client, prefix, 4, timeout=5)
        await asyncio.sleep(0.3)  # a second run would reach the charge point meanwhile
    assert sorted(station.received) == ["0", "1", "2", "3"]  # each once
    assert sorted(r["command_id"] for r in found) == [f"busy-{n}" for n in range(4)]
    assert {r["status"] for r in found} == {"result"}
    assert (await redis_client.xpending(f"{prefix}broker:commands", "gateways"))["pending"] == 0


async def test_a_reclaimed_command_still_leased_by_its_live_node_runs_only_once_the_lease_expired(
    forward_gateway, redis_client, prefix, caplog
):
    """A running command's entry went idle (its node could not keep it fresh for a while), but
    the node still holds the command's lease: a node that reclaims the entry leaves it alone.
    Once the lease has expired (the node died), the command is run."""
    caplog.set_level(logging.INFO, logger="gateway.broker")
    stream = f"{prefix}broker:commands"
    await redis_client.xgroup_create(stream, "gateways", "0", mkstream=True)
    command = {"command_id": "lease-1", "identity": "CMD-4", "action": "ChangeConfiguration"}
    await post(redis_client, prefix, {**command, "payload": CHANGE})
    ((_, ((entry, _),)),) = await redis_client.xreadgroup("gateways", "node-x", {stream: ">"})
    gateway = await forward_gateway()
    async with running_station(gateway.url("CMD-4"), "ocpp1.6", "CMD-4") as station:
        await online(gateway, "CMD-4")
        # node-x started running it: the run-once marker, and its lease
        await redis_client.set(f"{prefix}broker:command:lease-1", b"running:" + entry, ex=60)
        # the read loop may sit in a 1 s XREADGROUP BLOCK before it reclaims with 0.2 s: the
        # lease outlives that with room for a slow machine
        await redis_client.set(f"{prefix}broker:command-lease:lease-1", "node-x", px=3000)
        gateway.gateway.broker.commands.claim_idle_seconds = 0.2
        for _ in range(60):
            if _logged(caplog, "broker_command_leased"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the leased entry was not reclaimed and left alone")
        assert not hasattr(station, "changed")  # not sent while node-x holds the lease
        (result,) = await results(redis_client, prefix, 1, timeout=8)
    assert _logged(caplog, "broker_command_leased")[0]["owner"] == "node-x"
    assert result["status"] == "result" and result["node"] == "node-a"
    assert station.changed == ("HeartbeatInterval", "60")
    assert (await redis_client.xpending(stream, "gateways"))["pending"] == 0


async def test_consumers_of_workers_that_are_gone_are_removed_from_the_group(
    forward_gateway, redis_client, prefix
):
    """Each start of a worker under server.workers > 1 has a new consumer name (`<node_id>-<pid>`):
    names that hold no commands and stayed idle far beyond the claim time are deleted."""
    stream = f"{prefix}broker:commands"
    await redis_client.xgroup_create(stream, "gateways", "0", mkstream=True)
    await redis_client.xgroup_createconsumer(stream, "gateways", "node-a-4242")
    gateway = await forward_gateway()
    runner = gateway.gateway.broker.commands
    runner.claim_idle_seconds, runner.stale_consumer_seconds = 0.2, 0.3
    for _ in range(60):
        names = {c["name"] for c in await redis_client.xinfo_consumers(stream, "gateways")}
        if b"node-a-4242" not in names:
            break
        await asyncio.sleep(0.05)
    assert names == {b"node-a"}
