"""What a simulated charge point says: schema-valid OCPP 1.6 and 2.0.1 payloads (pure, no IO).

A session is one charging cycle of a 3-phase AC charger (11 kW, 16 A per phase) with an EV that
reports its state of charge, written as a generator: it yields `(action, payload)` and is sent the
CALLRESULT payload (None from an echo server). OCPP 1.6: BootNotification, StatusNotification
(Available), Authorize, StartTransaction, MeterValues (periodic samples), StopTransaction. OCPP
2.0.1: BootNotification, StatusNotification, Authorize, TransactionEvent Started, Updated (periodic
samples), a MeterValues, TransactionEvent Ended. Samples carry energy register, active power,
current and voltage per phase and SoC, with context, location, phase and unit as real chargers
send them; the meter keeps counting across cycles. Every payload validates against the `ocpp`
library's schemas (tests/unit/test_bench_load.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

Payload = dict[str, Any]
Script = Generator[tuple[str, Payload], Payload | None, None]
VERSIONS = ("ocpp1.6", "ocpp2.0.1")

VENDOR = "BenchVendor"
MODEL = "AC11-3P"
FIRMWARE = "4.2.7"
SAMPLE_SECONDS = 60.0  # simulated time between two periodic samples
PHASES = ("L1", "L2", "L3")

# A CALLRESULT field that the next messages need: its absence is a bad reply, not a fallback.
REQUIRED_REPLY_FIELDS: dict[str, dict[str, str]] = {
    "ocpp1.6": {"StartTransaction": "transactionId"},
    "ocpp2.0.1": {},
}

_stamp_second = -1
_stamp_text = ""


def timestamp() -> str:
    """The current UTC time as OCPP's date-time (second resolution, cached per second)."""
    global _stamp_second, _stamp_text
    now = int(time.time())
    if now != _stamp_second:
        _stamp_second = now
        _stamp_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return _stamp_text


@dataclass(frozen=True, slots=True)
class Reading:
    """One instant of the meter."""

    energy_wh: float
    power_w: float
    currents_a: tuple[float, float, float]
    voltages_v: tuple[float, float, float]
    soc_percent: int


@dataclass
class Meter:
    """A simulated energy meter of one charger, charging an EV at about 11 kW."""

    rng: random.Random
    energy_wh: float = 0.0
    soc: float = 20.0

    @classmethod
    def seeded(cls, seed: int) -> Meter:
        rng = random.Random(seed)
        return cls(rng, energy_wh=round(rng.uniform(1e5, 5e6)), soc=rng.uniform(10, 40))

    def advance(self, seconds: float = SAMPLE_SECONDS) -> Reading:
        """Charge for `seconds` and read the meter."""
        rng = self.rng
        voltages = tuple(round(rng.gauss(230.0, 1.5), 1) for _ in PHASES)
        currents = tuple(round(rng.gauss(15.8, 0.2), 2) for _ in PHASES)
        power = sum(v * a for v, a in zip(voltages, currents, strict=True))
        self.energy_wh += power * seconds / 3600.0
        self.soc = 20.0 if self.soc >= 99.0 else min(99.0, self.soc + power * seconds / 2.2e5)
        return Reading(
            round(self.energy_wh, 1),
            round(power, 1),
            currents,  # type: ignore[arg-type]
            voltages,  # type: ignore[arg-type]
            int(self.soc),
        )


@dataclass
class ChargePointState:
    """What a simulated charge point remembers between cycles."""

    identity: str
    number: int
    meter: Meter
    cycles: int = 0
    local_transaction_ids: int = 0
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.tag = f"TAG{self.number:08X}"  # 1.6 idTag: at most 20 characters

    @classmethod
    def of(cls, identity: str, number: int) -> ChargePointState:
        return cls(identity, number, Meter.seeded(number))


# -- OCPP 1.6 ----------------------------------------------------------------------------------


def _sampled_v16(reading: Reading, context: str) -> list[Payload]:
    def value(text: str, measurand: str, unit: str, **extra: str) -> Payload:
        return {
            "value": text,
            "context": context,
            "format": "Raw",
            "measurand": measurand,
            "location": "Outlet",
            "unit": unit,
            **extra,
        }

    values = [
        value(f"{reading.energy_wh:.1f}", "Energy.Active.Import.Register", "Wh"),
        value(f"{reading.power_w:.1f}", "Power.Active.Import", "W"),
    ]
    for phase, amps in zip(PHASES, reading.currents_a, strict=True):
        values.append(value(f"{amps:.2f}", "Current.Import", "A", phase=phase))
    for phase, volts in zip(PHASES, reading.voltages_v, strict=True):
        values.append(value(f"{volts:.1f}", "Voltage", "V", phase=f"{phase}-N"))
    values.append(value(str(reading.soc_percent), "SoC", "Percent", location="EV"))
    return values


def boot_v16(state: ChargePointState) -> Payload:
    return {
        "chargePointVendor": VENDOR,
        "chargePointModel": MODEL,
        "chargePointSerialNumber": state.identity[-25:],
        "chargeBoxSerialNumber": state.identity[-25:],
        "firmwareVersion": FIRMWARE,
        "meterType": "Bench 3-phase",
        "meterSerialNumber": f"M{state.number:09d}",
    }


def session_v16(state: ChargePointState, meter_values: int) -> Script:
    """One charging cycle in OCPP 1.6."""
    yield "BootNotification", boot_v16(state)
    yield (
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": timestamp()},
    )
    yield "Authorize", {"idTag": state.tag}
    start = state.meter.advance(0.0)
    reply = yield (
        "StartTransaction",
        {
            "connectorId": 1,
            "idTag": state.tag,
            "meterStart": int(start.energy_wh),
            "timestamp": timestamp(),
        },
    )
    transaction_id = (reply or {}).get("transactionId")
    if not isinstance(transaction_id, int):  # an echo server: the charge point numbers them
        state.local_transaction_ids += 1
        transaction_id = state.local_transaction_ids
    for _ in range(meter_values):
        reading = state.meter.advance()
        yield (
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": transaction_id,
                "meterValue": [
                    {
                        "timestamp": timestamp(),
                        "sampledValue": _sampled_v16(reading, "Sample.Periodic"),
                    }
                ],
            },
        )
    end = state.meter.advance()
    yield (
        "StopTransaction",
        {
            "transactionId": transaction_id,
            "idTag": state.tag,
            "meterStop": int(end.energy_wh),
            "timestamp": timestamp(),
            "reason": "Local",
            "transactionData": [
                {"timestamp": timestamp(), "sampledValue": _sampled_v16(end, "Transaction.End")[:1]}
            ],
        },
    )


# -- OCPP 2.0.1 --------------------------------------------------------------------------------


def _sampled_v201(reading: Reading, context: str) -> list[Payload]:
    def value(number: float, measurand: str, unit: str, **extra: str) -> Payload:
        return {
            "value": number,
            "context": context,
            "measurand": measurand,
            "location": "Outlet",
            "unitOfMeasure": {"unit": unit},
            **extra,
        }

    values = [
        value(reading.energy_wh, "Energy.Active.Import.Register", "Wh"),
        value(reading.power_w, "Power.Active.Import", "W"),
    ]
    for phase, amps in zip(PHASES, reading.currents_a, strict=True):
        values.append(value(amps, "Current.Import", "A", phase=phase))
    for phase, volts in zip(PHASES, reading.voltages_v, strict=True):
        values.append(value(volts, "Voltage", "V", phase=f"{phase}-N"))
    values.append(value(reading.soc_percent, "SoC", "Percent", location="EV"))
    return values


def boot_v201(state: ChargePointState) -> Payload:
    return {
        "reason": "PowerUp",
        "chargingStation": {
            "model": MODEL,
            "vendorName": VENDOR,
            "serialNumber": state.identity[-25:],
            "firmwareVersion": FIRMWARE,
        },
    }


def session_v201(state: ChargePointState, meter_values: int) -> Script:
    """One charging cycle in OCPP 2.0.1 (the station numbers its transactions)."""
    state.cycles += 1
    transaction = f"{state.number:08x}-{state.cycles:08x}"
    id_token = {"idToken": state.tag, "type": "ISO14443"}
    evse = {"id": 1, "connectorId": 1}
    yield "BootNotification", boot_v201(state)
    yield (
        "StatusNotification",
        {"timestamp": timestamp(), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    )
    yield "Authorize", {"idToken": id_token}
    start = state.meter.advance(0.0)
    sequence = 0
    yield (
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": timestamp(),
            "triggerReason": "Authorized",
            "seqNo": sequence,
            "transactionInfo": {"transactionId": transaction, "chargingState": "Charging"},
            "evse": evse,
            "idToken": id_token,
            "meterValue": [
                {
                    "timestamp": timestamp(),
                    "sampledValue": _sampled_v201(start, "Transaction.Begin")[:1],
                }
            ],
        },
    )
    for _ in range(meter_values):
        sequence += 1
        reading = state.meter.advance()
        yield (
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": timestamp(),
                "triggerReason": "MeterValuePeriodic",
                "seqNo": sequence,
                "transactionInfo": {"transactionId": transaction, "chargingState": "Charging"},
                "meterValue": [
                    {
                        "timestamp": timestamp(),
                        "sampledValue": _sampled_v201(reading, "Sample.Periodic"),
                    }
                ],
            },
        )
    reading = state.meter.advance()
    yield (
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {"timestamp": timestamp(), "sampledValue": _sampled_v201(reading, "Sample.Clock")}
            ],
        },
    )
    end = state.meter.advance()
    yield (
        "TransactionEvent",
        {
            "eventType": "Ended",
            "timestamp": timestamp(),
            "triggerReason": "StopAuthorized",
            "seqNo": sequence + 1,
            "transactionInfo": {
                "transactionId": transaction,
                "chargingState": "EVConnected",
                "stoppedReason": "Local",
            },
            "idToken": id_token,
            "meterValue": [
                {
                    "timestamp": timestamp(),
                    "sampledValue": _sampled_v201(end, "Transaction.End")[:1],
                }
            ],
        },
    )


SESSIONS: dict[str, Callable[[ChargePointState, int], Script]] = {
    "ocpp1.6": session_v16,
    "ocpp2.0.1": session_v201,
}
BOOTS: dict[str, Callable[[ChargePointState], Payload]] = {
    "ocpp1.6": boot_v16,
    "ocpp2.0.1": boot_v201,
}
