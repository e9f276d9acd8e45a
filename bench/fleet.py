"""Provisioning a benchmark fleet on the gateway side: charge point records and client certificates.

`write_records` writes the records file the gateway loads (`security.records.JsonFileRecordStore`'s
format) for thousands of identities in one go: the password is hashed once with the project's
argon2id (`security.passwords.hash_password`) and that hash is shared by every record, so 30,000
records take under a second instead of 30,000 hashes. `client_certificates` issues one certificate
per identity from the CA store's issuing CA (`ca/issuing.pem` + `ca/issuing.key`, as
`ocpp-gateway ca issue-cp` does): CN = identity (what security profile 3 checks), O = the issuing
CA's O, clientAuth, EC P-256, written as DIR/{identity}.pem (leaf, then the issuing CA) and
DIR/{identity}.key (PKCS#8, mode 0600). They are not entered in the CA database: they are
benchmark material, not certificates an operator manages.

Benchmark fleets only: every record shares one password.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from security.ca import (
    Issued,
    issue_client_certificate,
    load_certificates,
    load_private_key,
)
from security.jsonfile import read_json, write_json_atomic
from security.passwords import hash_password
from security.records import ChargePointRecord, JsonFileRecordStore, SecurityProfile

PASSWORD_PROFILES = (1, 2)


def load_issuing_ca(ca_dir: Path, passphrase: bytes | None = None) -> Issued:
    """The issuing CA (certificate and key) of a CA store's `ca/` folder."""
    certificate = load_certificates(ca_dir / "issuing.pem")[0]
    return Issued(certificate, load_private_key(ca_dir / "issuing.key", passphrase))


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create or replace `path` with `mode` from the start (no fsync: benchmark material)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def client_certificates(
    ca_dir: Path,
    identities: Sequence[str],
    out_dir: Path,
    *,
    passphrase: bytes | None = None,
    days: int = 365,
) -> None:
    """Issue a client certificate and key for every identity into `out_dir`.

    `ca_dir` is the CA store's `ca/` folder (e.g. certs/ca); `passphrase` opens an encrypted
    issuing key. `days` stays above the gateway's `renew_days_before` (30) by default: a
    certificate due for renewal makes the gateway send each charge point a renewal trigger.
    About 0.45 ms per identity here: 10,000 in 4.5 s.
    """
    issuer = load_issuing_ca(Path(ca_dir), passphrase)
    names = issuer.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    organization = str(names[0].value) if names else None
    issuer_pem = issuer.certificate.public_bytes(serialization.Encoding.PEM)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    no_encryption = serialization.NoEncryption()
    for identity in identities:
        if not identity or "/" in identity or identity.startswith("."):
            raise ValueError(f"{identity!r} cannot name a certificate file")
        issued = issue_client_certificate(issuer, identity, organization, "ec256", days=days)
        assert issued.key is not None
        leaf = issued.certificate.public_bytes(serialization.Encoding.PEM)
        key = issued.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, no_encryption
        )
        _write(out / f"{identity}.key", key, 0o600)
        _write(out / f"{identity}.pem", leaf + issuer_pem, 0o644)


def records_for(
    identities: Iterable[str], profile: int, password: str | None
) -> list[ChargePointRecord]:
    """Records of `profile` for the identities, sharing one hash of `password` (profiles 1, 2)."""
    if profile not in (0, 1, 2, 3):
        raise ValueError(f"security profile {profile}: use 0, 1, 2 or 3")
    if profile in PASSWORD_PROFILES and not password:
        raise ValueError(f"security profile {profile} needs a password (HTTP Basic auth)")
    digest = hash_password(password.encode()) if profile in PASSWORD_PROFILES and password else None
    level = cast(SecurityProfile, profile)
    return [ChargePointRecord(identity, level, password_hash=digest) for identity in identities]


def write_records(
    path: Path,
    identities: Iterable[str],
    profile: int,
    password: str | None,
    *,
    merge: bool = False,
) -> None:
    """Write the gateway's records file: one record of `profile` per identity (mode 0600).

    profile 0: no authentication; 1: Basic auth on ws; 2: TLS + Basic auth; 3: mutual TLS (CN =
    identity). With `merge`, records already in the file for other identities are kept (a fleet
    of several profiles is written in several calls). The file is read back through
    `JsonFileRecordStore` as a check.
    """
    target = Path(path)
    records = {
        record.identity: record.to_json() for record in records_for(identities, profile, password)
    }
    if merge:
        existing = (read_json(target) or {}).get("charge_points", [])
        records = {item["identity"]: item for item in existing} | records
    payload = {"version": 1, "charge_points": [records[name] for name in sorted(records)]}
    write_json_atomic(target, payload)
    stored = len(JsonFileRecordStore(target).all())
    if stored != len(records):
        raise RuntimeError(f"{target}: {stored} records read back, {len(records)} written")
