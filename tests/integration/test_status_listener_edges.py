"""The status routes under odd requests, and what they (and the logs) never show.

RFC 9110 15.5.6: a 405 response carries `Allow`. The status listener serves no WebSocket: an
upgrade is refused with 403 (ASGI WebSocket spec: closing before accepting), not a 500 that
pages someone. Odd requests never stop it from answering.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from security.passwords import hash_password, password_bytes_v2
from security.records import ChargePointRecord, InMemoryRecordStore

SECRET = "Wrong-But-Secret-Passw0rd-42"  # what a charge point sent: must never be shown


async def request(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange on 127.0.0.1:`port`: status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    top, _, body = response.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    pairs = (line.split(": ", 1) for line in lines[1:])
    headers = {name.lower(): value for name, value in pairs}
    return int(lines[0].split(" ", 2)[1]), headers, body


def http(method: str, path: str) -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()


@pytest.mark.parametrize("listener", ["status", "charge_point"])
async def test_other_methods_on_status_paths_get_405_naming_get_and_head(start_gateway, listener):
    if listener == "status":
        server = await start_gateway(status={"bind": "127.0.0.1:0"})
        port = server.status_port
    else:
        server = await start_gateway()
        port = server.port
    for method, path in (("POST", "/metrics"), ("OPTIONS", "/readyz"), ("DELETE", "/healthz")):
        status, headers, _ = await request(port, http(method, path))
        assert status == 405, (method, path)
        assert headers.get("allow") == "GET, HEAD", (method, path)


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/ocpp/CP1", "/ui"])
async def test_a_websocket_upgrade_on_the_status_listener_is_refused_with_403(start_gateway, path):
    server = await start_gateway(status={"bind": "127.0.0.1:0"})
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(f"ws://127.0.0.1:{server.status_port}{path}")
    assert refused.value.response.status_code == 403


async def test_odd_requests_never_stop_the_status_listener(start_gateway):
    server = await start_gateway(status={"bind": "127.0.0.1:0"})
    port = server.status_port
    odd = [
        b"GARBAGE\r\n\r\n",
        http("OPTIONS", "*"),
        http("GET", "http://elsewhere.example/healthz"),
        http("BREW", "/metrics"),
        http("GET", "/metrics/../../etc/passwd"),
        b"GET /healthz HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ]
    for head in odd:
        status, _, _ = await request(port, head)
        assert status < 500, head
    status, _, body = await request(port, http("GET", "/healthz"))
    assert status == 200 and b'"ok"' in body


async def test_a_refused_password_is_in_neither_the_metrics_nor_the_logs(start_gateway, caplog):
    records = InMemoryRecordStore(
        [
            ChargePointRecord(
                "CPPW", security_profile=1, password_hash=hash_password(password_bytes_v2("x" * 16))
            )
        ]
    )
    server = await start_gateway(records=records, security={"dev_auto_register": False})
    caplog.set_level(logging.DEBUG, logger="gateway")
    token = base64.b64encode(f"CPPW:{SECRET}".encode()).decode()
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            server.url("CPPW"),
            subprotocols=["ocpp2.0.1"],
            additional_headers={"Authorization": f"Basic {token}"},
        )
    assert refused.value.response.status_code == 401
    _, _, metrics = await request(server.port, http("GET", "/metrics"))
    assert b"unknown_or_bad_credentials" in metrics  # the refusal is counted, by reason only
    logged = "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', '')}"
        for r in caplog.records
        if r.name.startswith(("gateway", "hypercorn", "security"))  # not the test's client
    )
    assert "unknown_or_bad_credentials" in logged
    for shown in (metrics.decode(), logged):
        assert SECRET not in shown and token not in shown
