"""Embedded central system for OCPP 2.0.1: answers every CALL a charging station initiates.

Boots follow the settings, every idToken is Accepted, notifications and reports are acknowledged;
functions the embedded system lacks (certificates, ISO 15118 smart charging, vendor extensions) get
the schema's negative status, explained where possible by the statusInfo reasonCode
UnsupportedRequest (part 2 appendices, chapter 5).
"""

from __future__ import annotations

from .base import Handler, HandlerTable, Payload
from .v1_6 import (
    accept_if_present,
    acknowledge,
    boot_notification,
    heartbeat,
    reply,
    unknown_vendor,
)


def refusal(status: str) -> Payload:
    """The answer `status`, explained as a function the embedded central system does not support."""
    return {
        "status": status,
        "statusInfo": {
            "reasonCode": "UnsupportedRequest",
            "additionalInfo": "Not supported by the gateway's embedded central system",
        },
    }


def refuse(status: str) -> Handler:
    """A handler answering `refusal(status)` to every request."""
    return reply(refusal(status))


HANDLERS: HandlerTable = {
    # Notifications and reports: the response has no required field.
    **dict.fromkeys(
        (
            "ClearedChargingLimit",
            "FirmwareStatusNotification",
            "LogStatusNotification",
            "MeterValues",
            "NotifyChargingLimit",
            "NotifyCustomerInformation",
            "NotifyDisplayMessages",
            "NotifyEvent",
            "NotifyMonitoringReport",
            "NotifyReport",
            "PublishFirmwareStatusNotification",
            "ReportChargingProfiles",
            "ReservationStatusUpdate",
            "SecurityEventNotification",
            "StatusNotification",
        ),
        acknowledge,
    ),
    "Authorize": reply({"idTokenInfo": {"status": "Accepted"}}),
    "BootNotification": boot_notification,
    "DataTransfer": unknown_vendor,
    # No contract certificate pool and no OCSP responder: the schemas' failure statuses.
    "Get15118EVCertificate": reply({**refusal("Failed"), "exiResponse": ""}),
    "GetCertificateStatus": refuse("Failed"),
    "Heartbeat": heartbeat,
    # Accepted would promise a SetChargingProfile (K15; part 6 reusable state
    # ISO15118SmartCharging) that the embedded system never sends; Rejected ("service not
    # available") leaves the EV its own plan.
    "NotifyEVChargingNeeds": refuse("Rejected"),
    # The EV's own schedule: with no grid limits to enforce, nothing in it can be objected to.
    "NotifyEVChargingSchedule": reply({"status": "Accepted"}),
    # The embedded system has no certificate authority yet (it comes in a later issue): a CSR
    # cannot be processed, which use cases A02/A03 answer Rejected (1.6 whitepaper A02.FR.12).
    "SignCertificate": refuse("Rejected"),
    # idTokenInfo is only meaningful (and only expected) when the event carries an idToken.
    "TransactionEvent": accept_if_present("idToken", "idTokenInfo"),
}

# Messages sent by the Charging Station (part 2, messages chapter).
CHARGE_POINT_ACTIONS: frozenset[str] = frozenset(HANDLERS)

# Messages sent by the CSMS. DataTransfer is in both sets (use cases P01 and P02), the only
# action allowed to be. PublishFirmware/UnpublishFirmware go to a Local Controller, a node that
# is a charging station to the CSMS.
CSMS_ACTIONS: frozenset[str] = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ChangeAvailability",
        "ClearCache",
        "ClearChargingProfile",
        "ClearDisplayMessage",
        "ClearVariableMonitoring",
        "CostUpdated",
        "CustomerInformation",
        "DataTransfer",
        "DeleteCertificate",
        "GetBaseReport",
        "GetChargingProfiles",
        "GetCompositeSchedule",
        "GetDisplayMessages",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "GetMonitoringReport",
        "GetReport",
        "GetTransactionStatus",
        "GetVariables",
        "InstallCertificate",
        "PublishFirmware",
        "RequestStartTransaction",
        "RequestStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "SetDisplayMessage",
        "SetMonitoringBase",
        "SetMonitoringLevel",
        "SetNetworkProfile",
        "SetVariableMonitoring",
        "SetVariables",
        "TriggerMessage",
        "UnlockConnector",
        "UnpublishFirmware",
        "UpdateFirmware",
    }
)

# OCPP-J 2.0.1 has no SEND message type.
SEND_ACTIONS: frozenset[str] = frozenset()
