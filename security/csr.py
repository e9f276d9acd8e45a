"""The policy for certificate signing requests (OCPP SignCertificate, and `ca sign-csr`).

A CSR is signed only if: it parses (PEM), its self-signature verifies, the subject CN equals the
charge point's expected CN and O equals the CPO name (1.6 security whitepaper A00.FR.511/509,
2.0.1 A02.FR.*), the key is RSA >= 2048 or EC >= 256 bits (A00.FR.501-504), and it asks for no CA
powers (no BasicConstraints CA:TRUE, no keyCertSign/cRLSign).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from .ca import key_weakness

MAX_CSR_BYTES = 5500  # 2.0.1 SignCertificateRequest.csr is string[0..5500]


@dataclass(frozen=True, slots=True)
class CsrAccepted:
    """A CSR that may be signed."""

    csr: x509.CertificateSigningRequest
    common_name: str
    organization: str | None


@dataclass(frozen=True, slots=True)
class CsrRejected:
    """Why a CSR is refused (`reason` is a stable code for security events)."""

    reason: str
    detail: str


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if len(values) == 1 else None


def check_csr(
    pem: str | bytes, expected_cn: str, expected_o: str | None
) -> CsrAccepted | CsrRejected:
    """Apply the signing policy to a PEM CSR."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CSR_BYTES * 2:
        return CsrRejected("csr_malformed", "the CSR is too large")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        return CsrRejected("csr_malformed", f"not a PEM certificate signing request ({exc})"[:200])
    try:
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        return CsrRejected("csr_malformed", f"unreadable CSR content ({exc})"[:200])
    if not signature_ok:
        return CsrRejected("csr_bad_signature", "the CSR's signature does not verify")
    weakness = key_weakness(public_key)
    if weakness is not None:
        return CsrRejected("csr_weak_key", weakness)
    for extension in extensions:
        value = extension.value
        if extension.oid == ExtensionOID.BASIC_CONSTRAINTS and value.ca:
            return CsrRejected("csr_requests_ca", "the CSR asks for CA:TRUE")
        if extension.oid == ExtensionOID.KEY_USAGE and (value.key_cert_sign or value.crl_sign):
            return CsrRejected("csr_requests_ca", "the CSR asks for certificate or CRL signing")
    common_name = _attribute(csr.subject, NameOID.COMMON_NAME)
    if common_name != expected_cn:
        return CsrRejected(
            "csr_cn_mismatch", f"subject CN {common_name!r} is not the expected {expected_cn!r}"
        )
    organization = _attribute(csr.subject, NameOID.ORGANIZATION_NAME)
    if expected_o is not None and organization != expected_o:
        return CsrRejected(
            "csr_o_mismatch", f"subject O {organization!r} is not the CPO name {expected_o!r}"
        )
    return CsrAccepted(csr, common_name, organization)
