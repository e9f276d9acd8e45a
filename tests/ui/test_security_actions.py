"""Admin security actions through the UI API: password rotation (TC_A_09/10_CSMS), security
profile upgrade (TC_A_19_CSMS), certificate deletion with the reported hash data (M04.FR.07)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import orjson
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from security.passwords import hash_password, password_bytes_v2, password_bytes_v16
from security.records import ChargePointRecord, InMemoryRecordStore
from security.tokens import InMemoryTokenStore

from .conftest import UiGateway, connect

OLD = "Old-Password-000000000"
OLD_KEY = "00112233445566778899aabbccddeeff"
HASH = {
    "hashAlgorithm": "SHA256",
    "issuerNameHash": "aa" * 32,
    "issuerKeyHash": "bb" * 32,
    "serialNumber": "0123abcd",
}


def _basic(identity: str, secret: bytes) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(identity.encode() + b":" + secret).decode()
    }


@pytest.fixture
async def admin_gateway(start_gateway):
    records = InMemoryRecordStore(
        [
            ChargePointRecord("ROT2", 1, hash_password(password_bytes_v2(OLD))),
            ChargePointRecord("ROT16", 1, hash_password(password_bytes_v16(OLD_KEY))),
            ChargePointRecord("CERTS", 0),
        ]
    )
    tokens = InMemoryTokenStore()
    server = await start_gateway(
        records=records,
        tokens=tokens,
        security={"dev_auto_register": False},
        tls={"reload_interval_seconds": 0.1},
    )
    gateway = UiGateway(server, tokens)
    for role in ("operator", "admin"):
        gateway.add_token(role, role)
    gateway.records = records  # type: ignore[attr-defined]
    return gateway


@contextlib.asynccontextmanager
async def scripted(url: str, subprotocol: str, answers: dict[str, Any], headers=None):
    """A charge point that answers each CSMS action with a fixed payload and records the CALLs."""
    ws = await websockets.connect(url, subprotocols=[subprotocol], additional_headers=headers)
    calls: list[list[Any]] = []

    async def serve() -> None:
        async for frame in ws:
            message = orjson.loads(frame)
            if message[0] == 2:
                calls.append(message)
                answer = answers[message[2]]
                await ws.send(orjson.dumps([3, message[1], answer]).decode())

    task = asyncio.create_task(serve())
    try:
        yield calls
    finally:
        task.cancel()
        await ws.close()


async def _status_of(url: str, subprotocol: str, headers) -> int:
    try:
        async with websockets.connect(url, subprotocols=[subprotocol], additional_headers=headers):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def _accepted_variable(status: str) -> dict[str, Any]:
    return {
        "setVariableResult": [
            {
                "attributeStatus": status,
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            }
        ]
    }


@pytest.mark.parametrize(("answer", "rotated"), [("Accepted", True), ("Rejected", False)])
async def test_password_rotation_2x_stores_the_new_password_only_when_accepted(
    admin_gateway, answer, rotated
):
    """TC_A_09_CSMS (Accepted: the old password stops working), TC_A_10_CSMS (Rejected: kept)."""
    admin = await connect(admin_gateway, "admin")
    url = admin_gateway.cp_url("ROT2")
    async with scripted(
        url, "ocpp2.0.1", {"SetVariables": _accepted_variable(answer)}, _basic("ROT2", OLD.encode())
    ) as calls:
        result = await admin.request(
            {"type": "security_action", "identity": "ROT2", "action": "rotate_password"}
        )
    assert (result["type"], result["status"]) == ("security_result", answer)
    data = calls[0][3]["setVariableData"][0]
    assert (data["component"]["name"], data["variable"]["name"]) == (
        "SecurityCtrlr",
        "BasicAuthPassword",
    )
    new = data["attributeValue"]
    assert 16 <= len(new) <= 40 and new not in orjson.dumps(result).decode()
    old_status = await _status_of(url, "ocpp2.0.1", _basic("ROT2", OLD.encode()))
    new_status = await _status_of(url, "ocpp2.0.1", _basic("ROT2", new.encode()))
    assert (old_status, new_status) == ((401, 101) if rotated else (101, 401))


async def test_password_rotation_16_sends_an_authorization_key_and_stores_its_bytes(admin_gateway):
    admin = await connect(admin_gateway, "admin")
    url = admin_gateway.cp_url("ROT16")
    async with scripted(
        url,
        "ocpp1.6",
        {"ChangeConfiguration": {"status": "Accepted"}},
        _basic("ROT16", bytes.fromhex(OLD_KEY)),
    ) as calls:
        result = await admin.request(
            {"type": "security_action", "identity": "ROT16", "action": "rotate_password"}
        )
    assert result["status"] == "Accepted"
    assert calls[0][3]["key"] == "AuthorizationKey"
    key = bytes.fromhex(calls[0][3]["value"])
    assert len(key) == 20
    assert await _status_of(url, "ocpp1.6", _basic("ROT16", key)) == 101
    assert await _status_of(url, "ocpp1.6", _basic("ROT16", bytes.fromhex(OLD_KEY))) == 401


async def test_profile_upgrade_closes_the_old_session_and_refuses_the_old_profile(admin_gateway):
    """TC_A_19_CSMS / 1.6 whitepaper A05: after the upgrade, plain ws is refused (downgrade)."""
    admin = await connect(admin_gateway, "admin")
    url = admin_gateway.cp_url("ROT16")
    headers = _basic("ROT16", bytes.fromhex(OLD_KEY))
    async with scripted(
        url, "ocpp1.6", {"ChangeConfiguration": {"status": "Accepted"}}, headers
    ) as calls:
        result = await admin.request(
            {
                "type": "security_action",
                "identity": "ROT16",
                "action": "upgrade_profile",
                "profile": 2,
            }
        )
        assert (result["status"], result["security_profile"]) == ("Accepted", 2)
        assert calls[0][3] == {"key": "SecurityProfile", "value": "2"}
        for _ in range(100):  # the live profile-1 session is closed by the record check
            if admin_gateway.server.gateway.registry.get("ROT16") is None:
                break
            await asyncio.sleep(0.05)
        assert admin_gateway.server.gateway.registry.get("ROT16") is None
    assert await _status_of(url, "ocpp1.6", headers) == 401
    refused = await admin.request(
        {"type": "security_action", "identity": "ROT16", "action": "upgrade_profile", "profile": 1}
    )
    assert (refused["type"], refused["code"]) == ("error", "invalid"), "a profile never goes down"
    assert "not above" in refused["reason"]


async def test_delete_certificate_uses_the_hash_data_the_charge_point_reported(admin_gateway):
    """M04.FR.07: DeleteCertificate carries exactly the reported certificateHashData."""
    admin = await connect(admin_gateway, "admin")
    answers = {
        "GetInstalledCertificateIds": {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": HASH}
            ],
        },
        "DeleteCertificate": {"status": "Accepted"},
    }
    async with scripted(admin_gateway.cp_url("CERTS"), "ocpp2.0.1", answers) as calls:
        result = await admin.request(
            {
                "type": "security_action",
                "identity": "CERTS",
                "action": "delete_certificate",
                "serial_number": "123ABCD",
            }
        )
        missing = await admin.request(
            {
                "type": "security_action",
                "identity": "CERTS",
                "action": "delete_certificate",
                "serial_number": "ffff",
            }
        )
    assert result["status"] == "Accepted" and result["certificateHashData"] == HASH
    deletes = [c for c in calls if c[2] == "DeleteCertificate"]
    assert len(deletes) == 1 and deletes[0][3] == {"certificateHashData": HASH}
    assert missing["status"] == "NotFound"


async def test_security_actions_and_sensitive_commands_need_admin(admin_gateway):
    operator = await connect(admin_gateway, "operator")
    action = await operator.request(
        {"type": "security_action", "identity": "CERTS", "action": "rotate_password"}
    )
    assert (action["type"], action["code"]) == ("error", "forbidden")
    install = await operator.request(
        {
            "type": "command",
            "identity": "CERTS",
            "action": "InstallCertificate",
            "payload": {"certificateType": "CSMSRootCertificate", "certificate": "x"},
        }
    )
    assert (install["type"], install["code"]) == ("error", "forbidden")
    password = await operator.request(
        {
            "type": "command",
            "identity": "CERTS",
            "action": "ChangeConfiguration",
            "payload": {"key": "AuthorizationKey", "value": "00"},
        }
    )
    assert password["code"] == "forbidden"


async def _cli(admin_gateway, *args: str, token: str) -> tuple[int, dict]:
    import os
    import sys

    url = f"ws://127.0.0.1:{admin_gateway.server.port}/ui"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "remote",
        "--url",
        url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OCPP_GATEWAY_TOKEN": token},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, orjson.loads(out) if out.strip() else {"stderr": err.decode()}


async def test_cli_acts_on_live_charge_points_through_the_ui_api(admin_gateway):
    url = admin_gateway.cp_url("ROT2")
    answers = {
        "SetVariables": _accepted_variable("Accepted"),
        "ChangeAvailability": {"status": "Accepted"},
    }
    async with scripted(url, "ocpp2.0.1", answers, _basic("ROT2", OLD.encode())) as calls:
        code, listed = await _cli(admin_gateway, "list", token=admin_gateway.secrets["admin"])
        assert code == 0 and [cp["identity"] for cp in listed["charge_points"]] == ["ROT2"]
        code, rotated = await _cli(
            admin_gateway, "rotate-password", "ROT2", token=admin_gateway.secrets["admin"]
        )
        assert (code, rotated["status"]) == (0, "Accepted")
        code, answer = await _cli(
            admin_gateway,
            "command",
            "ROT2",
            "ChangeAvailability",
            "--payload",
            '{"operationalStatus":"Inoperative"}',
            token=admin_gateway.secrets["operator"],
        )
        assert (code, answer["payload"]) == (0, {"status": "Accepted"})
        code, refused = await _cli(
            admin_gateway, "rotate-password", "ROT2", token=admin_gateway.secrets["operator"]
        )
        assert (code, refused["code"]) == (1, "forbidden")
    assert [c[2] for c in calls] == ["SetVariables", "ChangeAvailability"]


async def test_certificate_management_commands_reach_the_charge_point_for_admins(admin_gateway):
    """TC_M_*_CSMS: InstallCertificate and GetInstalledCertificateIds with the real answers."""
    admin = await connect(admin_gateway, "admin")
    answers = {
        "InstallCertificate": {"status": "Accepted"},
        "GetInstalledCertificateIds": {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "CSMSRootCertificate", "certificateHashData": HASH}
            ],
        },
    }
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    async with scripted(admin_gateway.cp_url("CERTS"), "ocpp2.0.1", answers) as calls:
        installed = await admin.request(
            {
                "type": "command",
                "identity": "CERTS",
                "action": "InstallCertificate",
                "payload": {"certificateType": "CSMSRootCertificate", "certificate": pem},
            }
        )
        listed = await admin.request(
            {
                "type": "command",
                "identity": "CERTS",
                "action": "GetInstalledCertificateIds",
                "payload": {"certificateType": ["CSMSRootCertificate"]},
            }
        )
    assert installed["payload"] == {"status": "Accepted"}
    assert listed["payload"]["certificateHashDataChain"][0]["certificateHashData"] == HASH
    assert calls[0][3] == {"certificateType": "CSMSRootCertificate", "certificate": pem}


@pytest.mark.parametrize(
    ("identity", "subprotocol", "answers", "secret"),
    [
        ("ROT2", "ocpp2.0.1", {"SetVariables": _accepted_variable("Accepted")}, OLD.encode()),
        (
            "ROT16",
            "ocpp1.6",
            {"ChangeConfiguration": {"status": "Accepted"}},
            bytes.fromhex(OLD_KEY),
        ),
    ],
)
async def test_watchers_never_see_the_new_password_of_a_rotation(
    admin_gateway, identity, subprotocol, answers, secret
):
    """A viewer watching messages sees the rotation CALL with its secret redacted."""
    admin_gateway.add_token("viewer", "viewer")
    viewer = await connect(admin_gateway, "viewer")
    await viewer.request({"type": "subscribe", "identities": [identity], "events": ["message"]})
    admin = await connect(admin_gateway, "admin")
    url = admin_gateway.cp_url(identity)
    async with scripted(url, subprotocol, answers, _basic(identity, secret)) as calls:
        result = await admin.request(
            {"type": "security_action", "identity": identity, "action": "rotate_password"}
        )
        seen = await viewer.next_event(lambda e: e.get("direction") == "out")
    assert result["status"] == "Accepted"
    sent = calls[0][3]
    new = (
        sent["value"] if subprotocol == "ocpp1.6" else sent["setVariableData"][0]["attributeValue"]
    )
    published = orjson.loads(seen["frame"]) if isinstance(seen["frame"], str) else seen["frame"]
    assert published[1] == calls[0][1] and published[2] == calls[0][2]
    assert new not in orjson.dumps(seen).decode()
    assert "***" in orjson.dumps(published).decode()
