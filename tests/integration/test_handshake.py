"""What a client sees at the upgrade: identity checks, version negotiation, refusals.

OCPP-J 2.0.1/2.1 part 4, 3.1.1 (connection URL, identity) and 3.2 (server response).
"""

from __future__ import annotations

import asyncio
import socket

import pytest
import websockets
from websockets.exceptions import InvalidStatus


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["ocpp1.6"], "ocpp1.6"),
        (["ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp2.1"], "ocpp2.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),  # the server's preference wins
        (["ocpp1.6", "ocpp2.0.1", "ocpp2.1"], "ocpp2.1"),
        (["ocpp1.5", "ocpp1.6"], "ocpp1.6"),
    ],
)
async def test_server_picks_its_most_preferred_offered_version(gateway_server, offered, expected):
    async with websockets.connect(gateway_server.url("NEG1"), subprotocols=offered) as ws:
        assert ws.subprotocol == expected


async def test_configured_preference_order_is_used(start_gateway):
    server = await start_gateway(ocpp={"versions": ["ocpp1.6", "ocpp2.0.1"]})
    offered = ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]
    async with websockets.connect(server.url("NEG2"), subprotocols=offered) as ws:
        assert ws.subprotocol == "ocpp1.6"


@pytest.mark.parametrize("offered", [None, ["ocpp1.5"], ["OCPP1.6"], ["chat"]])
async def test_no_common_version_completes_handshake_without_protocol_then_closes(
    gateway_server, offered
):
    """OCPP-J 3.2: respond without Sec-WebSocket-Protocol, then immediately close."""
    async with websockets.connect(gateway_server.url("NEG3"), subprotocols=offered) as ws:
        assert ws.subprotocol is None
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd.code == 1002
    assert "no common OCPP version" in closed.value.rcvd.reason


@pytest.mark.parametrize(
    ("path_identity", "why"),
    [
        ("CP:1", "not allowed"),
        ("a" * 49, "longer than 48"),
        ("CP%2F1", "not allowed"),
        ("CP%3A1", "not allowed"),
        ("CP%FF", "UTF-8"),
        ("RDAM%20123", "not allowed"),
        ("a/b", "single last path segment"),
        ("", "no charge point identity"),
    ],
)
async def test_invalid_identity_is_refused_with_400_before_upgrade(
    gateway_server, path_identity, why
):
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(gateway_server.url(path_identity), subprotocols=["ocpp1.6"]):
            pass
    assert refused.value.response.status_code == 400
    assert why in refused.value.response.body.decode()


async def test_longest_allowed_identity_and_percent_encoding_are_accepted(start_gateway):
    server = await start_gateway(ocpp={"identity_extra_characters": " "})
    for path_identity in ("a" * 48, "CP%2D1", "RDAM%20123", "*-_=+|@."):
        async with websockets.connect(server.url(path_identity), subprotocols=["ocpp1.6"]) as ws:
            await ws.send('[2,"1","Heartbeat",{}]')
            assert (await asyncio.wait_for(ws.recv(), 2)).startswith('[3,"1",')
    assert server.gateway.registry.get("RDAM 123") is None  # closed again


async def test_plain_http_request_on_the_charge_point_route_gets_426(gateway_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_server.port)
    writer.write(b"GET /ocpp/CP1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    assert response.startswith(b"HTTP/1.1 426")


async def test_healthz_answers(gateway_server):
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert b'"status":"ok"' in response.replace(b" ", b"")


def _raw_upgrade(port: int, extra_headers: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(
            (
                "GET /ocpp/RAW1 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                f"{extra_headers}\r\n"
            ).encode()
        )
        return sock.recv(4096)


async def test_permessage_deflate_is_declined_by_default(gateway_server):
    response = await asyncio.to_thread(
        _raw_upgrade, gateway_server.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    )
    assert response.startswith(b"HTTP/1.1 101")
    assert b"sec-websocket-extensions" not in response.lower()
    assert b"sec-websocket-protocol: ocpp1.6" in response.lower()


async def test_permessage_deflate_is_negotiated_when_enabled(start_gateway):
    server = await start_gateway(server={"permessage_deflate": True})
    response = await asyncio.to_thread(
        _raw_upgrade, server.port, "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    )
    assert b"sec-websocket-extensions: permessage-deflate" in response.lower()
