"""Embedded central system for OCPP 1.6 (edition 2 and the 1.6-J security whitepaper).

Every CALL a charge point may send gets a valid, permissive answer: boots follow the settings,
every idTag is Accepted, notifications are acknowledged, functions the embedded system lacks
(vendor extensions, certificate signing) get the spec's negative status.

The version-independent building blocks (`reply`, `accept_if_present`, `boot_notification`, ...)
live here and are reused by the 2.0.1 and 2.1 tables, whose messages have the same shapes.
"""

from __future__ import annotations

import orjson

from .base import EmbeddedContext, Handler, HandlerTable, Payload

# -- Version-independent building blocks ------------------------------------------------------


def reply(answer: Payload) -> Handler:
    """A handler ignoring the request and answering a fresh copy of the fixed `answer` (decoded
    from its JSON each time: a few times cheaper than `copy.deepcopy` on the hot path)."""
    encoded = orjson.dumps(answer)
    loads = orjson.loads

    def handler(_request: Payload, _ctx: EmbeddedContext) -> Payload:
        return loads(encoded)

    return handler


def accept_if_present(request_field: str, info_field: str) -> Handler:
    """A handler answering `{info_field: {"status": "Accepted"}}` iff the request has the field."""

    def handler(request: Payload, _ctx: EmbeddedContext) -> Payload:
        return {info_field: {"status": "Accepted"}} if request_field in request else {}

    return handler


def boot_notification(_request: Payload, ctx: EmbeddedContext) -> Payload:
    """BootNotification (every version): status from the settings, interval = heartbeat interval.

    When the status is not Accepted the interval is the minimum wait before the next
    BootNotification (1.6 section 4.2, 2.x B02/B03), for which the heartbeat interval is used too.
    Under load (`state.pace_boot` answers a number) an Accepted becomes Pending with that interval:
    the charge point stays connected, may be asked for information meanwhile, and boots again
    after the interval (1.6 section 4.2; 2.0.1 B02, TC_B_02_CSMS).
    """
    status, interval = ctx.settings.boot_status, ctx.settings.heartbeat_interval_s
    if status == "Accepted" and ctx.state.pace_boot is not None:
        wait = ctx.state.pace_boot()
        if wait is not None:
            status, interval = "Pending", wait
    return {"currentTime": ctx.timestamp(), "interval": interval, "status": status}


def heartbeat(_request: Payload, ctx: EmbeddedContext) -> Payload:
    """Heartbeat (every version): the central system's current time."""
    return {"currentTime": ctx.timestamp()}


# Acknowledgement of a notification whose response has no (required) field.
acknowledge: Handler = reply({})

# DataTransfer (every version): the embedded system implements no vendor extension, and an unknown
# vendorId is answered UnknownVendorId (1.6 section 4.3; 2.0.1 P02.FR.06, test case TC_P_02_CSMS).
unknown_vendor: Handler = reply({"status": "UnknownVendorId"})

# -- OCPP 1.6 ---------------------------------------------------------------------------------


def start_transaction(_request: Payload, ctx: EmbeddedContext) -> Payload:
    """StartTransaction: a new process-unique transactionId, the idTag Accepted."""
    return {"transactionId": ctx.state.next_transaction_id(), "idTagInfo": {"status": "Accepted"}}


HANDLERS: HandlerTable = {
    # Notifications: the .conf has no fields.
    **dict.fromkeys(
        (
            "DiagnosticsStatusNotification",
            "FirmwareStatusNotification",
            "LogStatusNotification",
            "MeterValues",
            "SecurityEventNotification",
            "SignedFirmwareStatusNotification",
            "StatusNotification",
        ),
        acknowledge,
    ),
    "Authorize": reply({"idTagInfo": {"status": "Accepted"}}),
    "BootNotification": boot_notification,
    "DataTransfer": unknown_vendor,
    "Heartbeat": heartbeat,
    # The embedded system has no certificate authority yet (it comes in a later issue): a CSR
    # cannot be processed, and A02.FR.12/A03.FR.12 of the security whitepaper then require Rejected.
    "SignCertificate": reply({"status": "Rejected"}),
    "StartTransaction": start_transaction,
    # 6.50: idTagInfo is optional "because a transaction may have been stopped without an
    # identifier", so it is only answered when the request has an idTag.
    "StopTransaction": accept_if_present("idTag", "idTagInfo"),
}

# Section 4 (Operations Initiated by Charge Point) and the whitepaper's "sent by the Charge Point".
CHARGE_POINT_ACTIONS: frozenset[str] = frozenset(HANDLERS)

# Section 5 (Operations Initiated by Central System) and the whitepaper's "sent by the Central
# System". DataTransfer is in both sets (sections 4.3 and 5.6), the only action allowed to be.
CSMS_ACTIONS: frozenset[str] = frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # Security whitepaper (edition 2), section 5.
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)

# OCPP-J 1.6 has no SEND message type.
SEND_ACTIONS: frozenset[str] = frozenset()
