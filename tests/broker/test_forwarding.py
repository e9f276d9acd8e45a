"""Forward mode: charge point CALLs reach the backend through the call stream and its answers come
back; without a usable answer the fallback answers, promptly when Redis is unreachable."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime

import orjson
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from examples.backend_consumer import BOOT_INTERVAL

from ..integration.clients import running_station
from ..redis_server import _free_port
from .support import BOOT16, connect, envelopes, exchange

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EMBEDDED_INTERVAL = 300  # embedded.heartbeat_interval_seconds


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name]


BOOTS = {
    "ocpp1.6": call16.BootNotification(charge_point_model="M1", charge_point_vendor="Acme"),
    "ocpp2.0.1": call201.BootNotification(
        charging_station={"model": "M1", "vendor_name": "Acme"}, reason="PowerUp"
    ),
}
HEARTBEATS = {"ocpp1.6": call16.Heartbeat(), "ocpp2.0.1": call201.Heartbeat()}


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_boot_and_heartbeat_are_answered_by_the_backend(
    forward_gateway, backend, redis_client, prefix, subprotocol
):
    """1.6 4.2 / 2.0.1 B01: the interval the charge point gets is the backend's, not the
    embedded one; 1.6 4.6 / 2.0.1 G02: the heartbeat's currentTime is the backend's."""
    gateway = await forward_gateway()
    identity = f"FWD-{subprotocol[4:].replace('.', '')}"
    started = time.time()
    async with running_station(gateway.url(identity), subprotocol, identity) as station:
        boot = await station.call(BOOTS[subprotocol])
        heartbeat = await station.call(HEARTBEATS[subprotocol])
    assert boot.status == "Accepted" and boot.interval == BOOT_INTERVAL
    assert abs(datetime.fromisoformat(heartbeat.current_time).timestamp() - time.time()) < 5
    calls = await envelopes(redis_client, prefix, "call")
    assert [c["action"] for c in calls] == ["BootNotification", "Heartbeat"]
    node = gateway.gateway.node_id
    for envelope in calls:
        assert envelope["v"] == 1
        assert envelope["identity"] == identity and envelope["version"] == subprotocol
        assert envelope["id"] == f"{identity}:{envelope['message_id']}"
        assert envelope["node"] == node
        assert envelope["reply_to"] == f"{prefix}broker:replies:{node}"
        assert ISO_MS.match(envelope["received_at"])
        received = datetime.fromisoformat(envelope["received_at"]).timestamp()
        assert started - 1 < received < time.time() + 1
        assert envelope["deadline"] == pytest.approx(received + 2.0, abs=0.01)
    model = "chargePointModel" if subprotocol == "ocpp1.6" else "chargingStation"
    assert model in calls[0]["payload"]
    assert sorted(backend.processed) == sorted(c["id"] for c in calls)


async def test_session_events_tell_the_backend_who_is_online(forward_gateway, redis_client, prefix):
    gateway = await forward_gateway(answer_timeout_seconds=0.3)
    async with connect(gateway, "ONLINE-1") as ws:
        await exchange(ws, [2, "1", "Heartbeat", {}])
    for _ in range(50):
        events = await envelopes(redis_client, prefix, "event")
        if len(events) == 2:
            break
        await asyncio.sleep(0.05)
    connected, disconnected = events
    assert (connected["event"], disconnected["event"]) == ("connected", "disconnected")
    assert connected["identity"] == disconnected["identity"] == "ONLINE-1"
    assert connected["session"] == disconnected["session"]
    assert ":" not in connected["id"] and connected["id"] != disconnected["id"]
    assert isinstance(disconnected["close_code"], int)


async def test_another_nodes_sessions_are_reported_once_by_their_own_node(
    forward_gateway, redis_client, prefix
):
    a = await forward_gateway(node="node-a", answer_timeout_seconds=0.3)
    # node-b receives node-a's events over the cluster channel, and must not report them
    await forward_gateway(node="node-b", answer_timeout_seconds=0.3)
    async with connect(a, "ONCE-1") as ws:
        await exchange(ws, [2, "1", "Heartbeat", {}])
    for _ in range(100):
        if len(await envelopes(redis_client, prefix, "event")) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # and node-b adds none of its own
    events = await envelopes(redis_client, prefix, "event")
    assert [(e["event"], e["node"]) for e in events] == [
        ("connected", "node-a"),
        ("disconnected", "node-a"),
    ]


# -- fallback ------------------------------------------------------------------------------------


async def test_without_a_backend_the_embedded_system_answers_after_the_timeout(
    forward_gateway, redis_client, prefix, caplog
):
    caplog.set_level(logging.INFO, logger="gateway.broker")
    gateway = await forward_gateway(answer_timeout_seconds=0.3)
    async with connect(gateway, "LONELY-1") as ws:
        started = time.monotonic()
        answer = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
        waited = time.monotonic() - started
    assert answer[0] == 3 and answer[2]["interval"] == EMBEDDED_INTERVAL
    assert 0.3 <= waited < 1.5
    assert [c["id"] for c in await envelopes(redis_client, prefix, "call")] == ["LONELY-1:b1"]
    (timeout,) = _events(caplog, "broker_answer_timeout")
    assert timeout["identity"] == "LONELY-1" and timeout["action"] == "BootNotification"


async def test_error_fallback_answers_a_callerror(forward_gateway):
    gateway = await forward_gateway(answer_timeout_seconds=0.3, fallback="error")
    async with connect(gateway, "LONELY-2", "ocpp2.0.1") as ws:
        answer = await exchange(ws, [2, "h1", "Heartbeat", {}])
    assert answer[:3] == [4, "h1", "InternalError"]


async def _answer_next_call(redis_client, prefix: str, answer: dict) -> dict:
    """A hand-written backend: read the next call envelope, write `answer` (its id added)."""
    stream = f"{prefix}broker:{{calls}}"
    for _ in range(60):
        for envelope in await envelopes(redis_client, prefix, "call"):
            reply = orjson.dumps({"id": envelope["id"], **answer})
            await redis_client.xadd(envelope["reply_to"], {"answer": reply})
            await redis_client.delete(stream)
            return envelope
        await asyncio.sleep(0.05)
    raise AssertionError("no call was forwarded")


async def test_an_invalid_backend_answer_is_replaced_by_the_fallback_and_logged(
    forward_gateway, redis_client, prefix, caplog
):
    caplog.set_level(logging.INFO, logger="gateway.broker")
    gateway = await forward_gateway()
    async with connect(gateway, "BADBACK-1") as ws:
        invalid = {"payload": {"status": "Maybe", "currentTime": "now", "interval": 1}}
        answering = asyncio.create_task(_answer_next_call(redis_client, prefix, invalid))
        started = time.monotonic()
        answer = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
        await answering
    assert answer[0] == 3 and answer[2]["interval"] == EMBEDDED_INTERVAL
    assert time.monotonic() - started < 1.5  # at once, not after the answer timeout
    (logged,) = _events(caplog, "broker_answer_invalid")
    assert "does not match the ocpp1.6 schema" in logged["reason"]


async def test_backend_error_answers_become_callerrors_and_unknown_codes_are_refused(
    forward_gateway, redis_client, prefix, caplog
):
    caplog.set_level(logging.INFO, logger="gateway.broker")
    gateway = await forward_gateway(fallback="error")
    async with connect(gateway, "BADBACK-2", "ocpp2.0.1") as ws:
        refusal = {"error": {"code": "NotSupported", "description": "no", "details": {}}}
        answering = asyncio.create_task(_answer_next_call(redis_client, prefix, refusal))
        refused = await exchange(ws, [2, "h1", "Heartbeat", {}])
        await answering
        made_up = {"error": {"code": "NoSuchCode", "description": "?"}}
        answering = asyncio.create_task(_answer_next_call(redis_client, prefix, made_up))
        replaced = await exchange(ws, [2, "h2", "Heartbeat", {}])
        await answering
        denied = {"error": {"code": "SecurityError", "description": "not on my watch"}}
        answering = asyncio.create_task(_answer_next_call(redis_client, prefix, denied))
        passed = await exchange(ws, [2, "h3", "Heartbeat", {}])
        await answering
    assert refused[:3] == [4, "h1", "NotSupported"]
    assert passed[:4] == [4, "h3", "SecurityError", "not on my watch"]  # code and reason pass
    assert replaced[:3] == [4, "h2", "InternalError"]  # the "error" fallback
    (logged,) = _events(caplog, "broker_answer_invalid")
    assert "'NoSuchCode' is not an OCPP-J error code of ocpp2.0.1" in logged["reason"]


async def test_redis_unreachable_is_answered_by_the_fallback_at_once(forward_gateway, caplog):
    caplog.set_level(logging.INFO, logger="gateway.broker")
    nowhere = f"redis://127.0.0.1:{_free_port()}/0"
    gateway = await forward_gateway(url=nowhere, answer_timeout_seconds=3.0)
    async with connect(gateway, "NOREDIS-1") as ws:
        # The session is read once its cluster-wide claim failed (the gateway's own retries).
        assert (await exchange(ws, [2, "h1", "Heartbeat", {}]))[0] == 3
        for message_id in ("b1", "b2"):
            started = time.monotonic()
            answer = await exchange(ws, [2, message_id, "BootNotification", BOOT16])
            assert answer[0] == 3 and answer[2]["interval"] == EMBEDDED_INTERVAL
            assert time.monotonic() - started < 1.5  # not the answer timeout (3 s)
    (logged,) = _events(caplog, "broker_redis_unavailable")
    assert logged["action"] == "Heartbeat"


# -- duplicates ----------------------------------------------------------------------------------


async def test_a_resent_message_id_is_appended_once_and_answered_both_times(
    forward_gateway, backend, redis_client, prefix
):
    """OCPP-J 4.1.3: a message id identifies one CALL; a charge point re-sending it (after a
    reconnect, say) gets the backend's first answer again and the backend sees it once."""
    gateway = await forward_gateway()
    async with connect(gateway, "DUP-1", "ocpp2.0.1") as ws:
        first = await exchange(ws, [2, "dup-1", "Heartbeat", {}])
    async with connect(gateway, "DUP-1", "ocpp2.0.1") as ws:
        second = await exchange(ws, [2, "dup-1", "Heartbeat", {}])
    assert first[0] == 3 and second == first  # the very same currentTime: remembered
    calls = await envelopes(redis_client, prefix, "call")
    assert [c["id"] for c in calls] == ["DUP-1:dup-1"]
    assert backend.processed == ["DUP-1:dup-1"]


async def test_a_duplicate_without_a_known_answer_gets_the_fallback(
    forward_gateway, redis_client, prefix
):
    gateway = await forward_gateway(answer_timeout_seconds=0.3)
    async with connect(gateway, "DUP-2") as ws:
        first = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
        second = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
    assert first[2]["interval"] == second[2]["interval"] == EMBEDDED_INTERVAL
    assert len(await envelopes(redis_client, prefix, "call")) == 1


async def test_a_send_is_forwarded_without_an_answer(forward_gateway, redis_client, prefix):
    """OCPP-J 2.1 4.2.4: a SEND is never answered; the backend still gets it, once."""
    gateway = await forward_gateway(answer_timeout_seconds=0.3)
    stream = {
        "id": 1,
        "pending": 0,
        "basetime": "2026-01-01T00:00:00Z",
        "data": [{"t": 0, "v": "1"}],
    }
    async with connect(gateway, "SEND-1", "ocpp2.1") as ws:
        for _ in range(2):
            await ws.send(orjson.dumps([6, "s1", "NotifyPeriodicEventStream", stream]).decode())
        assert (await exchange(ws, [2, "h1", "Heartbeat", {}], timeout=5))[:2] == [3, "h1"]
    for _ in range(40):
        sends = await envelopes(redis_client, prefix, "send")
        if sends:
            break
        await asyncio.sleep(0.05)
    (send,) = sends
    assert send["id"] == "SEND-1:s1" and send["action"] == "NotifyPeriodicEventStream"
    assert send["reply_to"] is None and send["payload"] == stream
