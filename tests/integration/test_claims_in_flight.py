"""A session whose claim is still being made is not mistaken for one whose claim was lost."""

from __future__ import annotations

import asyncio

import websockets


async def test_refresh_during_a_claim_in_flight_keeps_the_new_session(gateway_server):
    gateway = gateway_server.gateway
    directory = gateway.directory
    claim = directory.claim
    made = asyncio.Event()
    release = asyncio.Event()

    async def slow_claim(identity: str, node: str):
        result = await claim(identity, node)  # held by this node from here on...
        made.set()
        await release.wait()  # ...but the session does not know its epoch yet
        return result

    directory.claim = slow_claim
    try:
        url = gateway_server.url("INFLIGHT1")

        async def open_session() -> websockets.ClientConnection:
            return await websockets.connect(url, subprotocols=["ocpp1.6"])

        connecting = asyncio.create_task(open_session())
        await asyncio.wait_for(made.wait(), 5)
        await gateway.refresh_claims()  # the periodic refresh lands in the window
        release.set()
        ws = await asyncio.wait_for(connecting, 5)
    finally:
        directory.claim = claim
    async with ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        answer = await asyncio.wait_for(ws.recv(), 2)
        assert answer.startswith('[3,"1"')
        await asyncio.sleep(0.1)
        assert ws.close_code is None  # not closed with 4000 ("replaced")
