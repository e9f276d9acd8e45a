"""The CA database (security/cadb.py): issued certificates, revocation, and the CRLs built from it.

OCPP 1.6 security whitepaper 2.6.3: A00.FR.702/704 (the central system verifies charge point
certificates online: here, CRLs the CA publishes into the store) and Note 3 (a CA keeps track of
revoked certificates); A00.FR.508 (a serial number in every certificate: the database key).
"""

from __future__ import annotations

import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from security import ca
from security.cadb import (
    AlreadyRevoked,
    CaDatabase,
    UnknownCertificate,
    key_id,
    serial_hex,
    write_crl,
)
from security.castore import load_ca_store


@pytest.fixture(scope="module")
def root() -> ca.Issued:
    return ca.create_root_ca("DB Root", "DB CPO")


@pytest.fixture(scope="module")
def issuing(root: ca.Issued) -> ca.Issued:
    return ca.create_issuing_ca(root, "DB Issuing", "DB CPO")


@pytest.fixture(scope="module")
def other_issuing(root: ca.Issued) -> ca.Issued:
    return ca.create_issuing_ca(root, "DB Issuing", "DB CPO")  # same name, another key


@pytest.fixture
def db(tmp_path) -> CaDatabase:
    return CaDatabase.of_store(tmp_path / "certs")


def _client(issuer: ca.Issued, cn: str, days: int = 365) -> x509.Certificate:
    return ca.issue_client_certificate(issuer, cn, "DB CPO", days=days).certificate


def test_add_records_the_certificate_facts(db, issuing):
    cert = _client(issuing, "CP1")
    entry = db.add(cert, "charge_point", "CP1")
    assert entry.serial == f"{cert.serial_number:x}"
    assert (entry.identity, entry.kind, entry.status) == ("CP1", "charge_point", "valid")
    assert entry.subject == "O=DB CPO,CN=CP1" and entry.issuer == "O=DB CPO,CN=DB Issuing"
    assert entry.issuer_key_id == key_id(issuing.certificate)
    assert datetime.fromisoformat(entry.not_after) == cert.not_valid_after_utc
    assert entry.not_before.endswith("Z") and entry.revoked_at is None
    assert db.get(cert.serial_number) == entry == db.get(entry.serial.upper())
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600
    assert CaDatabase(db.path).all() == [entry]  # persisted


def test_server_certificates_have_no_identity(db, issuing):
    server = ca.issue_server_certificate(issuing, "gw.example", ["gw.example"]).certificate
    entry = db.add(server, "server")
    assert (entry.identity, entry.kind) == (None, "server")
    with pytest.raises(ValueError, match="kind"):
        db.add(_client(issuing, "CP1"), "firmware")  # type: ignore[arg-type]


def test_a_serial_is_added_once(db, issuing):
    cert = _client(issuing, "CP1")
    db.add(cert, "charge_point", "CP1")
    with pytest.raises(ValueError, match="already"):
        db.add(cert, "charge_point", "CP1")


def test_serial_forms_are_normalized():
    assert serial_hex(255) == serial_hex("0xFF") == serial_hex("00:ff") == "ff"
    with pytest.raises(ValueError):
        serial_hex("zz")


def test_revoke_by_serial(db, issuing):
    cert = _client(issuing, "CP1")
    db.add(cert, "charge_point", "CP1")
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    entry = db.revoke(f"{cert.serial_number:X}", "keyCompromise", when)
    assert (entry.status, entry.reason, entry.revoked_at) == (
        "revoked",
        "keyCompromise",
        "2030-01-02T03:04:05Z",
    )
    with pytest.raises(AlreadyRevoked):
        db.revoke(cert.serial_number)
    with pytest.raises(UnknownCertificate):
        db.revoke("abcdef")
    with pytest.raises(ValueError, match="reason"):
        db.revoke(cert.serial_number, "bored")


def test_revoke_by_identity_revokes_only_its_valid_certificates(db, issuing):
    old, new, other = _client(issuing, "CP1"), _client(issuing, "CP1"), _client(issuing, "CP2")
    for cert, identity in ((old, "CP1"), (new, "CP1"), (other, "CP2")):
        db.add(cert, "charge_point", identity)
    db.revoke(old.serial_number, "superseded")
    revoked = db.revoke_identity("CP1", "cessationOfOperation")
    assert [e.serial for e in revoked] == [f"{new.serial_number:x}"]
    assert db.get(old.serial_number).reason == "superseded"  # untouched
    assert db.get(other.serial_number).status == "valid"
    with pytest.raises(UnknownCertificate):
        db.revoke_identity("CP1")
    assert [e.identity for e in db.by_identity("CP1")] == ["CP1", "CP1"]


def test_renewal_due(db, issuing):
    short = db.add(_client(issuing, "CP1", days=5), "charge_point", "CP1")
    long = db.add(_client(issuing, "CP1", days=365), "charge_point", "CP1")
    now = datetime.now(UTC)
    assert short.renewal_due(now, 30) and not long.renewal_due(now, 30)
    assert long.renewal_due(now + timedelta(days=340), 30)
    assert not db.revoke(short.serial).renewal_due(now, 30)  # revoked: nothing to renew


def test_crl_lists_the_revoked_certificates_of_its_issuer_only(db, issuing, other_issuing):
    mine, kept, foreign = (
        _client(issuing, "CP1"),
        _client(issuing, "CP2"),
        _client(other_issuing, "CP3"),
    )
    db.add(mine, "charge_point", "CP1")
    db.add(kept, "charge_point", "CP2")
    db.add(foreign, "charge_point", "CP3")
    db.revoke(mine.serial_number, "keyCompromise")
    db.revoke(foreign.serial_number)
    crl = db.build_crl(issuing, timedelta(days=2))
    assert crl.is_signature_valid(issuing.certificate.public_key())
    assert crl.issuer == issuing.certificate.subject
    assert [e.serial_number for e in crl] == [mine.serial_number]
    reason = crl[0].extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=2)
    other = db.build_crl(other_issuing)
    assert [e.serial_number for e in other] == [foreign.serial_number]
    with pytest.raises(x509.ExtensionNotFound):  # "unspecified" is written without a reason
        other[0].extensions.get_extension_for_class(x509.CRLReason)


def test_a_published_crl_loads_into_the_store(tmp_path, db, root, issuing):
    certs = tmp_path / "certs"
    for folder in ("trust", "intermediate"):
        (certs / folder).mkdir(parents=True)
    ca.write_certificates(certs / "trust" / "root.pem", [root.certificate])
    ca.write_certificates(certs / "intermediate" / "issuing.pem", [issuing.certificate])
    cert = _client(issuing, "CP1")
    db.add(cert, "charge_point", "CP1")
    db.revoke(cert.serial_number)
    write_crl(certs / "crl" / "issuing.pem", db.build_crl(issuing))
    assert stat.S_IMODE((certs / "crl" / "issuing.pem").stat().st_mode) == 0o644
    store = load_ca_store(certs)
    assert store.crls[0].get_revoked_certificate_by_serial_number(cert.serial_number)


def test_concurrent_writers_lose_no_entry(db, issuing):
    certs = [_client(issuing, f"CP{i}") for i in range(24)]

    def add(chunk: list[x509.Certificate]) -> None:
        for cert in chunk:
            CaDatabase(db.path).add(cert, "charge_point", "CPX")

    threads = [threading.Thread(target=add, args=(certs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(db.all()) == 24


def test_on_issued_hook_records_a_charge_point_certificate(db, issuing):
    issued = ca.issue_client_certificate(issuing, "CP9", "DB CPO")
    db.on_issued(issued, "CP9")
    assert db.by_identity("CP9")[0].kind == "charge_point"
