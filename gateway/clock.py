"""Wall-clock timestamps as OCPP and the broker write them: ISO-8601 UTC with milliseconds."""

from __future__ import annotations

import time
from typing import Any

_second: list[Any] = [-1, ""]  # the last whole second formatted, reused within it


def iso_utc(epoch: float) -> str:
    """`epoch` as `2026-01-31T12:00:00.123Z`; each whole second is formatted only once."""
    whole = int(epoch)
    if whole != _second[0]:
        _second[:] = [whole, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(whole))]
    # truncated to the millisecond, without a float's 0.589 -> 0.58899... showing as .588
    millis = min(999, int((epoch - whole) * 1000 + 0.001))  # 1 us: above a double's error
    return f"{_second[1]}{millis:03d}Z"


def utc_now() -> str:
    """The current time as `iso_utc` writes it."""
    return iso_utc(time.time())
