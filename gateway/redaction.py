"""Secrets in gateway CALLs, kept out of the frames that session events carry.

A password rotation sends the new credential to the charge point in an ordinary CALL
(1.6 ChangeConfiguration `AuthorizationKey`, 2.x SetVariables `SecurityCtrlr.BasicAuthPassword`).
The frame on the wire must carry it; the copy published to UI watchers (and to the other nodes'
watchers through Redis) carries `REDACTED` instead. Pure functions over the CALL payload.
"""

from __future__ import annotations

from typing import Any

from .ocppj.codec import format_call

REDACTED = "***"
SECRET_CONFIGURATION_KEYS = frozenset({"AuthorizationKey"})  # 1.6 ChangeConfiguration
SECRET_VARIABLES = frozenset({"BasicAuthPassword"})  # 2.x SetVariables


def redacted_call(message_id: str, action: str, payload: dict[str, Any]) -> str | None:
    """The CALL frame with its secrets replaced by `REDACTED`; None when it carries none."""
    if action == "ChangeConfiguration":
        if payload.get("key") in SECRET_CONFIGURATION_KEYS:
            return format_call(message_id, action, {**payload, "value": REDACTED})
        return None
    if action == "SetVariables":
        data = payload.get("setVariableData")
        if not isinstance(data, list) or not any(_secret_variable(item) for item in data):
            return None
        hidden = [
            {**item, "attributeValue": REDACTED} if _secret_variable(item) else item
            for item in data
        ]
        return format_call(message_id, action, {**payload, "setVariableData": hidden})
    return None


def _secret_variable(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    variable = item.get("variable")
    return isinstance(variable, dict) and variable.get("name") in SECRET_VARIABLES
