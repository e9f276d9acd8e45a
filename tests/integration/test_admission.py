"""Admission control under a reconnect storm: TLS handshake slots, the connection limit, boots.

Real sockets and real TLS (the test CA from `tests/security`), real `ocpp` library charge points.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from ocpp.exceptions import SecurityError
from ocpp.v16 import call as call16
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201
from websockets.exceptions import InvalidStatus

from security.records import ChargePointRecord

from ..security import conftest as security_fixtures
from ..security.helpers import client_context
from .clients import running_station

start_secure = security_fixtures.start_secure  # the fixture: a wss gateway with a test CA


@dataclass
class Outcome:
    """One connection attempt of a storm, as the charge point saw it."""

    status: int | None  # 101 upgraded, the HTTP status, or None (TLS or TCP failed)
    seconds: float
    retry_after: str | None = None
    body: bytes = b""
    ws: Any = None  # the open connection when upgraded (held until the test closes it)


async def connect_and_hold(url: str, context: ssl.SSLContext | None = None) -> Outcome:
    """Connect like a charge point and keep the connection open."""
    started = time.monotonic()
    try:
        ws = await websockets.connect(url, subprotocols=["ocpp2.0.1"], ssl=context, open_timeout=15)
    except InvalidStatus as refused:
        response = refused.response
        return Outcome(
            response.status_code,
            time.monotonic() - started,
            response.headers.get("Retry-After"),
            response.body or b"",
        )
    except (OSError, ssl.SSLError, TimeoutError, websockets.exceptions.InvalidMessage):
        return Outcome(None, time.monotonic() - started)
    return Outcome(101, time.monotonic() - started, ws=ws)


async def close_all(outcomes: list[Outcome]) -> None:
    await asyncio.gather(*(o.ws.close() for o in outcomes if o.ws is not None))


def add_profile0_records(secure: Any, prefix: str, count: int) -> list[str]:
    identities = [f"{prefix}{index}" for index in range(count)]
    for identity in identities:
        secure.records.put(ChargePointRecord(identity, security_profile=0))
    return identities


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _events(caplog, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name and hasattr(r, "fields")]


# -- the connection limit (before the upgrade) ---------------------------------------------------


async def test_upgrade_above_max_connections_gets_503_with_jittered_retry_after(
    start_gateway, caplog
):
    caplog.set_level(logging.INFO)
    server = await start_gateway(
        limits={"max_connections": 3, "retry_after_seconds": 7, "retry_after_jitter_seconds": 5}
    )
    admission = server.gateway.admission
    held = [await connect_and_hold(server.url(f"FULL{index}")) for index in range(3)]
    assert [o.status for o in held] == [101, 101, 101]
    refused = [await connect_and_hold(server.url(f"MORE{index}")) for index in range(4)]
    assert {o.status for o in refused} == {503}
    assert all(7 <= int(o.retry_after or 0) <= 12 for o in refused)
    assert b"maximum of 3 charge points" in refused[0].body
    assert admission.connections == 3 and admission.refused["max_connections"] == 4
    assert server.gateway.registry.get("MORE0") is None
    logged = _events(caplog, "admission_refused")
    assert logged[0]["reason"] == "max_connections" and logged[0]["limit"] == 3
    assert sum(line["refused"] for line in logged) <= 4  # a storm is logged once a second
    # A connection that ends frees its place.
    await held[0].ws.close()
    await _until(lambda: admission.connections == 2)
    again = await connect_and_hold(server.url("AGAIN"))
    assert again.status == 101
    await close_all([*held, again])
    await _until(lambda: admission.connections == 0)


async def test_max_connections_zero_means_unlimited(start_gateway):
    server = await start_gateway(limits={"max_connections": 0})
    held = await asyncio.gather(*(connect_and_hold(server.url(f"U{i}")) for i in range(25)))
    assert {o.status for o in held} == {101}
    assert server.gateway.admission.refused == {}
    await close_all(held)


# -- TLS handshakes (the accept loop) ------------------------------------------------------------


async def test_tls_handshakes_beyond_the_limit_queue_and_all_complete_in_time(start_secure):
    secure = await start_secure(
        limits={"max_tls_handshakes": 2}, tls={"handshake_timeout_seconds": 3}
    )
    admission = secure.server.gateway.admission
    identities = add_profile0_records(secure, "TLSQ", 40)
    context = client_context(secure.certs_dir)
    outcomes = await asyncio.gather(*(connect_and_hold(secure.wss(i), context) for i in identities))
    try:
        assert [o.status for o in outcomes] == [101] * 40
        assert admission.handshakes_peak <= 2, "never more than max_tls_handshakes at once"
        assert admission.accept_pauses > 0, "the accept loop waited for free slots"
        assert max(o.seconds for o in outcomes) < 3, "nobody waited beyond the handshake timeout"
        assert admission.handshakes == 0
    finally:
        await close_all(outcomes)


async def test_stalled_handshakes_hold_their_slots_only_until_the_handshake_timeout(start_secure):
    secure = await start_secure(
        limits={"max_tls_handshakes": 2}, tls={"handshake_timeout_seconds": 1}
    )
    admission = secure.server.gateway.admission
    port = secure.server.wss_port
    # Two peers open TCP and never send a ClientHello: both handshake slots are taken.
    stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await _until(lambda: admission.handshakes == 2)
    (identity,) = add_profile0_records(secure, "PATIENT", 1)
    outcome = await connect_and_hold(secure.wss(identity), client_context(secure.certs_dir))
    try:
        # It waited in the listen backlog until the stalled handshakes timed out, then got in.
        assert outcome.status == 101
        assert 0.5 < outcome.seconds < 1 + 2
        for reader, _ in stalled:
            assert await asyncio.wait_for(reader.read(), 2) == b""  # dropped at the timeout
        assert secure.events.reasons().count("tls_handshake_timeout") == 2
        assert admission.accept_pauses >= 1 and admission.handshakes_peak == 2
    finally:
        for _, writer in stalled:
            writer.close()
        await close_all([outcome])


async def test_wss_storm_degrades_into_sessions_and_503s_and_nothing_hangs(start_secure):
    secure = await start_secure(
        limits={
            "max_tls_handshakes": 2,
            "max_connections": 10,
            "retry_after_seconds": 5,
            "retry_after_jitter_seconds": 10,
        },
        tls={"handshake_timeout_seconds": 3},
    )
    admission = secure.server.gateway.admission
    identities = add_profile0_records(secure, "STORM", 30)
    context = client_context(secure.certs_dir)
    started = time.monotonic()
    outcomes = await asyncio.gather(*(connect_and_hold(secure.wss(i), context) for i in identities))
    try:
        statuses = [o.status for o in outcomes]
        assert statuses.count(101) == 10 and statuses.count(503) == 20, statuses
        retry_afters = {int(o.retry_after or 0) for o in outcomes if o.status == 503}
        assert retry_afters <= set(range(5, 16))
        assert len(retry_afters) > 1, "the Retry-After values are spread by the jitter"
        assert max(o.seconds for o in outcomes) < 3, "no attempt hangs beyond the timeout"
        assert time.monotonic() - started < 6
        assert admission.refused["max_connections"] == 20 and admission.connections == 10
        assert admission.handshakes_peak <= 2
    finally:
        await close_all(outcomes)


# -- BootNotification Pending under load ----------------------------------------------------------


def _boot(subprotocol: str) -> Any:
    if subprotocol == "ocpp1.6":
        return call16.BootNotification(charge_point_model="M1", charge_point_vendor="Acme")
    module = call201 if subprotocol == "ocpp2.0.1" else call21
    return module.BootNotification(
        charging_station={"model": "M1", "vendor_name": "Acme"}, reason="PowerUp"
    )


def _status_notification(subprotocol: str) -> Any:
    if subprotocol == "ocpp1.6":
        return call16.StatusNotification(connector_id=1, error_code="NoError", status="Available")
    module = call201 if subprotocol == "ocpp2.0.1" else call21
    return module.StatusNotification(
        timestamp="2024-01-01T00:00:00Z", connector_status="Available", evse_id=1, connector_id=1
    )


async def test_boots_above_the_rate_are_pending_then_accepted_after_the_interval(start_gateway):
    """B02 (2.0.1, TC_B_02_CSMS) and 1.6 section 4.2: Pending with an interval; meanwhile the
    CSMS may send requests (answered), the charge point's own CALLs are refused with
    SecurityError (B02.FR.09); after the interval it boots again and is Accepted."""
    server = await start_gateway(
        embedded={
            "boot_pending_above": 2,
            "boot_pending_interval_seconds": 1,
            "boot_pending_jitter_seconds": 1,
        }
    )
    admission = server.gateway.admission
    versions = ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"] * 2
    async with stations_of(server, versions) as stations:
        first = await asyncio.gather(
            *(station.call(_boot(v)) for station, v in zip(stations, versions, strict=True))
        )
        statuses = [answer.status for answer in first]
        assert statuses.count("Accepted") == 2 and statuses.count("Pending") == 4, statuses
        for answer in first:
            if answer.status == "Pending":
                assert answer.interval in (1, 2), "interval + jitter, whole seconds"
        pending = [
            (station, v, answer.interval)
            for station, v, answer in zip(stations, versions, first, strict=True)
            if answer.status == "Pending"
        ]
        station, version, _ = pending[0]
        with pytest.raises(SecurityError):
            await station.call(_status_notification(version), suppress=False)
        if version == "ocpp1.6":
            change = {"key": "HeartbeatInterval", "value": "60"}
            action = "ChangeConfiguration"
        else:
            change = {
                "getVariableData": [
                    {
                        "component": {"name": "OCPPCommCtrlr"},
                        "variable": {"name": "OfflineThreshold"},
                    }
                ]
            }
            action = "GetVariables"
        answer = await server.gateway.router.call(station.id, action, change)
        assert answer.payload, "the CSMS may send requests while the charge point is Pending"
        await asyncio.gather(*(_boot_until_accepted(s, v, wait) for s, v, wait in pending))
        assert admission.boots_accepted == 6 and admission.boots_pending >= 4
        await station.call(_status_notification(version), suppress=False)  # now Accepted


@contextlib.asynccontextmanager
async def stations_of(server: Any, versions: list[str]) -> AsyncIterator[list[Any]]:
    """One running library charge point per version in `versions` (BOOT0, BOOT1, ...)."""
    async with contextlib.AsyncExitStack() as exits:
        yield [
            await exits.enter_async_context(
                running_station(server.url(f"BOOT{index}"), version, f"BOOT{index}")
            )
            for index, version in enumerate(versions)
        ]


async def _boot_until_accepted(station: Any, subprotocol: str, wait: int) -> None:
    deadline = time.monotonic() + 12
    while True:
        await asyncio.sleep(wait)  # "SHOULD NOT send a BootNotification earlier" (1.6 4.2)
        answer = await station.call(_boot(subprotocol))
        if answer.status == "Accepted":
            return
        assert answer.status == "Pending" and time.monotonic() < deadline
        wait = answer.interval


async def test_boot_pacing_off_accepts_every_boot(start_gateway):
    server = await start_gateway()  # the default: boot pacing off
    versions = ["ocpp2.0.1"] * 8
    async with stations_of(server, versions) as stations:
        answers = await asyncio.gather(
            *(s.call(_boot(v)) for s, v in zip(stations, versions, strict=True))
        )
    assert {a.status for a in answers} == {"Accepted"}
    assert {a.interval for a in answers} == {300}, "Accepted carries the heartbeat interval"
