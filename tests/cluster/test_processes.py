"""Real gateway processes on different ports sharing one real Redis (one of them with two workers):
commands and events cross nodes and workers, takeovers and reconnect races leave one session, a
SIGKILLed node's claims expire within the claim TTL, and a Redis restart under traffic is survived.

Node names: A, B, C (one worker each) and D (`server.workers = 2`, one node id per worker)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time

import orjson
import pytest
import websockets
from ocpp.v16 import call as call16
from websockets.protocol import State

from ..integration.clients import running_station
from ..redis_server import start_redis
from .processes import REPO, Cluster, NodeProcess, command, connect_ui, eventually

CHANGE = {"key": "HeartbeatInterval", "value": "60"}
GET_VARIABLES = {
    "getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    ]
}
FOUR_NODES = (("node-a", 1), ("node-b", 1), ("node-c", 1), ("node-d", 2))


def accepted(answer: dict) -> bool:
    return answer.get("outcome") == "callresult" and answer.get("payload") == {"status": "Accepted"}


async def heartbeat(ws, message_id: str) -> None:
    await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
    assert (await asyncio.wait_for(ws.recv(), 3)).startswith(f'[3,"{message_id}"')


async def test_commands_from_node_a_reach_charge_points_on_node_b_and_on_both_workers_of_node_d(
    start_cluster,
):
    cluster: Cluster = await start_cluster()
    on_d = [f"D-{index:02d}" for index in range(16)]
    await cluster.add_charge_points("B-16", "B-201", *on_d)
    secret = await cluster.create_token("operator")
    a, b, _, d = await cluster.start_nodes(*FOUR_NODES)
    assert set(d.node_ids) == {f"node-d-{pid}" for pid in d.worker_pids}, "one node id per worker"
    ui = await connect_ui(a, secret)
    async with contextlib.AsyncExitStack() as stack:
        v16 = await stack.enter_async_context(running_station(b.url("B-16"), "ocpp1.6", "B-16"))
        await stack.enter_async_context(running_station(b.url("B-201"), "ocpp2.0.1", "B-201"))
        await cluster.wait_claimed("B-16", b)
        await cluster.wait_claimed("B-201", b)
        assert accepted(await command(ui, "B-16", "ChangeConfiguration", CHANGE))
        assert v16.changed == ("HeartbeatInterval", "60"), "the charge point itself answered"
        answer = await command(ui, "B-201", "GetVariables", GET_VARIABLES)
        assert answer["outcome"] == "callresult", answer
        assert answer["payload"]["getVariableResult"][0]["attributeValue"] == "42"

        # Connections to D, a burst at a time (one idle worker tends to accept every lone
        # connection), until both of its workers (sharing one port) hold some.
        stations, holders = {}, {}
        for burst in range(0, len(on_d), 4):
            identities = on_d[burst : burst + 4]
            opened = await asyncio.gather(
                *(
                    stack.enter_async_context(running_station(d.url(i), "ocpp1.6", i))
                    for i in identities
                )
            )
            stations.update(zip(identities, opened, strict=True))
            for identity in identities:
                holders[identity] = (await cluster.wait_claimed(identity, d)).node
            if len(set(holders.values())) == 2:
                break
        assert set(holders.values()) == set(d.node_ids), f"both D workers hold some: {holders}"
        for identity in holders:
            assert accepted(await command(ui, identity, "ChangeConfiguration", CHANGE)), identity
            assert stations[identity].changed == ("HeartbeatInterval", "60")
    await ui.ws.close()


async def test_ui_subscribers_on_node_c_see_events_of_node_b_only_within_their_token_scope(
    start_cluster,
):
    cluster: Cluster = await start_cluster()
    await cluster.add_charge_points("EV-1", "ELSE-1")
    in_scope = await cluster.create_token("viewer", "EV-*")
    out_of_scope = await cluster.create_token("viewer", "ELSE-*")
    b, c = await cluster.start_nodes(("node-b", 1), ("node-c", 1))
    watcher, outsider = await connect_ui(c, in_scope), await connect_ui(c, out_of_scope)
    for ui in (watcher, outsider):
        subscribed = await ui.request(
            {"type": "subscribe", "identities": ["*"], "events": ["connection", "message"]}
        )
        assert subscribed["type"] == "subscribed", subscribed
    await cluster.wait_watching(c)
    async with websockets.connect(b.url("EV-1"), subprotocols=["ocpp1.6"]) as cp:
        await heartbeat(cp, "h1")
    seen = [await watcher.next_event(lambda e: e["identity"] == "EV-1") for _ in range(4)]
    assert [(e["event"], e.get("direction")) for e in seen] == [
        ("connected", None),
        ("message", "in"),
        ("message", "out"),
        ("disconnected", None),
    ]
    assert orjson.loads(seen[1]["frame"]) == [2, "h1", "Heartbeat", {}]
    # A charge point in the outsider's scope, connected after EV-1 left: its event comes through
    # the same channel after EV-1's, so everything the outsider got about EV-1 is before it.
    async with websockets.connect(b.url("ELSE-1"), subprotocols=["ocpp1.6"]):
        before_marker = []
        while True:
            message = await outsider.recv(timeout=5)
            if message.get("identity") == "ELSE-1" and message.get("event") == "connected":
                break
            before_marker.append(message)
    assert [m for m in before_marker if m.get("identity") == "EV-1"] == []
    await watcher.ws.close()
    await outsider.ws.close()


async def test_reconnect_to_another_node_closes_the_old_session_with_4000_and_the_new_one_acts(
    start_cluster,
):
    cluster: Cluster = await start_cluster()
    await cluster.add_charge_points("X-1")
    secret = await cluster.create_token("operator")
    a, b, c = await cluster.start_nodes(("node-a", 1), ("node-b", 1), ("node-c", 1))
    ui = await connect_ui(c, secret)
    async with websockets.connect(a.url("X-1"), subprotocols=["ocpp1.6"]) as old:
        await heartbeat(old, "1")
        await cluster.wait_claimed("X-1", a)
        async with running_station(b.url("X-1"), "ocpp1.6", "X-1") as new:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(old.recv(), 5)
            assert old.close_code == 4000 and "replaced" in (old.close_reason or "")
            holder = await cluster.wait_claimed("X-1", b)
            assert accepted(await command(ui, "X-1", "ChangeConfiguration", CHANGE))
            assert new.changed == ("HeartbeatInterval", "60")
    taken = await b.wait_for("session_taken_over", identity="X-1")
    assert (taken["from_node"], taken["epoch"]) == ("node-a", holder.epoch)
    assert (await a.wait_for("disconnected", identity="X-1"))["code"] == 4000
    await ui.ws.close()


def _node_of(nodes: list[NodeProcess], node_id: str) -> NodeProcess:
    return next(node for node in nodes if node_id in node.node_ids)


async def test_simultaneous_reconnects_of_one_identity_across_four_nodes_leave_exactly_one(
    start_cluster,
):
    cluster: Cluster = await start_cluster()
    await cluster.add_charge_points("RACE-1")
    secret = await cluster.create_token("operator")
    nodes = await cluster.start_nodes(*FOUR_NODES)
    targets = [nodes[index % len(nodes)] for index in range(16)]
    attempts = await asyncio.gather(
        *(
            websockets.connect(node.url("RACE-1"), subprotocols=["ocpp1.6"], open_timeout=10)
            for node in targets
        ),
        return_exceptions=True,
    )
    sockets = [ws for ws in attempts if not isinstance(ws, BaseException)]
    try:
        assert len(sockets) == len(targets), f"every reconnect was accepted: {attempts}"

        def open_sockets() -> list:
            return [ws for ws in sockets if ws.state is State.OPEN]

        async def one_left() -> bool:
            return len(open_sockets()) == 1

        await eventually(one_left, 10, "one session left open")
        await asyncio.sleep(cluster.claim_ttl / 3 + 0.5)  # a claim refresh round: still one
        survivors = open_sockets()
        assert len(survivors) == 1, f"{len(survivors)} sessions open after a refresh round"
        survivor = survivors[0]
        closed = [ws.close_code for ws in sockets if ws is not survivor]
        assert closed == [4000] * (len(sockets) - 1), f"all others replaced: {closed}"
        await heartbeat(survivor, "alive")
        holder = await cluster.holder("RACE-1")
        assert holder is not None, "the survivor's claim is in Redis"
        survivor_node = targets[sockets.index(survivor)]
        assert _node_of(nodes, holder.node) is survivor_node, "the directory names its node"
        # A command entering another node reaches the survivor through the directory.
        ui_node = next(node for node in nodes if node is not survivor_node)
        ui = await connect_ui(ui_node, secret)
        pending = asyncio.create_task(command(ui, "RACE-1", "ChangeConfiguration", CHANGE))
        call = orjson.loads(await asyncio.wait_for(survivor.recv(), 5))
        assert call[0] == 2 and call[2] == "ChangeConfiguration" and call[3] == CHANGE
        await survivor.send(orjson.dumps([3, call[1], {"status": "Accepted"}]).decode())
        assert accepted(await pending)
        await ui.ws.close()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


async def test_sigkilled_node_charge_points_are_served_elsewhere_and_its_claims_expire_in_ttl(
    start_cluster,
):
    ttl = 3.0
    cluster: Cluster = await start_cluster(claim_ttl_seconds=ttl)
    await cluster.add_charge_points("K-MOVE", "K-STAY")
    secret = await cluster.create_token("operator")
    a, b, c = await cluster.start_nodes(("node-a", 1), ("node-b", 1), ("node-c", 1))
    ui = await connect_ui(c, secret)
    moving = await websockets.connect(b.url("K-MOVE"), subprotocols=["ocpp1.6"])
    staying = await websockets.connect(b.url("K-STAY"), subprotocols=["ocpp1.6"])
    for ws, identity in ((moving, "K-MOVE"), (staying, "K-STAY")):
        await heartbeat(ws, identity)
        await cluster.wait_claimed(identity, b)
    await asyncio.sleep(ttl / 3 + 0.3)  # at least one claim refresh happened before the kill

    b.kill()
    killed_at = time.monotonic()

    async def stay_released() -> bool:
        return await cluster.holder("K-STAY") is None

    expiry = asyncio.create_task(eventually(stay_released, ttl + 3, "K-STAY's claim expired"))
    for ws in (moving, staying):
        await asyncio.wait_for(ws.wait_closed(), 5)
    # (a) the charge point that reconnects to A is served again at once
    async with running_station(a.url("K-MOVE"), "ocpp1.6", "K-MOVE") as moved:
        await cluster.wait_claimed("K-MOVE", a)
        assert accepted(await command(ui, "K-MOVE", "ChangeConfiguration", CHANGE))
        served_after = time.monotonic() - killed_at
        assert moved.changed == ("HeartbeatInterval", "60")
    # (b) the one that does not reconnect: its claim expires within the TTL, then it is offline
    expired_after = await expiry
    answer = await command(ui, "K-STAY", "ClearCache", {}, timeout=2)
    assert (answer["type"], answer.get("code")) == ("error", "offline"), answer
    print(
        json.dumps(
            {
                "measurement": "sigkill_claim_expiry",
                "claim_ttl_seconds": ttl,
                "claim_gone_after_kill_seconds": round(expired_after, 3),
                "reconnected_charge_point_commanded_after_kill_seconds": round(served_after, 3),
            }
        )
    )
    # (polled from a busy test process: a second of room over the TTL)
    assert ttl / 2 <= expired_after <= ttl + 1.5, "a dead node's claims live one TTL at most"
    assert served_after < ttl, "a reconnect elsewhere does not wait for the old claim"
    await ui.ws.close()


async def test_redis_restart_under_heartbeat_traffic_keeps_sessions_and_restores_claims(
    start_cluster,
):
    servers = [start_redis()]  # stopped and started again: not the shared server
    try:
        await _redis_restart_under_traffic(start_cluster, servers)
    finally:
        for server in servers:
            server.stop()


async def _redis_restart_under_traffic(start_cluster, servers: list) -> None:
    cluster: Cluster = await start_cluster(redis_url=servers[0].url)
    placement = {"R-A1": 0, "R-A2": 0, "R-B1": 1, "R-B2": 1}
    await cluster.add_charge_points(*placement)
    nodes = await cluster.start_nodes(("node-a", 1), ("node-b", 1))
    stop = asyncio.Event()
    latencies: list[float] = []
    failures: list[str] = []

    async def beat(station, identity: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                result = await asyncio.wait_for(station.call(call16.Heartbeat()), 3)
                assert result.current_time
                latencies.append(time.monotonic() - started)
            except Exception as exc:
                failures.append(f"{identity}: {type(exc).__name__} {exc}")
            await asyncio.sleep(0.1)

    async with contextlib.AsyncExitStack() as stack:
        stations = {
            identity: await stack.enter_async_context(
                running_station(nodes[index].url(identity), "ocpp1.6", identity)
            )
            for identity, index in placement.items()
        }
        for identity, index in placement.items():
            await cluster.wait_claimed(identity, nodes[index])
        beats = [asyncio.create_task(beat(s, identity)) for identity, s in stations.items()]
        await asyncio.sleep(0.5)
        servers[0].stop()
        await asyncio.sleep(cluster.claim_ttl)  # claim refreshes fail meanwhile
        servers.append(start_redis(port=servers[0].port))  # back, empty (no persistence)
        back_at = time.monotonic()

        async def all_claimed() -> bool:
            for identity, index in placement.items():
                holder = await cluster.holder(identity)
                if holder is None or holder.node not in nodes[index].node_ids:
                    return False
            return True

        reclaimed_after = await eventually(all_claimed, 10, "every live session claimed again")
        await cluster.wait_listening(timeout=10)  # the pub/sub listeners resubscribed (backoff)
        secret = await cluster.create_token("operator")  # made after the restart: Redis is empty
        ui = await connect_ui(nodes[0], secret)
        assert accepted(await command(ui, "R-B1", "ChangeConfiguration", CHANGE))
        commanded_after = time.monotonic() - back_at
        assert stations["R-B1"].changed == ("HeartbeatInterval", "60")
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*beats)
        await ui.ws.close()
        closed = [line for node in nodes for line in node.found("disconnected")]
    print(
        json.dumps(
            {
                "measurement": "redis_restart",
                "claim_ttl_seconds": cluster.claim_ttl,
                "claims_restored_after_restart_seconds": round(reclaimed_after, 3),
                "cross_node_command_after_restart_seconds": round(commanded_after, 3),
                "heartbeats_answered": len(latencies),
                "slowest_heartbeat_seconds": round(max(latencies), 3),
            }
        )
    )
    assert failures == [], failures
    assert len(latencies) > 4 * 10, "heartbeats kept flowing throughout"
    assert reclaimed_after <= cluster.claim_ttl / 3 + 1.5, "claims back at the next refresh"
    assert closed == [], "no session was closed"
    for node in nodes:
        assert node.found("claims_restored"), f"{node.name} logged claims_restored"


async def test_forward_mode_across_nodes_with_a_backend_restarted_midway_loses_nothing(
    start_cluster,
):
    """Forward mode on real processes: the example backend answers a charge point on node B; it
    is SIGKILLed, the charge point keeps being answered (embedded fallback) and a restarted
    backend processes every message sent meanwhile; a backend command entering the command
    stream reaches the charge point whichever node consumes it."""
    cluster: Cluster = await start_cluster()
    await cluster.add_charge_points("FWD-1")
    forward = {
        "OCPP_GATEWAY_BROKER_MODE": "forward",
        "OCPP_GATEWAY_BROKER_ANSWER_TIMEOUT_SECONDS": "0.5",
    }
    _a, b = await cluster.start_nodes(("node-a", 1), ("node-b", 1), env=forward)
    consumer = [
        sys.executable, "examples/backend_consumer.py", "--redis", cluster.redis_url,
        "--prefix", cluster.prefix, "--group", "csms", "--min-idle-ms", "300",
    ]  # fmt: skip

    async def backend(name: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *consumer, "--consumer", name, cwd=REPO, stdout=asyncio.subprocess.DEVNULL
        )

    first = await backend("csms-1")
    sent = ["boot"]
    try:
        async with websockets.connect(b.url("FWD-1"), subprotocols=["ocpp1.6"]) as ws:
            boot = {"chargePointVendor": "V", "chargePointModel": "M"}
            await ws.send(json.dumps([2, "boot", "BootNotification", boot]))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer[2]["interval"] == 777, "the backend answered, not the embedded CSMS"
            first.kill()
            await first.wait()
            for n in range(5):
                sent.append(f"hb{n}")
                await heartbeat(ws, f"hb{n}")  # the fallback answers while no backend runs
            second = await backend("csms-2")
            try:
                done = [f"{cluster.prefix}csms:csms:done:FWD-1:{mid}" for mid in sent]

                async def all_processed() -> bool:
                    return all(await asyncio.gather(*(cluster.redis.exists(k) for k in done)))

                await eventually(all_processed, 15, "every forwarded message processed")
                command = {"command_id": "cmd-1", "identity": "FWD-1", "action": "ClearCache"}
                await cluster.redis.xadd(
                    f"{cluster.prefix}broker:commands",
                    {"command": json.dumps({**command, "payload": {}})},
                )
                request = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert request[2] == "ClearCache"
                await ws.send(json.dumps([3, request[1], {"status": "Accepted"}]))

                async def result() -> bool:
                    entries = await cluster.redis.xrange(f"{cluster.prefix}broker:results")
                    return any(b"cmd-1" in e[1][b"result"] for e in entries)

                await eventually(result, 10, "the command's result in the results stream")
            finally:
                second.kill()
                await second.wait()
    finally:
        if first.returncode is None:
            first.kill()
