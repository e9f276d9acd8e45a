"""Charge point records: who may connect, with which security profile and credentials.

`RecordStore` is the contract; `InMemoryRecordStore` serves tests and ephemeral setups and
`JsonFileRecordStore` persists every change atomically to one JSON file (a restart loses nothing,
and a running gateway picks up changes made by the CLI).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from .jsonfile import WatchedJsonFile

SecurityProfile = Literal[0, 1, 2, 3]
ValidationMode = Literal["strict", "lenient"]


class DowngradeRefused(ValueError):
    """Lowering a charge point's security profile needs an explicit, audited override."""


@dataclass(frozen=True)
class ChargePointRecord:
    """What the gateway knows about one charge point before it connects."""

    identity: str
    security_profile: SecurityProfile = 0
    password_hash: str | None = None  # argon2id of the Basic-auth password bytes; never clear
    allowed_versions: tuple[str, ...] | None = None  # None: every version the gateway serves
    expected_cn: str | None = None  # certificate CN; None means the identity
    expected_o: str | None = None  # certificate O (CPO name), checked when set
    validation: ValidationMode | None = None  # None: the gateway default
    enabled: bool = True

    @property
    def certificate_cn(self) -> str:
        """The CN a profile-3 certificate must carry."""
        return self.expected_cn or self.identity

    def to_json(self) -> dict[str, Any]:
        """Plain data for storage (the hash, never a password)."""
        data = dataclasses.asdict(self)
        if self.allowed_versions is not None:
            data["allowed_versions"] = list(self.allowed_versions)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChargePointRecord:
        """The record from `to_json` data."""
        values = dict(data)
        if values.get("allowed_versions") is not None:
            values["allowed_versions"] = tuple(values["allowed_versions"])
        return cls(**values)


def check_profile_change(
    old: ChargePointRecord | None, new: ChargePointRecord, allow_downgrade: bool
) -> None:
    """Refuse a lower security profile unless explicitly allowed (a profile only goes up)."""
    if old is not None and new.security_profile < old.security_profile and not allow_downgrade:
        raise DowngradeRefused(
            f"{new.identity}: security profile {old.security_profile} -> "
            f"{new.security_profile} is a downgrade; use --force-downgrade (audited)"
        )


class RecordStore(Protocol):
    """Charge point records by identity."""

    def get(self, identity: str) -> ChargePointRecord | None:
        """The record of `identity`, if any."""

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        """Create or replace a record; refuses a profile downgrade unless allowed."""

    def remove(self, identity: str) -> bool:
        """Delete a record; True when it existed."""

    def all(self) -> list[ChargePointRecord]:
        """Every record, sorted by identity."""


class InMemoryRecordStore:
    """Records in process memory."""

    def __init__(self, records: Iterable[ChargePointRecord] = ()) -> None:
        self._records = {r.identity: r for r in records}

    def get(self, identity: str) -> ChargePointRecord | None:
        return self._records.get(identity)

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        check_profile_change(self._records.get(record.identity), record, allow_downgrade)
        self._records[record.identity] = record

    def remove(self, identity: str) -> bool:
        return self._records.pop(identity, None) is not None

    def all(self) -> list[ChargePointRecord]:
        return sorted(self._records.values(), key=lambda r: r.identity)


class JsonFileRecordStore(InMemoryRecordStore):
    """Records persisted to a JSON file (0600); re-read when another process changed it."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._file = WatchedJsonFile(path)
        self.path = self._file.path
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read or write; True when it did."""
        changed, data = self._file.changed()
        if changed:
            records = (
                ChargePointRecord.from_json(i) for i in (data or {}).get("charge_points", [])
            )
            self._records = {record.identity: record for record in records}
        return changed

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        with self._file.locked():
            self.refresh()
            super().put(record, allow_downgrade=allow_downgrade)
            self._save()

    def remove(self, identity: str) -> bool:
        with self._file.locked():
            self.refresh()
            removed = super().remove(identity)
            if removed:
                self._save()
        return removed

    def _save(self) -> None:  # 0600: password hashes inside
        self._file.write({"version": 1, "charge_points": [r.to_json() for r in self.all()]})
