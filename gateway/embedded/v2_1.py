"""Embedded central system for OCPP 2.1: the 2.0.1 answers plus the messages new in 2.1.

OCPP 2.1 extends the 2.0.1 schemas with optional fields only (part 0, section 1.1), so every 2.0.1
answer stays valid and is reused; what differs is listed here.
"""

from __future__ import annotations

import copy

from . import v2_0_1
from .base import EmbeddedContext, HandlerTable, Payload
from .v1_6 import acknowledge, reply
from .v2_0_1 import refusal, refuse


def get_certificate_chain_status(request: Payload, ctx: EmbeddedContext) -> Payload:
    """GetCertificateChainStatus: no OCSP/CRL access, so every certificate's status is Failed."""
    return {
        "certificateStatus": [
            {
                "certificateHashData": copy.deepcopy(item["certificateHashData"]),
                "source": item["source"],
                "status": "Failed",
                "nextUpdate": ctx.timestamp(),
            }
            for item in request["certificateStatusRequests"]
        ]
    }


def vat_number_validation(request: Payload, _ctx: EmbeddedContext) -> Payload:
    """VatNumberValidation: no VAT registry to ask, so the (echoed) number is Rejected."""
    echoed = {key: request[key] for key in ("vatNumber", "evseId") if key in request}
    return {**echoed, **refusal("Rejected")}


HANDLERS: HandlerTable = {
    **v2_0_1.HANDLERS,
    # New notifications and reports: the response has no required field.
    **dict.fromkeys(
        (
            "BatterySwap",
            "ClosePeriodicEventStream",
            "NotifyDERAlarm",
            "NotifyDERStartStop",
            "NotifyPriorityCharging",
            "NotifySettlement",
            "ReportDERControl",
        ),
        acknowledge,
    ),
    "GetCertificateChainStatus": get_certificate_chain_status,
    # 2.1 has a status for exactly this case: the CSMS will not provide a charging profile.
    "NotifyEVChargingNeeds": reply({"status": "NoChargingProfile"}),
    # Telemetry is accepted like NotifyEvent; the stream's NotifyPeriodicEventStream messages are
    # SEND messages (see SEND_ACTIONS), which need no answer.
    "OpenPeriodicEventStream": reply({"status": "Accepted"}),
    # The embedded system never installs a dynamic charging profile, so it has no update for one.
    "PullDynamicScheduleUpdate": refuse("Rejected"),
    "VatNumberValidation": vat_number_validation,
}

# Messages sent by the Charging Station.
CHARGE_POINT_ACTIONS: frozenset[str] = frozenset(HANDLERS)

# Messages sent by the CSMS; DataTransfer is in both sets (P01 and P02), the only action allowed to
# be. NotifyAllowedEnergyTransfer tells the station which energy transfer modes the CSMS accepts
# for a transaction, and NotifyWebPaymentStarted tells it that a driver started a web (QR code)
# payment for an EVSE and how long to wait for its outcome (C25): both are sent by the CSMS.
CSMS_ACTIONS: frozenset[str] = v2_0_1.CSMS_ACTIONS | {
    "AFRRSignal",
    "AdjustPeriodicEventStream",
    "ChangeTransactionTariff",
    "ClearDERControl",
    "ClearTariffs",
    "GetDERControl",
    "GetPeriodicEventStream",
    "GetTariffs",
    "NotifyAllowedEnergyTransfer",
    "NotifyWebPaymentStarted",
    "RequestBatterySwap",
    "SetDERControl",
    "SetDefaultTariff",
    "UpdateDynamicSchedule",
    "UsePriorityCharging",
}

# Unconfirmed SEND messages (OCPP-J 2.1 section 4.2.4), sent by the Charging Station: in neither
# CALL set, and never answered.
SEND_ACTIONS: frozenset[str] = frozenset({"NotifyPeriodicEventStream"})
