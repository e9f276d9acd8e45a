"""OCPP 1.6 (with the security extension) over OCPP-J 1.6."""

from __future__ import annotations

from ..embedded import v1_6 as embedded
from ..ocppj.codec import MessageType
from ..ocppj.errors import OCPP16_ERROR_CODES
from ..validation import SchemaSet
from .base import OcppVersion, trigger_rule

VERSION = OcppVersion(
    subprotocol="ocpp1.6",
    message_types=frozenset({MessageType.CALL, MessageType.CALLRESULT, MessageType.CALLERROR}),
    error_codes=OCPP16_ERROR_CODES,
    charge_point_actions=embedded.CHARGE_POINT_ACTIONS,
    csms_actions=embedded.CSMS_ACTIONS,
    send_actions=frozenset(),
    schemas=SchemaSet("v16", request_suffix=""),
    embedded_handlers=embedded.HANDLERS,
    # 1.6 4.2: while Pending a charge point sends requests only when told by TriggerMessage.
    triggered_actions=trigger_rule(
        frozenset({"TriggerMessage", "ExtendedTriggerMessage"}),
        {"SignChargePointCertificate": "SignCertificate"},
        {},
    ),
)
