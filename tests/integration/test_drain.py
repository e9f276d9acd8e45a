"""The graceful drain (SIGTERM): readiness off, new upgrades refused, sessions closed in batches.

Sessions are closed with 1012 Service Restart (IANA WebSocket Close Code Number Registry, RFC 6455
section 11.7: the client may reconnect, after a randomized delay), `server.drain_batch_size` at a
time, the batches spread so that the last close handshake ends within `server.drain_seconds`.
Charge points then reconnect elsewhere with their randomized back-off (OCPP-J 2.0.1 part 4, 5.3).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from gateway.connection import CLOSE_SERVICE_RESTART

from .clients import running_station


async def open_sessions(server: Any, prefix: str, count: int) -> list[Any]:
    sockets = await asyncio.gather(
        *(
            websockets.connect(server.url(f"{prefix}{i}"), subprotocols=["ocpp1.6"])
            for i in range(count)
        )
    )
    deadline = time.monotonic() + 5
    while len(server.gateway.registry.local_sessions()) < count:
        assert time.monotonic() < deadline, "sessions not registered in time"
        await asyncio.sleep(0.02)
    return list(sockets)


async def closed_at(ws: Any) -> tuple[float, int | None]:
    """When (monotonic) the gateway's close frame arrived, and its code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await ws.recv()
    rcvd = closed.value.rcvd
    return time.monotonic(), rcvd.code if rcvd is not None else None


def waves(times: list[float], gap: float) -> list[list[float]]:
    """`times` grouped where consecutive ones are more than `gap` apart."""
    groups: list[list[float]] = []
    for moment in sorted(times):
        if groups and moment - groups[-1][-1] <= gap:
            groups[-1].append(moment)
        else:
            groups.append([moment])
    return groups


async def test_drain_closes_sessions_in_batches_with_1012_within_drain_seconds(start_gateway):
    server = await start_gateway(
        server={"drain_batch_size": 10}, limits={"close_timeout_seconds": 1}
    )
    sockets = await open_sessions(server, "WAVE", 30)
    watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
    started = time.monotonic()
    # 3 s drain, 1 s for the peers to answer: 3 batches spread over 2 s, 1 s apart.
    await server.gateway.drain(3.0)
    finished = time.monotonic() - started
    results = await asyncio.gather(*watchers)
    assert {code for _, code in results} == {CLOSE_SERVICE_RESTART}
    assert max(moment for moment, _ in results) - started < 3.0, "all within drain_seconds"
    groups = waves([moment for moment, _ in results], gap=0.4)
    assert [len(group) for group in groups] == [10, 10, 10], "three waves of one batch each"
    assert 0.7 < groups[1][0] - groups[0][0] < 1.3 and 0.7 < groups[2][0] - groups[1][0] < 1.3
    assert finished < 3.0 and server.gateway.registry.local_sessions() == []


async def test_readiness_turns_false_and_upgrades_get_503_while_batches_close(start_gateway):
    server = await start_gateway(
        server={"drain_batch_size": 2}, limits={"close_timeout_seconds": 1}
    )
    sockets = await open_sessions(server, "BUSY", 6)
    drain = asyncio.create_task(server.gateway.drain(3.0))
    await asyncio.sleep(0.2)  # the first batch is closed, the others wait their turn
    assert server.gateway.draining, "readiness reads this flag"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(server.url("LATE"), subprotocols=["ocpp1.6"]):
            pass
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "5"
    assert server.gateway.admission.refused["draining"] == 1
    open_now = [ws for ws in sockets if ws.close_code is None]
    assert len(open_now) == 4, "only the first batch is closed so far"
    await drain
    assert all(ws.close_code == CLOSE_SERVICE_RESTART for ws in sockets)


async def test_batch_size_zero_closes_every_session_at_once(start_gateway):
    server = await start_gateway(server={"drain_batch_size": 0})
    sockets = await open_sessions(server, "ALL", 12)
    watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
    await server.gateway.drain(3.0)
    results = await asyncio.gather(*watchers)
    assert {code for _, code in results} == {CLOSE_SERVICE_RESTART}
    assert len(waves([moment for moment, _ in results], gap=0.2)) == 1


async def test_library_charge_point_sees_1012_and_its_reason(start_gateway):
    server = await start_gateway()
    async with running_station(server.url("LIB1"), "ocpp2.0.1", "LIB1") as station:
        await server.gateway.drain(2.0)
        await asyncio.sleep(0.1)
        assert station._connection.close_code == CLOSE_SERVICE_RESTART
        assert "restart" in station._connection.close_reason
