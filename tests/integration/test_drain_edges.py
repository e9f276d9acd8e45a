"""`server.drain_seconds = 0` (allowed: 0-3600) still ends every session with 1012.

RFC 6455 11.7 (IANA registry): 1012 Service Restart tells the charge point to reconnect after a
randomized delay (OCPP-J 2.0.1 part 4, 5.3). A zero drain time means "close at once", not "let the
server cut the connections when its grace period ends".
"""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from gateway.connection import CLOSE_SERVICE_RESTART


async def test_a_drain_of_zero_seconds_closes_every_session_with_1012_at_once(start_gateway):
    server = await start_gateway(server={"drain_batch_size": 2})
    sockets = [
        await websockets.connect(server.url(f"ZERO{i}"), subprotocols=["ocpp1.6"]) for i in range(5)
    ]
    while len(server.gateway.registry.local_sessions()) < 5:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await server.gateway.drain(0)
    for ws in sockets:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 1)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_SERVICE_RESTART
    assert time.monotonic() - started < 2.0  # at once: batches would take seconds
