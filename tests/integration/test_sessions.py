"""Session life: duplicates, keepalive and dead peers, frame size, call timeouts and queueing."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

import orjson
import pytest
import websockets

from gateway.connection import CLOSE_REPLACED
from gateway.ocppj.codec import CallResult
from gateway.router import CallFailed

from .clients import running_station

CHANGE = {"key": "HeartbeatInterval", "value": "60"}


async def test_new_connection_replaces_old_one_which_is_closed_with_4000(gateway_server):
    url = gateway_server.url("TWIN")
    async with (
        websockets.connect(url, subprotocols=["ocpp1.6"]) as old,
        running_station(url, "ocpp1.6", "TWIN") as station,
    ):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(old.recv(), 3)
        assert closed.value.rcvd.code == CLOSE_REPLACED
        assert "replaced" in closed.value.rcvd.reason
        # The new session gets the gateway's calls, and its own calls are answered.
        result = await gateway_server.gateway.router.call("TWIN", "ChangeConfiguration", CHANGE)
        assert isinstance(result, CallResult)
        assert station.changed == ("HeartbeatInterval", "60")
        await asyncio.sleep(0.1)  # the old session's end must not unregister the new one
        assert gateway_server.gateway.registry.get("TWIN") is not None
    await _until(lambda: gateway_server.gateway.registry.get("TWIN") is None)


async def _until(condition, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _open_without_reading_pings(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ocpp/SILENT HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n"
        ).encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


async def test_peer_that_never_answers_pings_is_closed(start_gateway):
    server = await start_gateway(limits={"ping_interval_seconds": 0.5, "pong_timeout_seconds": 1})
    sock = await asyncio.to_thread(_open_without_reading_pings, server.port)
    try:
        await _until(lambda: server.gateway.registry.get("SILENT") is not None)
        started = time.monotonic()
        await _until(lambda: server.gateway.registry.get("SILENT") is None, timeout=6)
        assert time.monotonic() - started < 4, "dead peer closed within ping + pong timeout"
    finally:
        sock.close()


def _ping_times(sock: socket.socket, seconds: float) -> list[float]:
    """When the gateway's ping frames arrived (server frames are unmasked; pings are empty)."""
    started = time.monotonic()
    times: list[float] = []
    buffer = b""
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        assert chunk, "the gateway closed the connection"
        buffer += chunk
        while len(buffer) >= 2 and len(buffer) >= 2 + (buffer[1] & 0x7F):
            if buffer[0] == 0x89:  # FIN + ping
                times.append(time.monotonic() - started)
            buffer = buffer[2 + (buffer[1] & 0x7F) :]
    return times


async def test_every_connection_is_pinged_once_per_interval_by_the_workers_scheduler(
    start_gateway,
):
    server = await start_gateway(limits={"ping_interval_seconds": 0.5, "pong_timeout_seconds": 5})
    sock = await asyncio.to_thread(_open_without_reading_pings, server.port)
    try:
        times = await asyncio.to_thread(_ping_times, sock, 1.9)
    finally:
        sock.close()
    # about 0.5, 1.0, 1.5 s after the upgrade, never more often (the schedule itself, also when
    # the worker runs late, is checked on a hand-moved clock in tests/unit/test_pings.py)
    assert 2 <= len(times) <= 4, times
    assert times[0] >= 0.3, "the first ping one interval after the upgrade"


async def test_peer_that_answers_pings_stays_connected(start_gateway):
    server = await start_gateway(limits={"ping_interval_seconds": 0.5, "pong_timeout_seconds": 1})
    async with websockets.connect(
        server.url("ALIVE"), subprotocols=["ocpp1.6"], ping_interval=None
    ) as ws:
        await asyncio.sleep(3.5)  # longer than ping + pong timeout, no OCPP traffic at all
        await ws.send('[2,"1","Heartbeat",{}]')
        assert (await asyncio.wait_for(ws.recv(), 2)).startswith('[3,"1",')


async def test_message_over_the_size_limit_closes_with_1009(start_gateway):
    server = await start_gateway(limits={"max_frame_bytes": 2048})
    async with websockets.connect(server.url("BIG"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"ok","Heartbeat",{}]')
        assert (await asyncio.wait_for(ws.recv(), 2)).startswith('[3,"ok"')
        big = '[2,"big","DataTransfer",{"vendorId":"v","data":"' + "x" * 4096 + '"}]'
        await ws.send(big)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3)
    assert closed.value.rcvd.code == 1009


async def _silent_station(url: str, identity: str, received: list):
    """A raw 1.6 client that records gateway CALLs and never answers them."""
    ws = await websockets.connect(url, subprotocols=["ocpp1.6"])

    async def reader():
        async for frame in ws:
            received.append(orjson.loads(frame))

    return ws, asyncio.create_task(reader())


async def test_call_timeout_gives_the_caller_a_clear_error(start_gateway):
    server = await start_gateway(limits={"call_timeout_seconds": 0.5})
    received: list = []
    ws, task = await _silent_station(server.url("MUTE"), "MUTE", received)
    try:
        started = time.monotonic()
        with pytest.raises(CallFailed) as failed:
            await server.gateway.router.call("MUTE", "ChangeConfiguration", CHANGE)
        assert failed.value.reason == "timeout"
        assert 0.4 < time.monotonic() - started < 2
        assert received[0][2] == "ChangeConfiguration"
        # a late answer is logged and dropped; the session goes on
        await ws.send(orjson.dumps([3, received[0][1], {"status": "Accepted"}]).decode())
        await ws.send('[2,"late-1","Heartbeat",{}]')
        await _until(lambda: len(received) == 2)
        assert received[1][:2] == [3, "late-1"]
    finally:
        task.cancel()
        await ws.close()


async def test_gateway_calls_queue_one_at_a_time_without_blocking_the_charge_point(gateway_server):
    """OCPP-J 4.1.1: one outstanding CALL per direction; the other direction keeps flowing."""
    received: list = []
    ws, task = await _silent_station(gateway_server.url("QUEUE"), "QUEUE", received)
    router = gateway_server.gateway.router
    try:
        calls = [
            asyncio.create_task(
                router.call("QUEUE", "ChangeConfiguration", {"key": f"K{i}", "value": "1"})
            )
            for i in range(3)
        ]
        await _until(lambda: len(received) == 1)
        await asyncio.sleep(0.2)
        assert len(received) == 1, "the second CALL waits for the first answer"
        # the charge point's own CALL is answered while the gateway's CALL is outstanding
        await ws.send('[2,"cp-1","Heartbeat",{}]')
        await _until(lambda: len(received) == 2)
        assert received[1][:2] == [3, "cp-1"]

        def gateway_calls() -> list:
            return [m for m in received if m[0] == 2]

        for i in range(3):
            await _until(lambda n=i: len(gateway_calls()) == n + 1)
            call = gateway_calls()[-1]
            assert call[3]["key"] == f"K{i}", "FIFO order"
            await ws.send(orjson.dumps([3, call[1], {"status": "Accepted"}]).decode())
            result = await asyncio.wait_for(calls[i], 2)
            assert result.payload == {"status": "Accepted"}
    finally:
        task.cancel()
        await ws.close()


async def test_call_to_offline_charge_point_fails_as_offline(gateway_server):
    with pytest.raises(CallFailed) as failed:
        await gateway_server.gateway.router.call("NOBODY", "ClearCache", {})
    assert failed.value.reason == "offline"


async def test_invalid_gateway_call_never_reaches_the_charge_point(gateway_server):
    received: list = []
    ws, task = await _silent_station(gateway_server.url("INV"), "INV", received)
    try:
        with pytest.raises(CallFailed) as failed:
            await gateway_server.gateway.router.call("INV", "ChangeConfiguration", {"key": 1})
        assert failed.value.reason == "invalid"
        await asyncio.sleep(0.2)
        assert received == []
    finally:
        task.cancel()
        await ws.close()


async def test_disconnect_fails_the_outstanding_call_as_offline(gateway_server):
    received: list = []
    ws, task = await _silent_station(gateway_server.url("GONE"), "GONE", received)
    call = asyncio.create_task(
        gateway_server.gateway.router.call("GONE", "ChangeConfiguration", CHANGE)
    )
    await _until(lambda: len(received) == 1)
    task.cancel()
    await ws.close()
    with pytest.raises(CallFailed) as failed:
        await asyncio.wait_for(call, 3)
    assert failed.value.reason == "offline"


async def test_pending_boot_refuses_other_calls_with_security_error(start_gateway):
    """TC_B_30_CSMS (B02.FR.09, B03.FR.07): while Pending/Rejected, CALLs get SecurityError."""
    server = await start_gateway(embedded={"boot_status": "Pending"})
    async with websockets.connect(server.url("PEND"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(
            '[2,"b1","BootNotification",{"reason":"PowerUp",'
            '"chargingStation":{"model":"m","vendorName":"v"}}]'
        )
        boot = orjson.loads(await asyncio.wait_for(ws.recv(), 2))
        assert boot[2]["status"] == "Pending"
        await ws.send(
            '[2,"s1","StatusNotification",{"timestamp":"2024-01-01T00:00:00Z",'
            '"connectorStatus":"Available","evseId":1,"connectorId":1}]'
        )
        refused = orjson.loads(await asyncio.wait_for(ws.recv(), 2))
        assert refused[:3] == [4, "s1", "SecurityError"]


async def test_unknown_boot_state_is_gated_only_when_configured(start_gateway):
    server = await start_gateway(ocpp={"gate_unknown_boot": True})
    async with websockets.connect(server.url("GATED"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"h1","Heartbeat",{}]')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 2))[:3] == [4, "h1", "SecurityError"]
        await ws.send(
            '[2,"b1","BootNotification",{"chargePointVendor":"v","chargePointModel":"m"}]'
        )
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 2))[2]["status"] == "Accepted"
        await ws.send('[2,"h2","Heartbeat",{}]')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 2))[:2] == [3, "h2"]
    # the accepted boot is remembered across reconnects (charge points do not reboot to reconnect)
    async with websockets.connect(server.url("GATED"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"h3","Heartbeat",{}]')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), 2))[:2] == [3, "h3"]


async def test_replaced_peer_that_never_answers_the_close_is_dropped(start_gateway):
    server = await start_gateway(limits={"close_timeout_seconds": 0.5})
    sock = await asyncio.to_thread(_open_without_reading_pings, server.port)
    try:
        await _until(lambda: server.gateway.registry.get("SILENT") is not None)
        old = server.gateway.registry.get("SILENT")
        async with websockets.connect(server.url("SILENT"), subprotocols=["ocpp1.6"]) as ws:
            await _until(lambda: server.gateway.registry.get("SILENT") is not old)
            await _until(lambda: old._task is not None and old._task.done(), timeout=3)
            assert not old._task.cancelled(), "the old session ended normally"
            await ws.send('[2,"1","Heartbeat",{}]')
            assert (await asyncio.wait_for(ws.recv(), 2)).startswith('[3,"1"')
    finally:
        sock.close()


async def test_a_queued_call_times_out_within_its_own_timeout_and_is_never_sent(start_gateway):
    server = await start_gateway(limits={"call_timeout_seconds": 3})
    received: list = []
    ws, task = await _silent_station(server.url("QTO"), "QTO", received)
    router = server.gateway.router
    try:
        first = asyncio.create_task(router.call("QTO", "ChangeConfiguration", CHANGE))
        await _until(lambda: len(received) == 1)
        started = time.monotonic()
        with pytest.raises(CallFailed) as failed:
            await router.call("QTO", "ClearCache", {}, timeout=0.5)
        assert failed.value.reason == "timeout"
        assert time.monotonic() - started < 1.5, "the wait in the queue counts"
        first.cancel()
        await asyncio.sleep(0.3)
        assert [m[2] for m in received if m[0] == 2] == ["ChangeConfiguration"], "never sent"
    finally:
        task.cancel()
        await ws.close()
