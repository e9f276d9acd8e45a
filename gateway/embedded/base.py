"""Types shared by the embedded handler tables of every OCPP version."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..clock import iso_utc, utc_now

BootStatus = Literal["Accepted", "Pending", "Rejected"]


@dataclass(frozen=True, slots=True)
class EmbeddedSettings:
    """Operator-tunable answers of the embedded central system."""

    boot_status: BootStatus = "Accepted"
    heartbeat_interval_s: int = 300


@dataclass(slots=True)
class EmbeddedState:
    """Process-wide mutable state of the embedded central system (transaction ids, boot pacing).

    `pace_boot` is asked before a BootNotification is answered Accepted: None lets it be
    Accepted, a number turns the answer into Pending with that interval (the worker is under
    load, e.g. `AdmissionControl.pace_boot`).
    """

    _transaction_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    pace_boot: Callable[[], int | None] | None = None

    def next_transaction_id(self) -> int:
        """A new 1.6 transactionId, unique within this process."""
        return next(self._transaction_ids)


@dataclass(frozen=True, slots=True)
class EmbeddedContext:
    """What a handler may use besides the request payload."""

    identity: str
    settings: EmbeddedSettings
    state: EmbeddedState
    now: datetime | None = None  # None: the time when `timestamp()` is asked (most answers never)

    def timestamp(self) -> str:
        """`now` as an RFC 3339 UTC timestamp with millisecond precision (`...Z`)."""
        return utc_now() if self.now is None else iso_utc(self.now.timestamp())


Payload = dict[str, Any]
Handler = Callable[[Payload, EmbeddedContext], Payload]
HandlerTable = Mapping[str, Handler]
