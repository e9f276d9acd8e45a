"""Certificate issuance (security/ca.py) against the OCPP 1.6 security whitepaper 2.6.1.

A00.FR.501-503 key sizes, A00.FR.506 SHA-256, A00.FR.507 PEM, A00.FR.508 serial number,
A00.FR.509 O in the subject, A00.FR.510 server CN = FQDN, A00.FR.511 charge point CN = serial,
A00.FR.512 KeyUsage, A00.FR.602 CA private keys well protected (0600, optional passphrase).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from security import ca

NOW = datetime.now(UTC)
T = TypeVar("T", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def root() -> ca.Issued:
    return ca.create_root_ca("CPO Root", "Example CPO")


@pytest.fixture(scope="module")
def issuing(root: ca.Issued) -> ca.Issued:
    return ca.create_issuing_ca(root, "CPO Issuing CA", "Example CPO")


@pytest.fixture(scope="module")
def client(issuing: ca.Issued) -> ca.Issued:
    return ca.issue_client_certificate(issuing, "CP-0001", "Example CPO")


def ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def attr(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


# -- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key_type", "bits"),
    [
        ("ec256", ec.EllipticCurvePrivateKey, 256),
        ("ec384", ec.EllipticCurvePrivateKey, 384),
        ("rsa1024", rsa.RSAPrivateKey, 1024),  # only to build weak certificates in tests
    ],
)
def test_generate_key_kinds(kind: ca.KeyKind, key_type: type, bits: int) -> None:
    key = ca.generate_key(kind)
    assert isinstance(key, key_type)
    size = key.curve.key_size if isinstance(key, ec.EllipticCurvePrivateKey) else key.key_size
    assert size == bits


def test_every_key_kind_is_known_and_unknown_kinds_are_refused() -> None:
    assert set(ca.KEY_KINDS) == {"ec256", "ec384", "rsa1024", "rsa2048", "rsa3072", "rsa4096"}
    with pytest.raises(ValueError, match="unknown key kind"):
        ca.generate_key("dsa2048")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "weak"),
    [("ec256", False), ("ec384", False), ("rsa1024", True)],
)
def test_key_weakness_A00_FR_502_503(kind: ca.KeyKind, weak: bool) -> None:
    """A00.FR.502: RSA >= 2048 bits; A00.FR.503/504: EC >= 256 bits (BSI)."""
    assert (ca.key_weakness(ca.generate_key(kind).public_key()) is not None) is weak


def test_key_weakness_refuses_small_curves_and_other_algorithms() -> None:
    assert "224" in (ca.key_weakness(ec.generate_private_key(ec.SECP224R1()).public_key()) or "")
    assert ca.key_weakness(ed25519.Ed25519PrivateKey.generate().public_key()) is not None


# -- CA hierarchy -------------------------------------------------------------------------------


def test_root_ca_is_self_signed_with_ca_extensions(root: ca.Issued) -> None:
    cert = root.certificate
    cert.verify_directly_issued_by(cert)
    assert attr(cert.subject, NameOID.COMMON_NAME) == ["CPO Root"]
    assert attr(cert.subject, NameOID.ORGANIZATION_NAME) == ["Example CPO"]  # A00.FR.509
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()  # type: ignore[arg-type]
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=3650)
    assert isinstance(root.key, ec.EllipticCurvePrivateKey)


def test_serial_numbers_are_random_positive_159_bit_A00_FR_508(
    root: ca.Issued, issuing: ca.Issued, client: ca.Issued
) -> None:
    serials = {c.certificate.serial_number for c in (root, issuing, client)}
    assert len(serials) == 3
    assert all(0 < s < 2**159 for s in serials)


def test_signatures_are_sha256_ecdsa_A00_FR_506(root: ca.Issued, client: ca.Issued) -> None:
    assert root.certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    assert client.certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256


def test_issuing_ca_has_path_length_zero_and_key_identifiers(
    root: ca.Issued, issuing: ca.Issued
) -> None:
    cert = issuing.certificate
    cert.verify_directly_issued_by(root.certificate)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ext(cert, x509.KeyUsage).value.key_cert_sign
    root_ski = ext(root.certificate, x509.SubjectKeyIdentifier).value
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value.digest != root_ski.digest


def test_an_issuer_without_private_key_cannot_sign(client: ca.Issued) -> None:
    csr_only = ca.Issued(client.certificate, None)
    with pytest.raises(TypeError, match="private key"):
        ca.issue_client_certificate(csr_only, "CP-0002")


# -- server certificates ------------------------------------------------------------------------


def test_server_certificate_A00_FR_510_sans_and_usages(issuing: ca.Issued) -> None:
    """CN = FQDN (A00.FR.510); SANs detect DNS vs IP; EC keys need digitalSignature only."""
    server = ca.issue_server_certificate(
        issuing, "csms.example.com", ["csms.example.com", "10.0.0.7", "::1"]
    )
    cert = server.certificate
    cert.verify_directly_issued_by(issuing.certificate)
    assert attr(cert.subject, NameOID.COMMON_NAME) == ["csms.example.com"]
    assert attr(cert.subject, NameOID.ORGANIZATION_NAME) == ["Example CPO"]  # from the issuer
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["csms.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
    assert ku.value.key_cert_sign is False
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=398)


def test_rsa_server_certificate_adds_key_encipherment_A00_FR_317(issuing: ca.Issued) -> None:
    """TLS_RSA_WITH_AES_*_GCM (A00.FR.317) encrypt to the server key: keyEncipherment."""
    server = ca.issue_server_certificate(
        issuing, "csms.example.com", [], key_kind="rsa2048", organization="Other"
    )
    assert isinstance(server.key, rsa.RSAPrivateKey) and server.key.key_size == 2048
    ku = ext(server.certificate, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert attr(server.certificate.subject, NameOID.ORGANIZATION_NAME) == ["Other"]
    with pytest.raises(x509.ExtensionNotFound):
        ext(server.certificate, x509.SubjectAlternativeName)


def test_rsa_issuer_signs_with_sha256_pkcs1() -> None:
    root = ca.create_root_ca("RSA Root", "Example CPO", key_kind="rsa1024")  # fast; weak is fine
    leaf = ca.issue_client_certificate(root, "CP-0001", "Example CPO")
    assert leaf.certificate.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    leaf.certificate.verify_directly_issued_by(root.certificate)


# -- charge point certificates ------------------------------------------------------------------


def test_client_certificate_A00_FR_511_cn_is_serial_o_is_cpo(
    issuing: ca.Issued, client: ca.Issued
) -> None:
    cert = client.certificate
    cert.verify_directly_issued_by(issuing.certificate)
    assert attr(cert.subject, NameOID.COMMON_NAME) == ["CP-0001"]
    assert attr(cert.subject, NameOID.ORGANIZATION_NAME) == ["Example CPO"]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = ext(cert, x509.KeyUsage)  # A00.FR.512
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment)
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    issuing_ski = ext(issuing.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuing_ski
    assert isinstance(client.key, ec.EllipticCurvePrivateKey)


def test_client_certificate_explicit_validity_and_no_organization(issuing: ca.Issued) -> None:
    before, after = NOW - timedelta(days=30), NOW - timedelta(days=1)
    cert = ca.issue_client_certificate(
        issuing, "CP-0002", not_before=before, not_after=after
    ).certificate
    assert cert.not_valid_before_utc == before.replace(microsecond=0)
    assert cert.not_valid_after_utc == after.replace(microsecond=0)
    assert attr(cert.subject, NameOID.ORGANIZATION_NAME) == []


def test_client_certificate_extended_key_usages(issuing: ca.Issued) -> None:
    none = ca.issue_client_certificate(issuing, "CP-0003", extended_key_usages=())
    with pytest.raises(x509.ExtensionNotFound):
        ext(none.certificate, x509.ExtendedKeyUsage)
    server_only = ca.issue_client_certificate(
        issuing, "CP-0003", extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,)
    )
    assert list(ext(server_only.certificate, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]


def test_client_certificate_for_a_csr_public_key(issuing: ca.Issued) -> None:
    """SignCertificate: the charge point keeps its key; only the CSR's public key is signed."""
    cp_key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_client_certificate(
        issuing, "CP-0004", "Example CPO", public_key=cp_key.public_key()
    )
    assert issued.key is None
    assert ca.public_key_der(issued.certificate.public_key()) == ca.public_key_der(
        cp_key.public_key()
    )


# -- CRLs ---------------------------------------------------------------------------------------


def test_create_crl_lists_serials_with_reasons(issuing: ca.Issued, client: ca.Issued) -> None:
    revoked_at = NOW - timedelta(hours=1)
    last = NOW - timedelta(minutes=1)
    crl = ca.create_crl(
        issuing,
        [
            (client.certificate.serial_number, x509.ReasonFlags.key_compromise, revoked_at),
            (12345, None, revoked_at),
        ],
        next_update=timedelta(days=1),
        last_update=last,
    )
    assert crl.issuer == issuing.certificate.subject
    assert crl.is_signature_valid(issuing.certificate.public_key())  # type: ignore[arg-type]
    assert crl.last_update_utc == last.replace(microsecond=0)
    assert crl.next_update_utc == last.replace(microsecond=0) + timedelta(days=1)
    entry = crl.get_revoked_certificate_by_serial_number(client.certificate.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == revoked_at.replace(microsecond=0)
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    plain = crl.get_revoked_certificate_by_serial_number(12345)
    assert plain is not None and len(plain.extensions) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > 0
    assert crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_create_crl_defaults_to_now_and_a_week(issuing: ca.Issued) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    crl = ca.create_crl(issuing, [])
    assert len(crl) == 0
    assert before <= crl.last_update_utc <= datetime.now(UTC)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=7)


# -- files --------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_and_load_certificates_pem_0644_A00_FR_507(
    tmp_path: Path, root: ca.Issued, issuing: ca.Issued
) -> None:
    path = tmp_path / "chain.pem"
    old_umask = os.umask(0o077)
    try:
        ca.write_certificates(path, [issuing.certificate, root.certificate])
    finally:
        os.umask(old_umask)
    assert mode(path) == 0o644
    assert path.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 2
    assert ca.load_certificates(path) == [issuing.certificate, root.certificate]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.pem"]  # no temp file left


def test_write_private_key_is_0600_from_creation_A00_FR_602(
    tmp_path: Path, client: ca.Issued
) -> None:
    path = tmp_path / "cp.key"
    path.write_text("old")
    path.chmod(0o644)  # replacing a readable file must not keep its mode
    assert client.key is not None
    ca.write_private_key(path, client.key)
    assert mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    loaded = ca.load_private_key(path)
    assert ca.public_key_der(loaded.public_key()) == ca.public_key_der(client.key.public_key())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp.key"]


def test_write_private_key_encrypted_with_a_passphrase(tmp_path: Path, client: ca.Issued) -> None:
    path = tmp_path / "cp.key"
    assert client.key is not None
    ca.write_private_key(path, client.key, passphrase=b"correct horse")
    assert mode(path) == 0o600
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = ca.load_private_key(path, passphrase=b"correct horse")
    assert ca.public_key_der(loaded.public_key()) == ca.public_key_der(client.key.public_key())
    with pytest.raises(ValueError, match="no passphrase") as missing:
        ca.load_private_key(path)
    assert str(path) in str(missing.value)
    with pytest.raises(ValueError, match="passphrase is wrong") as wrong:
        ca.load_private_key(path, passphrase=b"wrong")
    assert "PRIVATE KEY" not in str(wrong.value)  # no key material in errors
    with pytest.raises(ValueError, match="empty passphrase"):
        ca.write_private_key(path, client.key, passphrase=b"")
    assert ca.load_private_key(path, passphrase=b"correct horse")  # left as it was


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=re.escape(f"{missing}: cannot read")):
        ca.load_certificates(missing)
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(ValueError, match=re.escape(f"{empty}: no PEM certificate")):
        ca.load_certificates(empty)
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=re.escape(f"{broken}: invalid PEM certificate")):
        ca.load_certificates(broken)
    with pytest.raises(ValueError, match=re.escape(f"{broken}: not a PEM private key")):
        ca.load_private_key(broken)
