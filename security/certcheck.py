"""The charge point certificate check of security profile 3 (OCPP 1.6 security whitepaper 2.5.1).

Run on every connection, also after TLS session resumption (the handshake may not have verified
anything then). A00.FR.403: the certification path to a trust anchor (RFC 5280 section 6, done by
OpenSSL through pyOpenSSL at the given time); A00.FR.404: O is the CPO; A00.FR.405: CN is the charge
point's serial number (its identity); A00.FR.501-503: key strength; revocation by the store's CRLs
(A00.FR.702: online verification is approximated by CRLs the CA publishes into the store).

The checks run most specific first: malformed, then the chain (an expired or not yet valid leaf
from a trusted CA says so instead of "untrusted"), revocation, key strength, clientAuth, CN, O.
Details are safe to log: subject, serial in hex, issuer (control characters escaped), no keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from .ca import key_weakness
from .castore import CaStore

RejectReason = Literal[
    "cert_untrusted",
    "cert_expired",
    "cert_not_yet_valid",
    "cert_revoked",
    "cert_no_client_auth",
    "cert_weak_key",
    "cert_cn_mismatch",
    "cert_o_mismatch",
    "cert_malformed",
]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) for the leaf's validity period.
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10

_MAX_DETAIL_FIELD = 200


@dataclass(frozen=True, slots=True)
class CertAccepted:
    """The client certificate passed every check."""

    serial: int
    subject: str
    not_after: datetime
    issuer: str


@dataclass(frozen=True, slots=True)
class CertRejected:
    """Why the client certificate is refused; `detail` is safe to log."""

    reason: RejectReason
    detail: str


def check_client_certificate(
    chain: Sequence[bytes],
    store: CaStore,
    now: datetime,
    expected_cn: str,
    expected_o: str | None,
) -> CertAccepted | CertRejected:
    """Check a client chain (DER, leaf first) for charge point `expected_cn` at time `now`."""
    if not chain:
        return CertRejected("cert_untrusted", "no client certificate was presented")
    parsed = _parse(chain)
    if isinstance(parsed, CertRejected):
        return parsed
    leaf, presented = parsed[0], parsed[1:]
    who = _describe(leaf)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    verified = _verify_path(leaf, presented, store, now, who)
    if isinstance(verified, CertRejected):
        return verified
    for rejection in (
        _revocation(verified, store, who),
        _key_strength(verified, who),
        _client_auth(leaf, who),
        _subject_match(leaf, NameOID.COMMON_NAME, expected_cn, "cert_cn_mismatch", who),
    ):
        if rejection is not None:
            return rejection
    if expected_o is not None:
        rejection = _subject_match(
            leaf, NameOID.ORGANIZATION_NAME, expected_o, "cert_o_mismatch", who
        )
        if rejection is not None:
            return rejection
    return CertAccepted(
        serial=leaf.serial_number,
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
    )


# -- the checks --------------------------------------------------------------------------------


def _parse(chain: Sequence[bytes]) -> list[x509.Certificate] | CertRejected:
    """Parse every certificate and everything later checks read, so nothing raises after this."""
    certs: list[x509.Certificate] = []
    for index, der in enumerate(chain):
        what = "the leaf" if index == 0 else f"chain certificate #{index + 1}"
        try:
            cert = x509.load_der_x509_certificate(bytes(der))
            cert.extensions  # noqa: B018 - parsed lazily: force it here
            cert.subject.rfc4514_string()
            cert.issuer.rfc4514_string()
            cert.not_valid_before_utc  # noqa: B018
            cert.not_valid_after_utc  # noqa: B018
        except ValueError as exc:
            reason = _safe(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return CertRejected(
                "cert_malformed", f"{what} is not a valid DER certificate: {reason}"
            )
        certs.append(cert)
    return certs


def _verify_path(
    leaf: x509.Certificate,
    presented: list[x509.Certificate],
    store: CaStore,
    now: datetime,
    who: str,
) -> list[x509.Certificate] | CertRejected:
    """The verified chain (leaf to anchor), or why there is none at `now` (A00.FR.403)."""
    trusted = crypto.X509Store()
    for anchor in store.anchors:
        trusted.add_cert(crypto.X509.from_cryptography(anchor))
    trusted.set_time(now)  # no PARTIAL_CHAIN flag: the path must end at a self-signed anchor
    untrusted = [crypto.X509.from_cryptography(c) for c in (*presented, *store.intermediates)]
    context = crypto.X509StoreContext(trusted, crypto.X509.from_cryptography(leaf), untrusted)
    try:
        return [c.to_cryptography() for c in context.get_verified_chain()]
    except crypto.X509StoreContextError as exc:
        code, depth, message = exc.errors[0], exc.errors[1], str(exc.errors[2])
        failing = exc.certificate
    except crypto.Error as exc:  # pragma: no cover - OpenSSL failed outside verification
        return CertRejected("cert_untrusted", f"{who}: chain verification failed: {_safe(exc)}")
    if depth == 0 and code == X509_V_ERR_CERT_HAS_EXPIRED:
        return CertRejected(
            "cert_expired", f"{who}: expired at {leaf.not_valid_after_utc.isoformat()}"
        )
    if depth == 0 and code == X509_V_ERR_CERT_NOT_YET_VALID:
        return CertRejected(
            "cert_not_yet_valid", f"{who}: not valid before {leaf.not_valid_before_utc.isoformat()}"
        )
    at = "" if depth == 0 else f" at chain depth {depth} ({_subject_of(failing)})"
    return CertRejected("cert_untrusted", f"{who}: {_safe(message)}{at} (OpenSSL error {code})")


def _revocation(verified: list[x509.Certificate], store: CaStore, who: str) -> CertRejected | None:
    """Revoked when a CRL signed by a certificate's issuer lists it; stale CRLs still count."""
    for depth, (cert, issuer) in enumerate(itertools.pairwise(verified)):
        for crl in store.crls:
            if crl.issuer != issuer.subject or not _crl_signed_by(crl, issuer):
                continue
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                continue
            what = "" if depth == 0 else f"issuing CA {_safe(cert.subject.rfc4514_string())} "
            return CertRejected(
                "cert_revoked",
                f"{who}: {what}revoked on {entry.revocation_date_utc.isoformat()}"
                f"{_reason_text(entry)} by the CRL of {_safe(issuer.subject.rfc4514_string())}",
            )
    return None


def _key_strength(verified: list[x509.Certificate], who: str) -> CertRejected | None:
    """RSA >= 2048 bits, EC >= 256 bits, nothing else, for every certificate of the path."""
    for depth, cert in enumerate(verified):
        weakness = _key_weakness(cert)
        if weakness is not None:
            what = "the key" if depth == 0 else f"the key of CA {_subject_of(cert)}"
            return CertRejected("cert_weak_key", f"{who}: {what} is {weakness}")
    return None


def _client_auth(leaf: x509.Certificate, who: str) -> CertRejected | None:
    """The ExtendedKeyUsage extension must be present and list clientAuth."""
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return CertRejected(
            "cert_no_client_auth", f"{who}: no ExtendedKeyUsage extension (clientAuth required)"
        )
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        names = ", ".join(getattr(u, "_name", None) or u.dotted_string for u in usages)
        return CertRejected(
            "cert_no_client_auth", f"{who}: ExtendedKeyUsage without clientAuth ({_safe(names)})"
        )
    return None


def _subject_match(
    leaf: x509.Certificate,
    oid: x509.ObjectIdentifier,
    expected: str,
    reason: RejectReason,
    who: str,
) -> CertRejected | None:
    """Exactly one subject attribute `oid`, equal to `expected` (A00.FR.404 O, A00.FR.405 CN)."""
    values = [str(a.value) for a in leaf.subject.get_attributes_for_oid(oid)]
    if values == [expected]:
        return None
    label = "CN" if oid == NameOID.COMMON_NAME else "O"
    found = ", ".join(repr(_safe(v)) for v in values) if values else "none"
    return CertRejected(reason, f"{who}: subject {label} {found} != expected {_safe(expected)!r}")


# -- helpers -----------------------------------------------------------------------------------


def _key_weakness(cert: x509.Certificate) -> str | None:
    try:
        return key_weakness(cert.public_key())
    except UnsupportedAlgorithm:
        return "of an unsupported algorithm (RSA or EC only)"


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _reason_text(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        return ""
    return f" ({reason.value})"


def _describe(leaf: x509.Certificate) -> str:
    return (
        f"subject={_safe(leaf.subject.rfc4514_string())} serial=0x{leaf.serial_number:x} "
        f"issuer={_safe(leaf.issuer.rfc4514_string())}"
    )


def _subject_of(cert: crypto.X509 | x509.Certificate) -> str:
    if isinstance(cert, crypto.X509):
        cert = cert.to_cryptography()
    try:
        return _safe(cert.subject.rfc4514_string())
    except ValueError:
        return "unparseable subject"


def _safe(value: object) -> str:
    """Printable, bounded text for logs: control and non-printable characters escaped."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return text if len(text) <= _MAX_DETAIL_FIELD else text[: _MAX_DETAIL_FIELD - 3] + "..."
