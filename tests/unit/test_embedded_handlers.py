"""Embedded central system: direction sets and a schema-valid answer to every charge point CALL."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import ocpp
import pytest
from ocpp.messages import get_validator

from gateway.embedded import v1_6, v2_0_1, v2_1
from gateway.embedded.base import BootStatus, EmbeddedContext, EmbeddedSettings, EmbeddedState

Payload = dict[str, Any]

MODULES: dict[str, ModuleType] = {"1.6": v1_6, "2.0.1": v2_0_1, "2.1": v2_1}
SCHEMA_DIRS = {"1.6": "v16", "2.0.1": "v201", "2.1": "v21"}
# (charge point actions, CSMS actions, SEND actions) per version.
EXPECTED_COUNTS = {"1.6": (14, 26, 0), "2.0.1": (25, 40, 0), "2.1": (36, 55, 1)}

NOW = datetime(2025, 3, 14, 9, 26, 53, 589123, tzinfo=UTC)
TIMESTAMP = "2025-03-14T09:26:41.120Z"


def make_ctx(now: datetime | None = NOW, **settings: Any) -> EmbeddedContext:
    """A context for one charge point, with fresh state; `now=None` keeps the real clock."""
    extra = {} if now is None else {"now": now}
    return EmbeddedContext(
        identity="CP-TEST-1", settings=EmbeddedSettings(**settings), state=EmbeddedState(), **extra
    )


def validate(message_type_id: int, action: str, version: str, payload: Payload) -> None:
    """Raise jsonschema's ValidationError unless `payload` matches the library's schema."""
    get_validator(message_type_id, action, version).validate(payload)


# -- Requests ------------------------------------------------------------------------------------


def minimal_instance(schema: dict[str, Any], node: dict[str, Any] | None = None) -> Any:
    """The smallest valid instance of `node` (default: the whole schema): required fields only."""
    node = schema if node is None else node
    if "$ref" in node:
        return minimal_instance(schema, schema["definitions"][node["$ref"].split("/")[-1]])
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        return {key: minimal_instance(schema, properties[key]) for key in node.get("required", ())}
    if kind == "array":
        count = max(node.get("minItems", 1), 1)
        count = min(count, node.get("maxItems", count))
        return [minimal_instance(schema, node["items"]) for _ in range(count)]
    if kind == "string":
        return {"date-time": TIMESTAMP, "uri": "https://example.com/"}.get(node.get("format"), "x")
    if kind in ("integer", "number"):
        value = int(node.get("minimum", 1))
        return min(value, int(node["maximum"])) if "maximum" in node else value
    if kind == "boolean":
        return False
    raise NotImplementedError(f"schema node not handled by the generator: {node}")


ID_TAG = "04A1B2C3D4E5F6"
CSR = (
    "-----BEGIN CERTIFICATE REQUEST-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOC\n"
    "-----END CERTIFICATE REQUEST-----"
)

METER_VALUE_16 = {
    "timestamp": TIMESTAMP,
    "sampledValue": [
        {
            "value": "15234.5",
            "context": "Sample.Periodic",
            "measurand": "Energy.Active.Import.Register",
            "location": "Outlet",
            "unit": "Wh",
        },
        {
            "value": "7360",
            "context": "Sample.Periodic",
            "measurand": "Power.Active.Import",
            "unit": "W",
        },
    ],
}

EXAMPLES_16: dict[str, dict[str, Payload]] = {
    "Authorize": {"": {"idTag": ID_TAG}},
    "BootNotification": {
        "": {
            "chargePointVendor": "ExampleVendor",
            "chargePointModel": "AC Wallbox 22",
            "chargePointSerialNumber": "SN-000123",
            "firmwareVersion": "1.4.2",
            "iccid": "8931080019073497795F",
            "meterType": "EM340",
        }
    },
    "DataTransfer": {
        "": {"vendorId": "com.example.charger", "messageId": "SetPriceText", "data": "0.39 EUR/kWh"}
    },
    "DiagnosticsStatusNotification": {"": {"status": "Uploaded"}},
    "FirmwareStatusNotification": {"": {"status": "Installed"}},
    "Heartbeat": {"": {}},
    "LogStatusNotification": {"": {"status": "Uploaded", "requestId": 7}},
    "MeterValues": {"": {"connectorId": 1, "transactionId": 1, "meterValue": [METER_VALUE_16]}},
    "SecurityEventNotification": {
        "": {"type": "SettingSystemTime", "timestamp": TIMESTAMP, "techInfo": "Clock set by NTP"}
    },
    "SignCertificate": {"": {"csr": CSR}},
    "SignedFirmwareStatusNotification": {"": {"status": "SignatureVerified", "requestId": 42}},
    "StartTransaction": {
        "": {"connectorId": 1, "idTag": ID_TAG, "meterStart": 15234, "timestamp": TIMESTAMP}
    },
    "StatusNotification": {
        "": {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Preparing",
            "timestamp": TIMESTAMP,
        }
    },
    "StopTransaction": {
        "with-idTag": {
            "transactionId": 1,
            "idTag": ID_TAG,
            "meterStop": 27734,
            "timestamp": TIMESTAMP,
            "reason": "Local",
            "transactionData": [METER_VALUE_16],
        },
        "without-idTag": {
            "transactionId": 1,
            "meterStop": 27734,
            "timestamp": TIMESTAMP,
            "reason": "EVDisconnected",
        },
    },
}

ID_TOKEN = {"idToken": ID_TAG, "type": "ISO14443"}
TRANSACTION_ID = "5f6c1a2e-8a51-4d0c-9b7e-2f7d3c1e9a40"


def meter_value_2x(context: str) -> Payload:
    """A 2.x MeterValueType with the energy register and the power, in `context`."""
    return {
        "timestamp": TIMESTAMP,
        "sampledValue": [
            {
                "value": 15234.5,
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "location": "Outlet",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {"value": 7360, "context": context, "measurand": "Power.Active.Import"},
        ],
    }


def transaction_event(event_type: str, trigger: str, seq_no: int, **extra: Any) -> Payload:
    """A TransactionEventRequest of the example transaction on EVSE 1."""
    info = {"transactionId": TRANSACTION_ID, **extra.pop("info", {})}
    return {
        "eventType": event_type,
        "timestamp": TIMESTAMP,
        "triggerReason": trigger,
        "seqNo": seq_no,
        "transactionInfo": info,
        "evse": {"id": 1, "connectorId": 1},
        **extra,
    }


# 2.1 only adds optional fields to the 2.0.1 messages: the same examples serve both.
EXAMPLES_2X: dict[str, dict[str, Payload]] = {
    "Authorize": {"": {"idToken": ID_TOKEN}},
    "BootNotification": {
        "": {
            "reason": "PowerUp",
            "chargingStation": {
                "model": "AC Wallbox 22",
                "vendorName": "ExampleVendor",
                "serialNumber": "SN-000123",
                "firmwareVersion": "1.4.2",
                "modem": {"iccid": "8931080019073497795F", "imsi": "204080150014962"},
            },
        }
    },
    "DataTransfer": {
        "": {
            "vendorId": "com.example.charger",
            "messageId": "SetPriceText",
            "data": {"text": "0.39 EUR/kWh"},
        }
    },
    "FirmwareStatusNotification": {"": {"status": "Installed", "requestId": 42}},
    "Heartbeat": {"": {}},
    "LogStatusNotification": {"": {"status": "Uploaded", "requestId": 7}},
    "MeterValues": {"": {"evseId": 1, "meterValue": [meter_value_2x("Sample.Periodic")]}},
    "SecurityEventNotification": {
        "": {"type": "SettingSystemTime", "timestamp": TIMESTAMP, "techInfo": "Clock set by NTP"}
    },
    "SignCertificate": {"": {"csr": CSR, "certificateType": "ChargingStationCertificate"}},
    "StatusNotification": {
        "": {"timestamp": TIMESTAMP, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}
    },
    "TransactionEvent": {
        "started": transaction_event(
            "Started",
            "Authorized",
            0,
            info={"chargingState": "EVConnected"},
            idToken=ID_TOKEN,
            meterValue=[meter_value_2x("Transaction.Begin")],
        ),
        "updated": transaction_event(
            "Updated",
            "MeterValuePeriodic",
            1,
            info={"chargingState": "Charging"},
            meterValue=[meter_value_2x("Sample.Periodic")],
        ),
        "ended": transaction_event(
            "Ended",
            "StopAuthorized",
            2,
            info={"chargingState": "EVConnected", "stoppedReason": "Local"},
            idToken=ID_TOKEN,
            meterValue=[meter_value_2x("Transaction.End")],
        ),
    },
}

EXAMPLES = {"1.6": EXAMPLES_16, "2.0.1": EXAMPLES_2X, "2.1": EXAMPLES_2X}


def requests(version: str, action: str) -> dict[str, Payload]:
    """The hand-written examples of `action`, else a minimal instance generated from its schema."""
    if action in EXAMPLES[version]:
        return EXAMPLES[version][action]
    return {"minimal": minimal_instance(get_validator(2, action, version).schema)}


def cases() -> list[Any]:
    """One pytest param per (version, charge point action, example)."""
    return [
        pytest.param(version, action, request, id="-".join(filter(None, (version, action, name))))
        for version, module in MODULES.items()
        for action in sorted(module.CHARGE_POINT_ACTIONS)
        for name, request in requests(version, action).items()
    ]


def answer(
    version: str, action: str, request: Payload, ctx: EmbeddedContext | None = None
) -> Payload:
    """The embedded handler's response to a request that must itself be schema-valid."""
    validate(2, action, version, request)
    return MODULES[version].HANDLERS[action](request, make_ctx() if ctx is None else ctx)


# -- Every charge point CALL -----------------------------------------------------------------------


@pytest.mark.parametrize(("version", "action", "request_payload"), cases())
def test_every_charge_point_call_gets_a_schema_valid_answer(
    version: str, action: str, request_payload: Payload
) -> None:
    validate(2, action, version, request_payload)
    before = copy.deepcopy(request_payload)

    response = MODULES[version].HANDLERS[action](request_payload, make_ctx())

    validate(3, action, version, response)
    assert request_payload == before, "handlers must not modify the request"


@pytest.mark.parametrize("version", MODULES)
def test_hand_written_examples_only_name_charge_point_actions(version: str) -> None:
    assert set(EXAMPLES[version]) <= MODULES[version].CHARGE_POINT_ACTIONS


# -- Direction sets ----------------------------------------------------------------------------


def schema_actions(version: str) -> tuple[set[str], set[str]]:
    """(actions with a request schema, SEND-only actions) from the ocpp library's schema files."""
    folder = Path(ocpp.__file__).parent / SCHEMA_DIRS[version] / "schemas"
    stems = {path.stem for path in folder.glob("*.json") if not path.stem.endswith("Response")}
    if version == "1.6":  # 1.6 request schemas have no suffix; there is no SEND.
        return stems, set()
    requests_ = {stem.removesuffix("Request") for stem in stems if stem.endswith("Request")}
    return requests_, {stem for stem in stems if not stem.endswith("Request")}


@pytest.mark.parametrize("version", MODULES)
def test_direction_sets_partition_the_request_schemas(version: str) -> None:
    module = MODULES[version]
    charge_point, csms, send = module.CHARGE_POINT_ACTIONS, module.CSMS_ACTIONS, module.SEND_ACTIONS
    with_request_schema, send_only = schema_actions(version)

    assert charge_point | csms == with_request_schema
    assert charge_point & csms == {"DataTransfer"}
    assert send == send_only
    assert not send & (charge_point | csms)
    assert set(module.HANDLERS) == charge_point
    assert (len(charge_point), len(csms), len(send)) == EXPECTED_COUNTS[version]


def test_2_1_send_only_action_and_csms_sent_notifications() -> None:
    send, csms = v2_1.SEND_ACTIONS, v2_1.CSMS_ACTIONS
    assert send == {"NotifyPeriodicEventStream"}
    assert {"NotifyAllowedEnergyTransfer", "NotifyWebPaymentStarted"} <= csms


# -- Semantics -------------------------------------------------------------------------------


@pytest.mark.parametrize("boot_status", get_args(BootStatus))
@pytest.mark.parametrize("version", MODULES)
def test_boot_notification_honours_status_and_interval(version: str, boot_status: str) -> None:
    ctx = make_ctx(boot_status=boot_status, heartbeat_interval_s=42)
    request = EXAMPLES[version]["BootNotification"][""]

    response = answer(version, "BootNotification", request, ctx)

    validate(3, "BootNotification", version, response)
    assert response == {"currentTime": ctx.timestamp(), "interval": 42, "status": boot_status}


@pytest.mark.parametrize("version", MODULES)
@pytest.mark.parametrize("action", ["Heartbeat", "BootNotification"])
def test_current_time_is_utc_now(version: str, action: str) -> None:
    before = datetime.now(UTC)
    response = answer(version, action, EXAMPLES[version][action][""], make_ctx(now=None))

    current = response["currentTime"]
    assert current.endswith("Z")
    parsed = datetime.fromisoformat(current)
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed
    assert parsed <= datetime.now(UTC)


def test_start_transaction_ids_are_unique_and_increasing() -> None:
    ctx = make_ctx()
    request = EXAMPLES_16["StartTransaction"][""]

    responses = [answer("1.6", "StartTransaction", request, ctx) for _ in range(5)]

    ids = [response["transactionId"] for response in responses]
    assert len(set(ids)) == len(ids) == 5
    assert ids == sorted(ids)
    assert all(response["idTagInfo"] == {"status": "Accepted"} for response in responses)


@pytest.mark.parametrize(
    ("version", "action", "info_field"),
    [
        ("1.6", "Authorize", "idTagInfo"),
        ("2.0.1", "Authorize", "idTokenInfo"),
        ("2.1", "Authorize", "idTokenInfo"),
    ],
)
def test_authorize_accepts(version: str, action: str, info_field: str) -> None:
    response = answer(version, action, EXAMPLES[version][action][""])
    assert response[info_field]["status"] == "Accepted"


@pytest.mark.parametrize(
    ("version", "action", "id_field", "info_field"),
    [
        ("1.6", "StopTransaction", "idTag", "idTagInfo"),
        ("2.0.1", "TransactionEvent", "idToken", "idTokenInfo"),
        ("2.1", "TransactionEvent", "idToken", "idTokenInfo"),
    ],
)
def test_id_info_answered_only_for_an_identifier(
    version: str, action: str, id_field: str, info_field: str
) -> None:
    for request in EXAMPLES[version][action].values():
        response = answer(version, action, request)
        if id_field in request:
            assert response == {info_field: {"status": "Accepted"}}
        else:
            assert response == {}


@pytest.mark.parametrize("version", MODULES)
def test_unsupported_functions_get_the_negative_status(version: str) -> None:
    data_transfer = answer(version, "DataTransfer", EXAMPLES[version]["DataTransfer"][""])
    sign_certificate = answer(version, "SignCertificate", EXAMPLES[version]["SignCertificate"][""])

    assert data_transfer == {"status": "UnknownVendorId"}
    assert sign_certificate["status"] == "Rejected"


@pytest.mark.parametrize(
    ("version", "action", "status"),
    [
        ("2.0.1", "Get15118EVCertificate", "Failed"),
        ("2.0.1", "GetCertificateStatus", "Failed"),
        ("2.0.1", "NotifyEVChargingNeeds", "Rejected"),
        ("2.1", "Get15118EVCertificate", "Failed"),
        ("2.1", "GetCertificateStatus", "Failed"),
        ("2.1", "NotifyEVChargingNeeds", "NoChargingProfile"),
        ("2.1", "PullDynamicScheduleUpdate", "Rejected"),
        ("2.1", "VatNumberValidation", "Rejected"),
    ],
)
def test_status_answers(version: str, action: str, status: str) -> None:
    (request,) = requests(version, action).values()
    assert answer(version, action, request)["status"] == status


def test_certificate_chain_status_fails_each_requested_certificate() -> None:
    hash_data = {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": "a1" * 32,
        "issuerKeyHash": "b2" * 32,
        "serialNumber": "1f2e3d",
    }
    request = {
        "certificateStatusRequests": [
            {"certificateHashData": hash_data, "source": "OCSP", "urls": ["http://ocsp.example"]},
            {"certificateHashData": hash_data, "source": "CRL", "urls": ["http://crl.example"]},
        ]
    }
    ctx = make_ctx()

    response = answer("2.1", "GetCertificateChainStatus", request, ctx)

    validate(3, "GetCertificateChainStatus", "2.1", response)
    assert [(s["source"], s["status"]) for s in response["certificateStatus"]] == [
        ("OCSP", "Failed"),
        ("CRL", "Failed"),
    ]
    assert all(s["certificateHashData"] == hash_data for s in response["certificateStatus"])
    assert all(s["nextUpdate"] == ctx.timestamp() for s in response["certificateStatus"])


def test_vat_number_validation_echoes_the_request() -> None:
    response = answer("2.1", "VatNumberValidation", {"vatNumber": "NL123456789B01", "evseId": 2})

    validate(3, "VatNumberValidation", "2.1", response)
    assert (response["vatNumber"], response["evseId"]) == ("NL123456789B01", 2)


@pytest.mark.parametrize("version", MODULES)
def test_fixed_answers_are_fresh_copies(version: str) -> None:
    request = EXAMPLES[version]["Authorize"][""]
    first = answer(version, "Authorize", request)
    first.clear()

    assert answer(version, "Authorize", request) != {}
