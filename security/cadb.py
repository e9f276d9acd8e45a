"""The CA's database of issued certificates: `ca/issued.json` in the CA store.

One entry per certificate the gateway's CA issued, keyed by its serial number (lower-case hex):
identity (None for server certificates), kind, subject, issuer, validity, status and, once revoked,
when and why. It is what the CRL of each issuing CA is built from: the whitepaper's note to
A00.FR.704 ("best practice for any certificate authority server to keep track of revoked
certificates"); CRLs published into the store's `crl/` folder are how the gateway verifies charge
point certificates online (A00.FR.702/704).

Writes are atomic (security/jsonfile.py, 0600) and serialized between processes with an exclusive
lock on a sibling `.lock` file: the CLI and a gateway signing CSRs never lose each other's entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from .ca import Issued, create_crl
from .jsonfile import read_json, write_json_atomic

DB_FILE = "issued.json"
Kind = Literal["charge_point", "server"]
KINDS: tuple[str, ...] = ("charge_point", "server")
# RFC 5280 5.3.1 reason codes by their ASN.1 names (removeFromCRL and certificateHold are left out:
# no delta CRLs and no suspension). "unspecified" is written without a reason extension.
REVOCATION_REASONS: dict[str, x509.ReasonFlags] = {
    flag.value: flag
    for flag in x509.ReasonFlags
    if flag not in (x509.ReasonFlags.remove_from_crl, x509.ReasonFlags.certificate_hold)
}
DEFAULT_CRL_VALIDITY = timedelta(days=7)

T = TypeVar("T")


class UnknownCertificate(LookupError):
    """No certificate with this serial (or no valid one for this identity) is in the database."""


class AlreadyRevoked(ValueError):
    """The certificate is revoked already."""


@dataclass(frozen=True)
class IssuedCertificate:
    """One database entry."""

    serial: str
    identity: str | None
    kind: str
    subject: str
    issuer: str
    issuer_key_id: str | None
    not_before: str
    not_after: str
    sha256: str
    status: str = "valid"
    revoked_at: str | None = None
    reason: str | None = None

    @property
    def not_after_utc(self) -> datetime:
        """`not_after` as an aware datetime."""
        return datetime.fromisoformat(self.not_after)

    def renewal_due(self, now: datetime, renew_days_before: int) -> bool:
        """Valid and expiring in less than `renew_days_before` days (or expired already)."""
        remaining = self.not_after_utc - now
        return self.status == "valid" and remaining < timedelta(days=renew_days_before)

    def to_json(self) -> dict[str, Any]:
        """Plain data for the file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IssuedCertificate:
        """The entry from `to_json` data (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with seconds, e.g. 2025-01-31T12:00:00Z."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def serial_hex(value: int | str) -> str:
    """The database key of a serial: lower-case hex without leading zeros.

    Accepts an int or hex text with an optional 0x prefix and ':' separators; ValueError if not hex.
    """
    if isinstance(value, int):
        return f"{value:x}"
    text = value.strip().lower().replace(":", "").removeprefix("0x")
    if not text:
        raise ValueError("an empty serial number")
    return f"{int(text, 16):x}"


def key_id(cert: x509.Certificate) -> str:
    """The certificate's subject key identifier (hex); computed from its key when absent."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        public_key = cert.public_key()
        return x509.SubjectKeyIdentifier.from_public_key(public_key).digest.hex()  # type: ignore[arg-type]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _authority_key_id(cert: x509.Certificate, issuer: x509.Certificate | None) -> str | None:
    try:
        value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        value = None
    if value is not None and value.key_identifier is not None:
        return value.key_identifier.hex()
    return key_id(issuer) if issuer is not None else None


class CaDatabase:
    """The issued-certificate database in one JSON file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def of_store(cls, certs_dir: str | os.PathLike[str]) -> CaDatabase:
        """The database of the CA in `certs_dir`/ca."""
        return cls(Path(certs_dir) / "ca" / DB_FILE)

    # -- reading -------------------------------------------------------------------------------

    def all(self) -> list[IssuedCertificate]:
        """Every entry, oldest first."""
        entries = self._load().values()
        return sorted(entries, key=lambda e: (e.not_before, e.serial))

    def get(self, serial: int | str) -> IssuedCertificate | None:
        """The entry of `serial`, if any (a malformed serial is simply not found)."""
        try:
            key = serial_hex(serial)
        except ValueError:
            return None
        return self._load().get(key)

    def by_identity(self, identity: str) -> list[IssuedCertificate]:
        """The charge point certificates issued for `identity`, oldest first."""
        return [e for e in self.all() if e.identity == identity]

    def revoked_by(self, issuer: x509.Certificate) -> list[IssuedCertificate]:
        """The revoked entries that `issuer` signed (matched by key identifier, else by name)."""
        issuer_id, issuer_name = key_id(issuer), issuer.subject.rfc4514_string()
        return [
            e
            for e in self.all()
            if e.status == "revoked"
            and (e.issuer_key_id == issuer_id if e.issuer_key_id else e.issuer == issuer_name)
        ]

    # -- changes -------------------------------------------------------------------------------

    def add(
        self,
        certificate: x509.Certificate,
        kind: Kind,
        identity: str | None = None,
        issuer: x509.Certificate | None = None,
    ) -> IssuedCertificate:
        """Record a newly issued certificate (`issuer` helps when it has no AKI extension)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
        entry = IssuedCertificate(
            serial=serial_hex(certificate.serial_number),
            identity=identity,
            kind=kind,
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            issuer_key_id=_authority_key_id(certificate, issuer),
            not_before=iso(certificate.not_valid_before_utc),
            not_after=iso(certificate.not_valid_after_utc),
            sha256=fingerprint(certificate),
        )

        def change(entries: dict[str, IssuedCertificate]) -> IssuedCertificate:
            if entry.serial in entries:
                raise ValueError(f"serial {entry.serial} is in the database already")
            entries[entry.serial] = entry
            return entry

        return self._update(change)

    def on_issued(self, issued: Issued, identity: str) -> None:
        """Hook for signers (e.g. SignCertificate over OCPP): record a charge point certificate."""
        self.add(issued.certificate, "charge_point", identity)

    def revoke(
        self, serial: int | str, reason: str = "unspecified", when: datetime | None = None
    ) -> IssuedCertificate:
        """Mark `serial` revoked; UnknownCertificate or AlreadyRevoked when it cannot be."""
        _check_reason(reason)
        key = serial_hex(serial)
        moment = iso(when or datetime.now(UTC))

        def change(entries: dict[str, IssuedCertificate]) -> IssuedCertificate:
            entry = entries.get(key)
            if entry is None:
                raise UnknownCertificate(f"no certificate with serial {key} in the CA database")
            if entry.status == "revoked":
                raise AlreadyRevoked(f"serial {key} was revoked at {entry.revoked_at}")
            entries[key] = dataclasses.replace(
                entry, status="revoked", revoked_at=moment, reason=reason
            )
            return entries[key]

        return self._update(change)

    def revoke_identity(
        self, identity: str, reason: str = "unspecified", when: datetime | None = None
    ) -> list[IssuedCertificate]:
        """Revoke every valid certificate of `identity`; UnknownCertificate when there is none."""
        _check_reason(reason)
        moment = iso(when or datetime.now(UTC))

        def change(entries: dict[str, IssuedCertificate]) -> list[IssuedCertificate]:
            targets = [
                e for e in entries.values() if e.identity == identity and e.status == "valid"
            ]
            if not targets:
                raise UnknownCertificate(f"no valid certificate of {identity} in the CA database")
            for entry in targets:
                entries[entry.serial] = dataclasses.replace(
                    entry, status="revoked", revoked_at=moment, reason=reason
                )
            return sorted((entries[e.serial] for e in targets), key=lambda e: e.not_before)

        return self._update(change)

    # -- CRL -----------------------------------------------------------------------------------

    def build_crl(
        self, issuer: Issued, next_update: timedelta = DEFAULT_CRL_VALIDITY
    ) -> x509.CertificateRevocationList:
        """The CRL of `issuer` listing every revoked certificate it issued."""
        revoked = [
            (
                int(e.serial, 16),
                None if e.reason in (None, "unspecified") else REVOCATION_REASONS[e.reason],
                datetime.fromisoformat(e.revoked_at or e.not_before),
            )
            for e in self.revoked_by(issuer.certificate)
        ]
        return create_crl(issuer, revoked, next_update=next_update)

    # -- storage -------------------------------------------------------------------------------

    def _load(self) -> dict[str, IssuedCertificate]:
        data = read_json(self.path) or {}
        if not isinstance(data, dict) or not isinstance(data.get("certificates", {}), dict):
            raise ValueError(f"{self.path}: not a CA database")
        return {
            serial: IssuedCertificate.from_json(item)
            for serial, item in data.get("certificates", {}).items()
        }

    def _update(self, change: Callable[[dict[str, IssuedCertificate]], T]) -> T:
        with self._lock():
            entries = self._load()
            result = change(entries)
            payload = {
                "version": 1,
                "certificates": {serial: e.to_json() for serial, e in sorted(entries.items())},
            }
            write_json_atomic(self.path, payload)
            return result

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def write_crl(path: str | os.PathLike[str], crl: x509.CertificateRevocationList) -> None:
    """Publish a CRL as PEM (0644), replacing `path` atomically (a gateway never sees half)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(crl.public_bytes(Encoding.PEM))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _check_reason(reason: str) -> None:
    if reason not in REVOCATION_REASONS:
        raise ValueError(
            f"unknown revocation reason {reason!r} (one of {', '.join(REVOCATION_REASONS)})"
        )
