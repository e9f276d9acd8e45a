"""The close code a charge point sends is the one the gateway reports (not Hypercorn's 1006)."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from gateway.events import GatewayEvent


@pytest.mark.parametrize("code", [1000, 1001, 4001])
async def test_disconnected_event_carries_the_charge_points_close_code(gateway_server, code):
    seen: list[GatewayEvent] = []
    gateway_server.gateway.router.subscribe(seen.append, messages=False)
    async with websockets.connect(gateway_server.url("CLOSER"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        await asyncio.wait_for(ws.recv(), 2)
        await ws.close(code, "bye")
    for _ in range(100):
        if any(event.kind == "disconnected" for event in seen):
            break
        await asyncio.sleep(0.01)
    closes = [event.close_code for event in seen if event.kind == "disconnected"]
    assert closes == [code]


async def test_a_dropped_connection_is_still_abnormal(gateway_server):
    seen: list[GatewayEvent] = []
    gateway_server.gateway.router.subscribe(seen.append, messages=False)
    ws = await websockets.connect(gateway_server.url("DROPPER"), subprotocols=["ocpp1.6"])
    ws.transport.abort()  # no close frame
    for _ in range(100):
        if any(event.kind == "disconnected" for event in seen):
            break
        await asyncio.sleep(0.01)
    assert [event.close_code for event in seen if event.kind == "disconnected"] == [1006]
