"""OCPP 2.1 over OCPP-J 2.1 (adds CALLRESULTERROR and SEND)."""

from __future__ import annotations

from ..embedded import v2_1 as embedded
from ..ocppj.codec import MessageType
from ..ocppj.errors import OCPP2_ERROR_CODES
from ..validation import SchemaSet
from .base import OcppVersion, trigger_rule
from .v2_0_1 import REPORT_ACTIONS, REQUESTED_MESSAGE_ACTIONS

VERSION = OcppVersion(
    subprotocol="ocpp2.1",
    message_types=frozenset(MessageType),
    error_codes=OCPP2_ERROR_CODES,
    charge_point_actions=embedded.CHARGE_POINT_ACTIONS,
    csms_actions=embedded.CSMS_ACTIONS,
    send_actions=embedded.SEND_ACTIONS,
    schemas=SchemaSet("v21", request_suffix="Request"),
    embedded_handlers=embedded.HANDLERS,
    triggered_actions=trigger_rule(
        frozenset({"TriggerMessage"}), REQUESTED_MESSAGE_ACTIONS, REPORT_ACTIONS
    ),
)
