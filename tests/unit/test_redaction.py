"""Secrets in gateway CALLs are redacted from the frames watchers see."""

from __future__ import annotations

import orjson

from gateway.redaction import REDACTED, redacted_call


def test_16_authorization_key_is_redacted_other_keys_are_not():
    frame = redacted_call("m1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "ab"})
    assert orjson.loads(frame) == [
        2,
        "m1",
        "ChangeConfiguration",
        {"key": "AuthorizationKey", "value": REDACTED},
    ]
    assert (
        redacted_call("m2", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"})
        is None
    )


def test_2x_basic_auth_password_is_redacted_and_other_variables_kept():
    payload = {
        "setVariableData": [
            {
                "attributeValue": "secret-password-0000",
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            },
            {
                "attributeValue": "60",
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
            },
        ]
    }
    data = orjson.loads(redacted_call("m3", "SetVariables", payload))[3]["setVariableData"]
    assert [item["attributeValue"] for item in data] == [REDACTED, "60"]
    assert payload["setVariableData"][0]["attributeValue"] == "secret-password-0000"  # untouched
    assert (
        redacted_call("m4", "SetVariables", {"setVariableData": [payload["setVariableData"][1]]})
        is None
    )
    assert redacted_call("m5", "SetVariables", {"setVariableData": "odd"}) is None
    assert redacted_call("m6", "Reset", {"type": "Hard"}) is None
