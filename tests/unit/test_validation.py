"""The compiled schemas agree with the `ocpp` library's own validator (same verdict)."""

from __future__ import annotations

import pytest
from jsonschema.exceptions import ValidationError
from ocpp.messages import get_validator

from gateway.ocppj.errors import RpcErrorKind
from gateway.versions import VERSIONS

LIBRARY = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}
BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT2 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}

CASES = [
    ("ocpp1.6", "BootNotification", BOOT16),
    ("ocpp1.6", "BootNotification", {"chargePointVendor": "V"}),
    ("ocpp1.6", "BootNotification", {**BOOT16, "chargePointSerialNumber": "x" * 26}),
    ("ocpp1.6", "BootNotification", {**BOOT16, "unexpected": True}),
    (
        "ocpp1.6",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    ),
    (
        "ocpp1.6",
        "StatusNotification",
        {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
    ),
    (
        "ocpp1.6",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "Oops", "status": "Available"},
    ),
    (
        "ocpp1.6",
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2024-01-01T00:00:00Z"},
    ),
    ("ocpp2.0.1", "BootNotification", BOOT2),
    ("ocpp2.0.1", "BootNotification", {"reason": "PowerUp"}),
    ("ocpp2.0.1", "BootNotification", {**BOOT2, "reason": "Nope"}),
    ("ocpp2.0.1", "Authorize", {"idToken": {"idToken": "x", "type": "ISO14443"}}),
    ("ocpp2.0.1", "Authorize", {"idToken": {"idToken": "x" * 37, "type": "ISO14443"}}),
    ("ocpp2.1", "BootNotification", BOOT2),
    ("ocpp2.1", "Heartbeat", {}),
    ("ocpp2.1", "Heartbeat", {"x": 1}),
]


@pytest.mark.parametrize(("subprotocol", "action", "payload"), CASES)
def test_compiled_schema_agrees_with_the_library_validator(subprotocol, action, payload):
    library = get_validator(2, action, LIBRARY[subprotocol])
    try:
        library.validate(payload)
        library_valid = True
    except ValidationError:
        library_valid = False
    violation = VERSIONS[subprotocol].schemas.validate_request(action, payload)
    assert (violation is None) is library_valid, violation


def test_unknown_action_has_no_schema():
    violation = VERSIONS["ocpp2.0.1"].schemas.validate_request("Teleport", {})
    assert violation is not None and violation.kind is RpcErrorKind.NOT_IMPLEMENTED


@pytest.mark.parametrize("name", ["../v16/schemas/Heartbeat", "Heart beat", ""])
def test_action_names_that_are_not_identifiers_never_reach_the_filesystem(name):
    violation = VERSIONS["ocpp2.0.1"].schemas.validate_request(name, {})
    assert violation is not None and violation.kind is RpcErrorKind.NOT_IMPLEMENTED


def _mutations(schema: dict, valid: dict):
    """The valid minimal payload and invalid variants: a required field missing, a property of
    the wrong type, an unknown property, a string above its maxLength."""
    yield "minimal", valid
    for key in valid:
        yield f"without {key}", {k: v for k, v in valid.items() if k != key}
    for key, node in schema.get("properties", {}).items():
        yield f"{key} as a list", {**valid, key: [1]}
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].split("/")[-1]]
        if node.get("type") == "string" and "maxLength" in node:
            yield f"{key} too long", {**valid, key: "x" * (node["maxLength"] + 1)}
    yield "unknown property", {**valid, "zzUnknown": 1}


def test_both_compiled_validators_agree_with_the_library_on_every_schema():
    """jsonschema-rs (the verdict) and fastjsonschema (the reason) say the same as the `ocpp`
    library's jsonschema validator, for every request and response schema of every version."""
    import fastjsonschema
    import jsonschema

    from gateway.validation import _checker, _compile, _schema

    from .test_embedded_handlers import minimal_instance

    checked, disagreements = 0, []
    for subprotocol, version in VERSIONS.items():
        for path in sorted(version.schemas._dir.glob("*.json")):
            schema = _schema(path)
            library = jsonschema.validators.validator_for(schema)(schema)
            for name, payload in _mutations(schema, minimal_instance(schema)):
                expected = library.is_valid(payload)
                fast = _checker(path).is_valid(payload)
                try:
                    _compile(path)(payload)
                    detailed = True
                except fastjsonschema.JsonSchemaValueException:
                    detailed = False
                checked += 1
                if not fast == detailed == expected:
                    disagreements.append((subprotocol, path.stem, name, expected, fast, detailed))
    assert checked > 2000
    assert disagreements == []
