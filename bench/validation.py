"""Cost of schema validation per message: compiled schemas vs the `ocpp` library's validator.

Run: `python -m bench.validation` (or `make bench`). Prints one JSON object: microseconds per
message for each (version, action) with the library's jsonschema path as the baseline, measured in
the same run on the same machine, and the ratio.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from ocpp.messages import get_validator

from gateway.versions import VERSIONS

SAMPLES: list[tuple[str, str, dict[str, Any]]] = [
    ("ocpp1.6", "BootNotification", {"chargePointVendor": "Vendor", "chargePointModel": "M1"}),
    ("ocpp1.6", "Heartbeat", {}),
    (
        "ocpp1.6",
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 42,
            "meterValue": [
                {
                    "timestamp": "2024-01-01T00:00:00Z",
                    "sampledValue": [
                        {
                            "value": "1234.5",
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        },
                        {
                            "value": "16.2",
                            "measurand": "Current.Import",
                            "unit": "A",
                            "phase": "L1",
                        },
                        {"value": "230.1", "measurand": "Voltage", "unit": "V", "phase": "L1-N"},
                    ],
                }
            ],
        },
    ),
    (
        "ocpp2.0.1",
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"model": "M2", "vendorName": "Vendor"}},
    ),
    (
        "ocpp2.0.1",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [
                {
                    "timestamp": "2024-01-01T00:00:00Z",
                    "sampledValue": [
                        {"value": 1234.5, "measurand": "Energy.Active.Import.Register"},
                        {"value": 16.2, "measurand": "Current.Import", "phase": "L1"},
                    ],
                }
            ],
        },
    ),
]

LIBRARY_VERSION = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1", "ocpp2.1": "2.1"}


def _per_call_us(function: Callable[[], Any], seconds: float = 0.3) -> float:
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            function()
        count += 100
    return elapsed / count * 1e6


def main() -> None:
    """Measure and print the JSON report."""
    rows = []
    for subprotocol, action, payload in SAMPLES:
        schemas = VERSIONS[subprotocol].schemas
        assert schemas.validate_request(action, payload) is None
        library = get_validator(2, action, LIBRARY_VERSION[subprotocol])
        ours = _per_call_us(lambda s=schemas, a=action, p=payload: s.validate_request(a, p))
        baseline = _per_call_us(lambda v=library, p=payload: v.validate(p))
        rows.append(
            {
                "version": subprotocol,
                "action": action,
                "gateway_us": round(ours, 2),
                "ocpp_library_jsonschema_us": round(baseline, 2),
                "speedup": round(baseline / ours, 1),
            }
        )
    report = {
        "benchmark": "schema_validation_per_message",
        "command": "python -m bench.validation",
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "results": rows,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
