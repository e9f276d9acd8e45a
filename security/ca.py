"""Certificate issuance for the CPO hierarchy: roots, issuing CAs, server and charge point leaves.

OCPP 1.6 security whitepaper 2.6.1 (A00.FR.501-512): RSA >= 2048 bits or EC >= 256 bits (BSI, see
A00.FR.504), SHA-256 signatures, a serial number in every certificate, O (organizationName) in the
subject, KeyUsage restricting the use. Charge point certificates carry CN = the charge point serial
number (its identity) and O = the CPO name (A00.FR.511, A00.FR.404/405).

Pure functions over `cryptography` objects; the file helpers never log or echo key material.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyKind = Literal["ec256", "ec384", "rsa1024", "rsa2048", "rsa3072", "rsa4096"]
KEY_KINDS: tuple[str, ...] = get_args(KeyKind)

MIN_RSA_BITS = 2048  # A00.FR.502
MIN_EC_BITS = 256  # A00.FR.503 says 224; A00.FR.504 (BSI TR-02102-1) asks for >= 250

# Issuance is backdated a little so a charge point whose clock lags still accepts a fresh cert.
CLOCK_SKEW = timedelta(minutes=5)

_CURVES = {"ec256": ec.SECP256R1, "ec384": ec.SECP384R1}
# ECDSA or RSA PKCS#1 v1.5 signatures, both over SHA-256 (A00.FR.506).
_HASH = hashes.SHA256()


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (None when a CSR's public key was signed)."""

    certificate: x509.Certificate
    key: PrivateKeyTypes | None


def generate_key(kind: KeyKind) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A new private key of the given kind."""
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind]())
    if kind in KEY_KINDS and kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise ValueError(f"unknown key kind {kind!r} (one of {', '.join(KEY_KINDS)})")


def create_root_ca(
    common_name: str, organization: str, key_kind: KeyKind = "ec256", days: int = 3650
) -> Issued:
    """A self-signed root CA (pathLen 1: one issuing CA level below it)."""
    key = generate_key(key_kind)
    name = _name(common_name, organization)
    not_before, not_after = _validity(days)
    builder = (
        _builder(name, name, key.public_key(), not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return Issued(builder.sign(key, _HASH), key)


def create_issuing_ca(
    root: Issued,
    common_name: str,
    organization: str,
    key_kind: KeyKind = "ec256",
    days: int = 1825,
) -> Issued:
    """An issuing CA signed by `root` (pathLen 0: it signs leaves only)."""
    key = generate_key(key_kind)
    not_before, not_after = _validity(days)
    builder = _issued_builder(
        root, _name(common_name, organization), key.public_key(), not_before, not_after
    )
    builder = builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    ).add_extension(_ca_key_usage(), critical=True)
    return Issued(builder.sign(_issuer_key(root), _HASH), key)


def issue_server_certificate(
    issuer: Issued,
    common_name: str,
    sans: Sequence[str],
    key_kind: KeyKind = "ec256",
    days: int = 397,
    organization: str | None = None,
) -> Issued:
    """A TLS server certificate: CN = FQDN (A00.FR.510), SANs as DNS names or IP addresses.

    `organization` defaults to the issuer's O (the CPO runs both, A00.FR.509); an empty `sans`
    leaves the SubjectAltName extension out.
    """
    key = generate_key(key_kind)
    if organization is None:
        organization = _organization_of(issuer.certificate)
    not_before, not_after = _validity(days)
    builder = _issued_builder(
        issuer, _name(common_name, organization), key.public_key(), not_before, not_after
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False
        )
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # TLS_RSA_* suites (A00.FR.317) encrypt the premaster secret to the key: keyEncipherment.
        .add_extension(_leaf_key_usage(key_encipherment=is_rsa), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return Issued(builder.sign(_issuer_key(issuer), _HASH), key)


def issue_client_certificate(
    issuer: Issued,
    common_name: str,
    organization: str | None = None,
    key_kind: KeyKind = "ec256",
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extended_key_usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    public_key: CertificateIssuerPublicKeyTypes | None = None,
) -> Issued:
    """A charge point certificate: CN = serial/identity, O = CPO (A00.FR.511, A00.FR.509).

    `not_before`/`not_after` override the default validity; `extended_key_usages=()` leaves the
    EKU extension out; with `public_key` (from a CSR) that key is certified and `key` is None.
    """
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
    subject_key: CertificateIssuerPublicKeyTypes
    if public_key is None:
        key = generate_key(key_kind)
        subject_key = key.public_key()
    else:
        subject_key = public_key
    default_before, default_after = _validity(days)
    builder = _issued_builder(
        issuer,
        _name(common_name, organization),
        subject_key,
        not_before or default_before,
        not_after or default_after,
    )
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(_leaf_key_usage(key_encipherment=False), critical=True)
    if extended_key_usages:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(extended_key_usages)), critical=False
        )
    return Issued(builder.sign(_issuer_key(issuer), _HASH), key)


def create_crl(
    issuer: Issued,
    revoked: Sequence[tuple[int, x509.ReasonFlags | None, datetime]],
    next_update: timedelta = timedelta(days=7),
    last_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by `issuer` listing (serial, reason, revocation date) entries."""
    this_update = (last_update or datetime.now(UTC)).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + next_update)
        # Monotonic across re-issues by the same CA (seconds since the epoch).
        .add_extension(x509.CRLNumber(int(this_update.timestamp())), critical=False)
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
    )
    for serial, reason, revocation_date in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        entry = entry.revocation_date(revocation_date.replace(microsecond=0))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(_issuer_key(issuer), _HASH)


def write_certificates(path: str | os.PathLike[str], certs: Sequence[x509.Certificate]) -> None:
    """Write certificates as concatenated PEM (mode 0644), replacing the file atomically."""
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    _atomic_write(Path(path), data, 0o644)


def write_private_key(
    path: str | os.PathLike[str], key: PrivateKeyTypes, passphrase: bytes | None = None
) -> None:
    """Write a PKCS#8 PEM key (encrypted with `passphrase` if given), mode 0600 from creation."""
    if passphrase is not None and not passphrase:
        raise ValueError("an empty passphrase would leave the key unprotected")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _atomic_write(Path(path), data, 0o600)


def load_private_key(
    path: str | os.PathLike[str], passphrase: bytes | None = None
) -> PrivateKeyTypes:
    """The private key in a PEM file; ValueError naming the file (never its content) if not."""
    return private_key_from_pem(_read(Path(path)), passphrase, source=str(path))


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All PEM certificates in a file; ValueError naming the file if there is none or one is bad."""
    return certificates_from_pem(_read(Path(path)), source=str(path))


def certificates_from_pem(data: bytes, source: str = "PEM data") -> list[x509.Certificate]:
    """All certificates in PEM data (other PEM blocks are skipped); ValueError if none or bad."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{source}: no PEM certificate found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ValueError(f"{source}: invalid PEM certificate ({_first_line(exc)})") from None


def private_key_from_pem(
    data: bytes, passphrase: bytes | None = None, source: str = "PEM data"
) -> PrivateKeyTypes:
    """The private key in PEM data; ValueError (without key material) if it cannot be loaded."""
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        if passphrase is None:
            raise ValueError(
                f"{source}: the key is encrypted and no passphrase was given"
            ) from None
        raise ValueError(f"{source}: the key is not encrypted but a passphrase was given") from None
    except ValueError:
        raise ValueError(f"{source}: not a PEM private key, or the passphrase is wrong") from None
    except UnsupportedAlgorithm:
        raise ValueError(f"{source}: unsupported private key algorithm") from None


def key_weakness(key: object) -> str | None:
    """Why a public key is too weak (A00.FR.501-504), or None: RSA >= 2048 bits, EC >= 256 only."""
    if isinstance(key, rsa.RSAPublicKey):
        return _rsa_weakness(key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _ec_weakness(key.curve)
    return f"{type(key).__name__.lstrip('_')} (RSA or EC only)"


def key_kind_weakness(kind: str) -> str | None:
    """Why keys of `kind` are too weak, by `key_weakness`'s rule without making one, or None."""
    if kind in _CURVES:
        return _ec_weakness(_CURVES[kind]())
    if kind in KEY_KINDS and kind.startswith("rsa"):
        return _rsa_weakness(int(kind[3:]))
    raise ValueError(f"unknown key kind {kind!r} (one of {', '.join(KEY_KINDS)})")


def public_key_der(key: object) -> bytes:
    """SubjectPublicKeyInfo DER of a public key, to compare keys."""
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- internals ---------------------------------------------------------------------------------


def _rsa_weakness(bits: int) -> str | None:
    return None if bits >= MIN_RSA_BITS else f"RSA {bits} bits (< {MIN_RSA_BITS})"


def _ec_weakness(curve: ec.EllipticCurve) -> str | None:
    if curve.key_size >= MIN_EC_BITS:
        return None
    return f"EC {curve.name} {curve.key_size} bits (< {MIN_EC_BITS})"


def _name(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _organization_of(cert: x509.Certificate) -> str | None:
    values = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else None


def _validity(days: int) -> tuple[datetime, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now - CLOCK_SKEW, now + timedelta(days=days)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )


def _issued_builder(
    issuer: Issued,
    subject: x509.Name,
    public_key: CertificateIssuerPublicKeyTypes,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        _builder(subject, issuer.certificate.subject, public_key, not_before, not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
    )


def _authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(
    *, digital_signature: bool = False, key_encipherment: bool = False, ca: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _ca_key_usage() -> x509.KeyUsage:
    return _key_usage(ca=True)


def _leaf_key_usage(key_encipherment: bool) -> x509.KeyUsage:
    return _key_usage(digital_signature=True, key_encipherment=key_encipherment)


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _issuer_key(issuer: Issued) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = issuer.key
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError("the issuer needs its EC or RSA private key to sign")
    return key


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write to a fresh temp file in the same directory (created with `mode`), then rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we want (0644)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
