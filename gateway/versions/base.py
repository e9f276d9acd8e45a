"""What the gateway knows about one OCPP version, as an immutable value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..embedded.base import HandlerTable
from ..ocppj.errors import RpcErrorKind
from ..validation import SchemaSet

# (CSMS action, its payload) -> charge point actions that action asks for (boot gating).
TriggerRule = Callable[[str, dict[str, Any]], frozenset[str]]


@dataclass(frozen=True, slots=True)
class OcppVersion:
    """One OCPP version: subprotocol, message types, actions per direction, schemas and names."""

    subprotocol: str
    message_types: frozenset[int]
    error_codes: Mapping[RpcErrorKind, str]
    charge_point_actions: frozenset[str]
    csms_actions: frozenset[str]
    send_actions: frozenset[str]
    schemas: SchemaSet
    embedded_handlers: HandlerTable
    triggered_actions: TriggerRule

    def error_code(self, kind: RpcErrorKind) -> str:
        """This version's name for an RPC error kind."""
        return self.error_codes[kind]


def trigger_rule(
    trigger_actions: frozenset[str],
    requested: Mapping[str, str],
    reports: Mapping[str, str],
) -> TriggerRule:
    """Build the rule telling which charge point CALLs a CSMS request invites while Pending.

    `trigger_actions` name the TriggerMessage-like actions whose `requestedMessage` is looked up
    in `requested` (values that are not action names, e.g. SignChargingStationCertificate ->
    SignCertificate) and `reports` maps report requests (GetBaseReport -> NotifyReport).
    """

    def rule(action: str, payload: dict[str, Any]) -> frozenset[str]:
        if action in trigger_actions:
            message = payload.get("requestedMessage")
            if isinstance(message, str):
                return frozenset({requested.get(message, message)})
            return frozenset()
        answer = reports.get(action)
        return frozenset({answer}) if answer else frozenset()

    return rule
