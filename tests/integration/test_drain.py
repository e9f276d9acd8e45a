"""The graceful drain (SIGTERM): readiness off, new upgrades refused, sessions closed in batches.

Sessions are closed with 1012 Service Restart (IANA WebSocket Close Code Number Registry, RFC 6455
section 11.7: the client may reconnect, after a randomized delay), `server.drain_batch_size` at a
time, the batches spread so that the last close handshake ends within `server.drain_seconds`.
Charge points then reconnect elsewhere with their randomized back-off (OCPP-J 2.0.1 part 4, 5.3).
"""

from __future__ import annotations

import asyncio
import logging
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


async def test_drain_closes_sessions_in_batches_with_1012_within_drain_seconds(
    start_gateway, caplog
):
    caplog.set_level(logging.INFO, logger="gateway")
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
    assert finished < 3.0 and server.gateway.registry.local_sessions() == []
    batches = [r.fields for r in caplog.records if r.msg == "drain_batch"]
    # The drain's own clock: batches of 10 one second apart, never early (a busy loop that
    # wakes up late closes every batch due meanwhile at once: the pure schedule tests).
    assert sum(batch["closed"] for batch in batches) == 30
    assert batches[0]["closed"] == 10 and batches[0]["at"] < 0.5
    closed_before = 0
    for batch in batches:
        assert batch["closed"] % 10 == 0 and batch["at"] >= closed_before / 10 - 0.01, batches
        closed_before += batch["closed"]
    if len(batches) == 3:  # no late wake-up: three waves at the clients, about 1 s apart
        groups = waves([moment for moment, _ in results], gap=0.4)
        assert [len(group) for group in groups] == [10, 10, 10], "three waves of one batch each"


async def test_readiness_turns_false_and_upgrades_get_503_while_batches_close(start_gateway):
    server = await start_gateway(
        server={"drain_batch_size": 2}, limits={"close_timeout_seconds": 1}
    )
    sockets = await open_sessions(server, "BUSY", 6)
    drain = asyncio.create_task(server.gateway.drain(3.0))
    deadline = time.monotonic() + 0.8  # the second batch is due 1 s after the first
    while sum(ws.close_code is not None for ws in sockets) < 2:
        assert time.monotonic() < deadline, "the first batch was not closed in time"
        await asyncio.sleep(0.02)
    assert server.gateway.draining, "readiness reads this flag"
    open_now = [ws for ws in sockets if ws.close_code is None]
    assert len(open_now) == 4, "only the first batch is closed so far"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(server.url("LATE"), subprotocols=["ocpp1.6"]):
            pass
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["Retry-After"] == "5"
    assert server.gateway.admission.refused["draining"] == 1
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
        await asyncio.wait_for(station._connection.wait_closed(), 5)
        assert station._connection.close_code == CLOSE_SERVICE_RESTART
        assert "restart" in station._connection.close_reason
