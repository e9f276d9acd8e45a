"""One structured log line per connection event; refusals say why; no payloads at debug."""

from __future__ import annotations

import asyncio
import logging

import pytest
import websockets
from websockets.exceptions import InvalidStatus


def _events(caplog, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name and hasattr(r, "fields")]


async def test_connection_lifecycle_and_refusals_are_logged(gateway_server, caplog):
    caplog.set_level(logging.DEBUG)
    secret_payload = "PAYLOAD-MUST-NOT-BE-LOGGED"
    async with websockets.connect(gateway_server.url("LOG1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"m1","DataTransfer",{"vendorId":"v","data":"' + secret_payload + '"}]')
        await asyncio.wait_for(ws.recv(), 2)
        await ws.send("garbage")
        await asyncio.wait_for(ws.recv(), 2)
    with pytest.raises(InvalidStatus):
        async with websockets.connect(gateway_server.url("BAD:ID")):
            pass
    await asyncio.sleep(0.1)
    connected = _events(caplog, "connected")
    assert connected and connected[0]["identity"] == "LOG1"
    assert connected[0]["subprotocol"] == "ocpp1.6"
    assert _events(caplog, "disconnected")[0]["identity"] == "LOG1"
    refused = _events(caplog, "message_refused")[0]
    assert refused["error_code"] == "FormationViolation" and refused["message_id"] == "-1"
    handshake = _events(caplog, "handshake_refused")[0]
    assert handshake["status"] == 400 and handshake["reason"] == "invalid_identity"
    debug = _events(caplog, "message")
    assert {"direction": "in", "action": "DataTransfer"}.items() <= debug[0].items()
    assert all(
        secret_payload not in r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records
    )


def test_formatters_render_one_line_per_event():
    from gateway.logs import JsonFormatter, KeyValueFormatter

    record = logging.LogRecord("gateway", logging.INFO, __file__, 1, "connected", (), None)
    record.fields = {"identity": "CP 1", "code": 1000}
    json_line = JsonFormatter().format(record)
    kv_line = KeyValueFormatter().format(record)
    assert "\n" not in json_line and '"identity":"CP 1"' in json_line
    assert 'identity="CP 1"' in kv_line and "code=1000" in kv_line and "event=connected" in kv_line
