"""OCPP 2.0.1 over OCPP-J 2.0.1."""

from __future__ import annotations

from ..embedded import v2_0_1 as embedded
from ..ocppj.codec import MessageType
from ..ocppj.errors import OCPP2_ERROR_CODES
from ..validation import SchemaSet
from .base import OcppVersion, trigger_rule

# TriggerMessage.requestedMessage values that are not themselves action names.
REQUESTED_MESSAGE_ACTIONS = {
    "SignChargingStationCertificate": "SignCertificate",
    "SignV2GCertificate": "SignCertificate",
    "SignCombinedCertificate": "SignCertificate",
}

# B02 (Pending): a charge point may send what TriggerMessage, GetBaseReport or GetReport asked.
REPORT_ACTIONS = {"GetBaseReport": "NotifyReport", "GetReport": "NotifyReport"}

VERSION = OcppVersion(
    subprotocol="ocpp2.0.1",
    message_types=frozenset({MessageType.CALL, MessageType.CALLRESULT, MessageType.CALLERROR}),
    error_codes=OCPP2_ERROR_CODES,
    charge_point_actions=embedded.CHARGE_POINT_ACTIONS,
    csms_actions=embedded.CSMS_ACTIONS,
    send_actions=frozenset(),
    schemas=SchemaSet("v201", request_suffix="Request"),
    embedded_handlers=embedded.HANDLERS,
    triggered_actions=trigger_rule(
        frozenset({"TriggerMessage"}), REQUESTED_MESSAGE_ACTIONS, REPORT_ACTIONS
    ),
)
