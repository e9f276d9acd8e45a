"""Real `ocpp` library charge points of each version against a running gateway (embedded mode)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from ocpp.v16 import call as call16
from ocpp.v21 import call as call21
from ocpp.v201 import call as call201

from gateway.ocppj.codec import CallError, CallResult

from .clients import running_station


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def test_ocpp16_charge_point_runs_a_full_session(gateway_server):
    """Boot, heartbeat, status, authorize, a transaction with meter values (1.6 sections 4-6)."""
    async with running_station(gateway_server.url("CP16"), "ocpp1.6", "CP16") as cp:
        boot = await cp.call(
            call16.BootNotification(charge_point_model="M1", charge_point_vendor="Vendor")
        )
        assert boot.status == "Accepted"
        assert boot.interval == 300
        heartbeat = await cp.call(call16.Heartbeat())
        assert abs(datetime.fromisoformat(heartbeat.current_time).timestamp() - _ts()) < 5
        status = await cp.call(
            call16.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        assert status is not None
        auth = await cp.call(call16.Authorize(id_tag="TAG1"))
        assert auth.id_tag_info["status"] == "Accepted"
        start = await cp.call(
            call16.StartTransaction(
                connector_id=1, id_tag="TAG1", meter_start=100, timestamp=_now()
            )
        )
        assert start.id_tag_info["status"] == "Accepted"
        assert start.transaction_id > 0
        meter = await cp.call(
            call16.MeterValues(
                connector_id=1,
                transaction_id=start.transaction_id,
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampled_value": [
                            {
                                "value": "1234.5",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            },
                            {
                                "value": "16.2",
                                "measurand": "Current.Import",
                                "unit": "A",
                                "phase": "L1",
                            },
                        ],
                    }
                ],
            )
        )
        assert meter is not None
        stop = await cp.call(
            call16.StopTransaction(
                meter_stop=2000,
                timestamp=_now(),
                transaction_id=start.transaction_id,
                id_tag="TAG1",
                reason="Local",
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"


def _ts() -> float:
    return datetime.now(UTC).timestamp()


@pytest.mark.parametrize(("subprotocol", "calls"), [("ocpp2.0.1", call201), ("ocpp2.1", call21)])
async def test_ocpp2_charging_station_runs_a_full_session(gateway_server, subprotocol, calls):
    """Boot (B01), heartbeat (G02), status (G01), authorize (C01), TransactionEvent (E01-E06)."""
    async with running_station(gateway_server.url("CS2"), subprotocol, "CS2") as cs:
        boot = await cs.call(
            calls.BootNotification(
                charging_station={"model": "M2", "vendor_name": "Vendor"}, reason="PowerUp"
            )
        )
        assert boot.status == "Accepted"
        assert boot.interval == 300
        await cs.call(calls.Heartbeat())
        await cs.call(
            calls.StatusNotification(
                timestamp=_now(), connector_status="Available", evse_id=1, connector_id=1
            )
        )
        token = {"id_token": "TOKEN1", "type": "ISO14443"}
        auth = await cs.call(calls.Authorize(id_token=token))
        assert auth.id_token_info["status"] == "Accepted"
        started = await cs.call(
            calls.TransactionEvent(
                event_type="Started",
                timestamp=_now(),
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transaction_id": "tx-1"},
                id_token=token,
                evse={"id": 1, "connector_id": 1},
            )
        )
        assert started.id_token_info["status"] == "Accepted"
        await cs.call(
            calls.TransactionEvent(
                event_type="Updated",
                timestamp=_now(),
                trigger_reason="MeterValuePeriodic",
                seq_no=1,
                transaction_info={"transaction_id": "tx-1", "charging_state": "Charging"},
                meter_value=[
                    {
                        "timestamp": _now(),
                        "sampled_value": [
                            {"value": 1234.5, "measurand": "Energy.Active.Import.Register"}
                        ],
                    }
                ],
            )
        )
        await cs.call(
            calls.TransactionEvent(
                event_type="Ended",
                timestamp=_now(),
                trigger_reason="EVCommunicationLost",
                seq_no=2,
                transaction_info={"transaction_id": "tx-1", "stopped_reason": "EVDisconnected"},
            )
        )


HEARTBEAT_VARIABLE = {
    "component": {"name": "OCPPCommCtrlr"},
    "variable": {"name": "HeartbeatInterval"},
}
GET_VARIABLES = {"getVariableData": [HEARTBEAT_VARIABLE]}
GET_VARIABLES_ANSWER = {
    "getVariableResult": [
        {"attributeStatus": "Accepted", "attributeValue": "42", **HEARTBEAT_VARIABLE}
    ]
}


@pytest.mark.parametrize(
    ("subprotocol", "action", "payload", "expected"),
    [
        (
            "ocpp1.6",
            "ChangeConfiguration",
            {"key": "HeartbeatInterval", "value": "60"},
            {"status": "Accepted"},
        ),
        (
            "ocpp2.0.1",
            "GetVariables",
            GET_VARIABLES,
            GET_VARIABLES_ANSWER,
        ),
        (
            "ocpp2.1",
            "GetVariables",
            GET_VARIABLES,
            GET_VARIABLES_ANSWER,
        ),
    ],
)
async def test_gateway_initiated_call_returns_the_charge_points_answer(
    gateway_server, subprotocol, action, payload, expected
):
    async with running_station(gateway_server.url("CP-CALLED"), subprotocol, "CP-CALLED"):
        result = await gateway_server.gateway.router.call("CP-CALLED", action, payload)
    assert isinstance(result, CallResult)
    assert result.payload == expected


async def test_gateway_call_answered_with_callerror_returns_the_callerror(gateway_server):
    """The library answers an action it has no handler for with NotImplemented/NotSupported."""
    async with running_station(gateway_server.url("CP-ERR"), "ocpp1.6", "CP-ERR"):
        result = await gateway_server.gateway.router.call("CP-ERR", "ClearCache", {})
    assert isinstance(result, CallError)
    assert result.error_code in {"NotImplemented", "NotSupported"}
