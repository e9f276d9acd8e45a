"""Charge point records (security/records.py): the data, the stores, profiles only going up.

A profile never goes down without an explicit override (1.6 security whitepaper A05.FR.09: once
the charge point connected with a higher profile it may not connect with a lower one; A05 remark:
no change to a lower profile over OCPP). The JSON file store persists every change atomically,
with the password hashes readable by its owner only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from security.records import (
    ChargePointRecord,
    DowngradeRefused,
    InMemoryRecordStore,
    JsonFileRecordStore,
    check_profile_change,
)

FULL = ChargePointRecord(
    "CP-0001",
    security_profile=3,
    password_hash="$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA",
    allowed_versions=("ocpp2.0.1", "ocpp1.6"),
    expected_cn="SERIAL-0001",
    expected_o="Example CPO",
    validation="lenient",
    enabled=False,
)


def record(identity: str, profile: int = 1, **fields: object) -> ChargePointRecord:
    return ChargePointRecord(identity, security_profile=profile, **fields)  # type: ignore[arg-type]


# -- the record ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "original",
    [FULL, ChargePointRecord("CP-min"), record("CP-empty-versions", 2, allowed_versions=())],
    ids=["every-field", "defaults", "empty-versions"],
)
def test_record_survives_a_json_round_trip(original: ChargePointRecord) -> None:
    data = json.loads(json.dumps(original.to_json()))
    assert ChargePointRecord.from_json(data) == original


def test_allowed_versions_are_stored_as_a_list_and_read_back_as_a_tuple() -> None:
    data = FULL.to_json()
    assert data["allowed_versions"] == ["ocpp2.0.1", "ocpp1.6"]
    restored = ChargePointRecord.from_json(data)
    assert restored.allowed_versions == ("ocpp2.0.1", "ocpp1.6")
    assert isinstance(restored.allowed_versions, tuple)


def test_no_allowed_versions_stays_none_meaning_every_version() -> None:
    data = ChargePointRecord("CP-1").to_json()
    assert data["allowed_versions"] is None
    assert ChargePointRecord.from_json(data).allowed_versions is None


def test_json_holds_the_hash_and_exactly_the_record_fields() -> None:
    assert set(FULL.to_json()) == {
        "identity",
        "security_profile",
        "password_hash",
        "allowed_versions",
        "expected_cn",
        "expected_o",
        "validation",
        "enabled",
    }


def test_certificate_cn_defaults_to_the_identity() -> None:
    """A00.FR.405: the certificate's CN is the charge point's serial number (its identity)."""
    assert ChargePointRecord("CP-0002").certificate_cn == "CP-0002"
    assert FULL.certificate_cn == "SERIAL-0001"


# -- the profile rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "allow", "refused"),
    [
        (None, 0, False, False),
        (None, 3, False, False),
        (0, 1, False, False),
        (1, 3, False, False),
        (2, 2, False, False),
        (3, 2, False, True),
        (2, 0, False, True),
        (1, 0, False, True),
        (3, 0, True, False),
        (2, 1, True, False),
    ],
)
def test_profile_goes_up_freely_and_down_only_when_allowed(
    old: int | None, new: int, allow: bool, refused: bool
) -> None:
    before = None if old is None else record("CP-1", old)
    if refused:
        with pytest.raises(DowngradeRefused, match="downgrade"):
            check_profile_change(before, record("CP-1", new), allow)
    else:
        check_profile_change(before, record("CP-1", new), allow)


# -- in memory ----------------------------------------------------------------------------------


def test_memory_store_puts_gets_and_removes() -> None:
    store = InMemoryRecordStore()
    assert store.get("CP-1") is None
    store.put(record("CP-1"))
    assert store.get("CP-1") == record("CP-1")
    assert store.remove("CP-1") is True
    assert store.get("CP-1") is None
    assert store.remove("CP-1") is False


def test_memory_store_lists_records_sorted_by_identity() -> None:
    store = InMemoryRecordStore([record("CP-b"), record("CP-c")])
    store.put(record("CP-a"))
    assert [r.identity for r in store.all()] == ["CP-a", "CP-b", "CP-c"]


def test_memory_store_refuses_a_downgrade_and_keeps_the_record() -> None:
    store = InMemoryRecordStore([record("CP-1", 2)])
    with pytest.raises(DowngradeRefused):
        store.put(record("CP-1", 1))
    assert store.get("CP-1") == record("CP-1", 2)


def test_memory_store_downgrades_with_the_explicit_override() -> None:
    store = InMemoryRecordStore([record("CP-1", 3)])
    store.put(record("CP-1", 0), allow_downgrade=True)
    assert store.get("CP-1") == record("CP-1", 0)


def test_memory_store_always_allows_an_upgrade() -> None:
    store = InMemoryRecordStore([record("CP-1", 0)])
    for profile in (1, 2, 3):
        store.put(record("CP-1", profile))
        assert store.get("CP-1") == record("CP-1", profile)


# -- JSON file ----------------------------------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "records" / "records.json"


def test_missing_file_means_an_empty_store(path: Path) -> None:
    store = JsonFileRecordStore(path)
    assert store.all() == []
    assert store.get("CP-1") is None
    assert store.refresh() is False
    assert not path.exists()


def test_file_store_persists_across_instances(path: Path) -> None:
    JsonFileRecordStore(path).put(FULL)
    JsonFileRecordStore(path).put(record("CP-0000"))
    reopened = JsonFileRecordStore(path)
    assert reopened.get("CP-0001") == FULL
    assert [r.identity for r in reopened.all()] == ["CP-0000", "CP-0001"]
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert [item["identity"] for item in data["charge_points"]] == ["CP-0000", "CP-0001"]


def test_file_is_readable_by_its_owner_only(path: Path) -> None:
    store = JsonFileRecordStore(path)
    store.put(FULL)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.put(record("CP-2"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_writes_are_atomic_and_leave_no_temporary_files(path: Path) -> None:
    store = JsonFileRecordStore(path)
    for index in range(5):
        store.put(record(f"CP-{index}"))
    store.remove("CP-3")
    assert sorted(p.name for p in path.parent.iterdir()) == ["records.json", "records.json.lock"]
    assert (path.parent / "records.json.lock").stat().st_mode & 0o777 == 0o600
    json.loads(path.read_text(encoding="utf-8"))  # always a complete document


def test_remove_persists(path: Path) -> None:
    store = JsonFileRecordStore(path)
    store.put(record("CP-1"))
    store.put(record("CP-2"))
    assert store.remove("CP-1") is True
    assert [r.identity for r in JsonFileRecordStore(path).all()] == ["CP-2"]
    assert store.remove("CP-1") is False


def test_remove_of_unknown_identity_writes_nothing(path: Path) -> None:
    assert JsonFileRecordStore(path).remove("CP-1") is False
    assert not path.exists()


def test_refresh_picks_up_a_change_made_by_another_instance_once(path: Path) -> None:
    gateway, cli = JsonFileRecordStore(path), JsonFileRecordStore(path)
    cli.put(record("CP-1", 1))
    assert gateway.refresh() is True
    assert gateway.get("CP-1") == record("CP-1", 1)
    assert gateway.refresh() is False
    cli.put(record("CP-1", 1, enabled=False))
    assert gateway.refresh() is True
    assert gateway.get("CP-1") == record("CP-1", 1, enabled=False)
    assert gateway.refresh() is False


def test_refresh_after_own_write_reports_no_change(path: Path) -> None:
    store = JsonFileRecordStore(path)
    store.put(record("CP-1"))
    assert store.refresh() is False


def test_refresh_sees_the_file_removed(path: Path) -> None:
    store = JsonFileRecordStore(path)
    store.put(record("CP-1"))
    path.unlink()
    assert store.refresh() is True
    assert store.all() == []


def test_refresh_sees_a_same_size_change_within_one_timestamp_tick(path: Path) -> None:
    """Coarse file timestamps (1-10 ms on many kernels, 1-2 s on some filesystems): a change of
    the same size written within the same tick must still be seen (here profile 1 -> 2)."""
    gateway, cli = JsonFileRecordStore(path), JsonFileRecordStore(path)
    cli.put(record("CP-1", 1))
    assert gateway.refresh() is True
    before = path.stat()
    cli.put(record("CP-1", 2))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same timestamp tick
    assert gateway.refresh() is True
    assert gateway.get("CP-1") == record("CP-1", 2)


def test_file_store_checks_downgrades_against_the_current_file(path: Path) -> None:
    gateway, cli = JsonFileRecordStore(path), JsonFileRecordStore(path)
    cli.put(record("CP-1", 3))
    with pytest.raises(DowngradeRefused):
        gateway.put(record("CP-1", 1))  # the stale instance must not overwrite profile 3
    assert JsonFileRecordStore(path).get("CP-1") == record("CP-1", 3)


def test_file_store_downgrades_with_the_explicit_override(path: Path) -> None:
    store = JsonFileRecordStore(path)
    store.put(record("CP-1", 2))
    store.put(record("CP-1", 1), allow_downgrade=True)
    assert JsonFileRecordStore(path).get("CP-1") == record("CP-1", 1)


def _add_records(path: str, start: int) -> None:
    store = JsonFileRecordStore(path)
    for n in range(start, start + 20):
        store.put(ChargePointRecord(f"CP-{n:03d}"))


def test_processes_writing_one_file_at_once_lose_nothing(path: Path) -> None:
    """Nodes sharing the file (or the CLI beside a node) hold its lock for read-modify-write."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_records, args=(str(path), s)) for s in (0, 20, 40, 60)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert len(JsonFileRecordStore(path).all()) == 80


def test_a_writer_waits_for_a_stuck_lock_holder_only_so_long(path: Path, monkeypatch) -> None:
    """A stopped CLI holding the lock must not freeze a gateway node: the write fails instead."""
    import fcntl
    import os
    import time

    from security import jsonfile

    monkeypatch.setattr(jsonfile, "LOCK_TIMEOUT", 0.2)
    store = JsonFileRecordStore(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            store.put(ChargePointRecord("CP-LOCKED"))
    finally:
        os.close(fd)
    assert time.monotonic() - started < 1.0
    store.put(ChargePointRecord("CP-LOCKED"))  # free again
    assert JsonFileRecordStore(path).get("CP-LOCKED") is not None
