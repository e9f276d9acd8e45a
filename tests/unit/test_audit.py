"""The audit log (security/audit.py): JSON lines, 0600, whole lines under concurrency, no secrets.

OCPP 1.6 security whitepaper A00.FR.602 (CA private keys well protected): the audit trail of CA
operations must never carry a key, password or token.
"""

from __future__ import annotations

import multiprocessing
import re
import stat
from datetime import datetime

import pytest

from security.audit import AuditLog, read_audit


def test_record_appends_one_json_line_with_the_fixed_fields(tmp_path):
    log = AuditLog(tmp_path / "sub" / "audit.log", actor="alice")
    log.record("ca.issue-cp", identity="CP1", serial="ab12", subject="CN=CP1")
    log.record("ca.revoke", result="refused", identity="CP1", reason="already_revoked")
    lines = (tmp_path / "sub" / "audit.log").read_text().splitlines()
    assert len(lines) == 2
    first, second = read_audit(tmp_path / "sub" / "audit.log")
    assert list(first)[:6] == ["ts", "action", "result", "identity", "serial", "actor"]
    assert first["action"] == "ca.issue-cp" and first["result"] == "ok"
    assert (first["identity"], first["serial"], first["actor"]) == ("CP1", "ab12", "alice")
    assert first["subject"] == "CN=CP1"
    assert second["result"] == "refused" and second["reason"] == "already_revoked"
    assert second["serial"] is None


def test_timestamps_are_rfc3339_utc(tmp_path):
    entry = AuditLog(tmp_path / "audit.log").record("ca.crl")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    assert datetime.fromisoformat(entry["ts"]).utcoffset().total_seconds() == 0


def test_the_file_is_created_0600_and_an_existing_loose_one_is_tightened(tmp_path):
    path = tmp_path / "audit.log"
    AuditLog(path).record("cp.add", identity="CP1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loose = tmp_path / "loose.log"
    loose.write_text("")
    loose.chmod(0o644)
    AuditLog(loose).record("cp.add", identity="CP1")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "name",
    ["password", "passphrase", "new_password", "passwd", "key", "private_key", "keyPem", "token",
     "api-token", "secret", "client_secret", "AuthorizationKey"],
)  # fmt: skip
def test_secret_looking_field_names_are_refused_and_nothing_is_written(tmp_path, name):
    path = tmp_path / "audit.log"
    with pytest.raises(ValueError, match="secret"):
        AuditLog(path).record("cp.set", identity="CP1", **{name: "x"})
    assert not path.exists() or path.read_text() == ""


def test_nested_secret_names_and_private_key_material_are_refused(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    with pytest.raises(ValueError, match="secret"):
        log.record("ca.crl", published=[{"crl": "x", "token": "t"}])
    with pytest.raises(ValueError, match="private key"):
        log.record("ca.init", detail="-----BEGIN PRIVATE KEY-----\nMIG...")
    with pytest.raises(ValueError, match="private key"):
        log.record("ca.init", files=["-----BEGIN EC PRIVATE KEY-----"])
    assert read_audit(tmp_path / "audit.log") == []


def test_fields_cannot_override_the_fixed_ones(tmp_path):
    with pytest.raises(ValueError, match="set by the log"):
        AuditLog(tmp_path / "audit.log").record("cp.add", ts="yesterday")
    with pytest.raises(ValueError, match="action"):
        AuditLog(tmp_path / "audit.log").record("")


def test_an_empty_path_disables_the_log(tmp_path):
    log = AuditLog("")
    assert not log.enabled
    log.check_writable()
    assert log.record("cp.add", identity="CP1")["action"] == "cp.add"


def test_check_writable_creates_the_file_or_raises(tmp_path):
    AuditLog(tmp_path / "a" / "audit.log").check_writable()
    assert (tmp_path / "a" / "audit.log").read_text() == ""
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(OSError):
        AuditLog(tmp_path / "dir.log").check_writable()


def test_read_audit_of_a_missing_file_is_empty_and_a_bad_line_is_named(tmp_path):
    assert read_audit(tmp_path / "none.log") == []
    bad = tmp_path / "bad.log"
    bad.write_text('{"action": "x"}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad\.log:2"):
        read_audit(bad)


def _writer(path: str, worker: int, count: int) -> None:
    log = AuditLog(path, actor=f"w{worker}")
    for index in range(count):
        log.record("ca.list", worker=worker, index=index, padding="x" * 8000)


def test_concurrent_processes_interleave_whole_lines(tmp_path):
    path = tmp_path / "audit.log"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), w, 60)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(20)
        assert process.exitcode == 0
    entries = read_audit(path)  # raises if a line was torn
    assert len(entries) == 240
    for worker in range(4):
        indexes = [e["index"] for e in entries if e["worker"] == worker]
        assert indexes == list(range(60))  # each writer's lines in its order
