"""The security profile 3 client certificate check (security/certcheck.py).

OCPP 1.6 security whitepaper 2.5.1 (2.0.1 part 2 A00 is the same): A00.FR.403 certification path
(RFC 5280 section 6), A00.FR.404 O = CPO name, A00.FR.405 CN = charge point serial number,
A00.FR.407 terminate when the certificate is not valid; 2.6.1 A00.FR.502-504 key strength;
2.6.3 A00.FR.702/704 revocation. 2.0.1 part 6: TC_A_07_CSMS (valid) and TC_A_08_CSMS (unknown,
expired, commonName not the serial number).

EKU: the whitepaper says nothing about ExtendedKeyUsage (A00.FR.512 only asks KeyUsage to restrict
use); the gateway requires clientAuth to be listed, and an absent EKU is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from security import ca
from security.castore import CaStore
from security.certcheck import (
    REJECT_REASONS,
    CertAccepted,
    CertRejected,
    check_client_certificate,
)

NOW = datetime.now(UTC).replace(microsecond=0)
CN, ORG = "CP-0001", "Example CPO"


class Pki:
    """root -> issuing CA -> charge points, plus a foreign hierarchy with the same names."""

    def __init__(self) -> None:
        self.root = ca.create_root_ca("CPO Root", ORG)
        self.issuing = ca.create_issuing_ca(self.root, "CPO Issuing CA", ORG)
        self.leaf = ca.issue_client_certificate(self.issuing, CN, ORG)
        self.foreign_root = ca.create_root_ca("CPO Root", ORG)
        self.foreign_issuing = ca.create_issuing_ca(self.foreign_root, "CPO Issuing CA", ORG)
        self.store = CaStore(
            anchors=(self.root.certificate,),
            intermediates=(self.issuing.certificate,),
            crls=(),
            fingerprint="test",
        )

    def client(self, cn: str = CN, o: str | None = ORG, **kwargs: object) -> x509.Certificate:
        return ca.issue_client_certificate(self.issuing, cn, o, **kwargs).certificate  # type: ignore[arg-type]

    def with_crls(self, *crls: x509.CertificateRevocationList) -> CaStore:
        return CaStore(self.store.anchors, self.store.intermediates, crls, "test+crl")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def der(*certs: x509.Certificate) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def check(
    chain: Sequence[bytes],
    store: CaStore,
    now: datetime = NOW,
    cn: str = CN,
    o: str | None = ORG,
) -> CertAccepted | CertRejected:
    return check_client_certificate(chain, store, now, cn, o)


def rejected(result: CertAccepted | CertRejected, reason: str) -> str:
    assert isinstance(result, CertRejected), result
    assert result.reason == reason, result
    assert result.reason in REJECT_REASONS
    return result.detail


# -- accepted -----------------------------------------------------------------------------------


def test_valid_ec_certificate_is_accepted_TC_A_07_CSMS(pki: Pki) -> None:
    result = check(der(pki.leaf.certificate), pki.store)
    assert result == CertAccepted(
        serial=pki.leaf.certificate.serial_number,
        subject=f"O={ORG},CN={CN}",
        not_after=pki.leaf.certificate.not_valid_after_utc,
        issuer=f"O={ORG},CN=CPO Issuing CA",
    )


def test_valid_rsa_2048_certificate_is_accepted_A00_FR_502(pki: Pki) -> None:
    assert isinstance(check(der(pki.client(key_kind="rsa2048")), pki.store), CertAccepted)


def test_issuing_ca_sent_by_the_client_and_not_in_the_store_A00_FR_403(pki: Pki) -> None:
    anchors_only = CaStore((pki.root.certificate,), (), (), "anchors-only")
    assert isinstance(check(der(pki.leaf.certificate), anchors_only), CertRejected)
    result = check(der(pki.leaf.certificate, pki.issuing.certificate), anchors_only)
    assert isinstance(result, CertAccepted)


def test_issuing_ca_only_in_the_store(pki: Pki) -> None:
    """After TLS session resumption only the leaf may be known: the store completes the chain."""
    assert isinstance(check(der(pki.leaf.certificate), pki.store), CertAccepted)


def test_client_may_also_send_the_root(pki: Pki) -> None:
    chain = der(pki.leaf.certificate, pki.issuing.certificate, pki.root.certificate)
    assert isinstance(check(chain, pki.store), CertAccepted)


def test_organization_is_not_checked_without_an_expected_o(pki: Pki) -> None:
    assert isinstance(check(der(pki.client(o="Other")), pki.store, o=None), CertAccepted)
    assert isinstance(check(der(pki.client(o=None)), pki.store, o=None), CertAccepted)


def test_a_naive_now_is_utc(pki: Pki) -> None:
    naive = NOW.replace(tzinfo=None)
    assert isinstance(check(der(pki.leaf.certificate), pki.store, now=naive), CertAccepted)


# -- cert_untrusted (A00.FR.403, A00.FR.407, TC_A_08_CSMS unknown certificate) --------------------


def test_unknown_ca_is_untrusted_TC_A_08_CSMS(pki: Pki) -> None:
    foreign = ca.issue_client_certificate(pki.foreign_issuing, CN, ORG).certificate
    detail = rejected(
        check(der(foreign, pki.foreign_issuing.certificate), pki.store), "cert_untrusted"
    )
    assert f"serial=0x{foreign.serial_number:x}" in detail
    chain = der(foreign, pki.foreign_issuing.certificate, pki.foreign_root.certificate)
    rejected(check(chain, pki.store), "cert_untrusted")


def test_self_signed_client_certificate_is_untrusted(pki: Pki) -> None:
    rejected(check(der(pki.foreign_root.certificate), pki.store), "cert_untrusted")


def test_partial_chain_is_untrusted(pki: Pki) -> None:
    """An issuing CA as the only anchor: the path must end at a self-signed root."""
    partial = CaStore((pki.issuing.certificate,), (), (), "partial")
    rejected(check(der(pki.leaf.certificate), partial), "cert_untrusted")


def test_empty_store_and_empty_chain_are_untrusted(pki: Pki) -> None:
    rejected(check(der(pki.leaf.certificate), CaStore((), (), (), "empty")), "cert_untrusted")
    assert "no client certificate" in rejected(check([], pki.store), "cert_untrusted")


def test_expired_issuing_ca_makes_the_path_untrusted(pki: Pki) -> None:
    """A path CA out of its validity is a broken path (untrusted), not an expired leaf."""
    short_ca = ca.create_issuing_ca(pki.root, "Short-lived CA", ORG, days=30)
    leaf = ca.issue_client_certificate(
        short_ca, CN, ORG, not_before=NOW, not_after=NOW + timedelta(days=90)
    ).certificate
    chain = der(leaf, short_ca.certificate)
    assert isinstance(check(chain, pki.store), CertAccepted)
    detail = rejected(check(chain, pki.store, now=NOW + timedelta(days=60)), "cert_untrusted")
    assert "Short-lived CA" in detail and "expired" in detail


def test_foreign_expired_certificate_is_untrusted_not_expired(pki: Pki) -> None:
    """A bad path wins over dates: an unknown certificate tells nothing about its dates."""
    foreign = ca.issue_client_certificate(
        pki.foreign_issuing,
        CN,
        ORG,
        not_before=NOW - timedelta(days=30),
        not_after=NOW - timedelta(days=1),
    ).certificate
    rejected(check(der(foreign, pki.foreign_issuing.certificate), pki.store), "cert_untrusted")


# -- validity period (A00.FR.407, TC_A_08_CSMS expired certificate) ------------------------------


def test_expired_certificate_from_the_right_ca_TC_A_08_CSMS(pki: Pki) -> None:
    expired = pki.client(not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    detail = rejected(check(der(expired), pki.store), "cert_expired")
    assert expired.not_valid_after_utc.isoformat() in detail


def test_not_yet_valid_certificate(pki: Pki) -> None:
    future = pki.client(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30))
    rejected(check(der(future), pki.store), "cert_not_yet_valid")


def test_validity_is_judged_at_the_given_time(pki: Pki) -> None:
    leaf = pki.leaf.certificate
    later = leaf.not_valid_after_utc + timedelta(seconds=1)
    rejected(check(der(leaf), pki.store, now=later), "cert_expired")
    later_leaf = pki.client(not_before=NOW + timedelta(hours=1), not_after=NOW + timedelta(days=9))
    rejected(check(der(later_leaf), pki.store), "cert_not_yet_valid")
    at_start = NOW + timedelta(hours=1)
    assert isinstance(check(der(later_leaf), pki.store, now=at_start), CertAccepted)


def test_expired_wins_over_other_leaf_problems(pki: Pki) -> None:
    expired = pki.client(
        cn="someone-else",
        not_before=NOW - timedelta(days=30),
        not_after=NOW - timedelta(days=1),
        extended_key_usages=(),
    )
    rejected(check(der(expired), pki.store), "cert_expired")


# -- cert_revoked (A00.FR.702, A00.FR.704) -------------------------------------------------------


def test_revoked_certificate_A00_FR_704(pki: Pki) -> None:
    leaf = pki.client()
    crl = ca.create_crl(
        pki.issuing,
        [(leaf.serial_number, x509.ReasonFlags.key_compromise, NOW - timedelta(hours=1))],
    )
    detail = rejected(check(der(leaf), pki.with_crls(crl)), "cert_revoked")
    assert "keyCompromise" in detail and f"0x{leaf.serial_number:x}" in detail
    assert isinstance(check(der(pki.leaf.certificate), pki.with_crls(crl)), CertAccepted)


def test_a_crl_past_its_next_update_still_revokes(pki: Pki) -> None:
    leaf = pki.client()
    stale = ca.create_crl(
        pki.issuing,
        [(leaf.serial_number, None, NOW - timedelta(days=20))],
        next_update=timedelta(days=7),
        last_update=NOW - timedelta(days=10),
    )
    assert stale.next_update_utc is not None and stale.next_update_utc < NOW
    rejected(check(der(leaf), pki.with_crls(stale)), "cert_revoked")


def test_a_revoked_issuing_ca_revokes_its_leaves(pki: Pki) -> None:
    root_crl = ca.create_crl(pki.root, [(pki.issuing.certificate.serial_number, None, NOW)])
    detail = rejected(check(der(pki.leaf.certificate), pki.with_crls(root_crl)), "cert_revoked")
    assert "issuing CA" in detail


def test_a_crl_from_another_issuer_does_not_revoke(pki: Pki) -> None:
    """Same issuer name, foreign key: the CRL signature is checked against the real issuer."""
    leaf = pki.client()
    forged = ca.create_crl(pki.foreign_issuing, [(leaf.serial_number, None, NOW)])
    by_root = ca.create_crl(pki.root, [(leaf.serial_number, None, NOW)])
    assert isinstance(check(der(leaf), pki.with_crls(forged, by_root)), CertAccepted)


# -- cert_weak_key (A00.FR.501-504) -------------------------------------------------------------


def test_rsa_1024_is_weak_A00_FR_502(pki: Pki) -> None:
    detail = rejected(check(der(pki.client(key_kind="rsa1024")), pki.store), "cert_weak_key")
    assert "RSA 1024 bits" in detail


def test_ec_224_is_weak_A00_FR_503_504(pki: Pki) -> None:
    """A00.FR.503 allows 224 bits, BSI (A00.FR.504) asks >= 250: P-224 is refused."""
    key = ec.generate_private_key(ec.SECP224R1()).public_key()
    detail = rejected(check(der(pki.client(public_key=key)), pki.store), "cert_weak_key")
    assert "secp224r1" in detail


def test_other_key_algorithms_are_refused(pki: Pki) -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    rejected(check(der(pki.client(public_key=key)), pki.store), "cert_weak_key")


def test_a_weak_ca_key_in_the_path_is_refused_A00_FR_501(pki: Pki) -> None:
    weak_ca = ca.create_issuing_ca(pki.root, "Weak CA", ORG, key_kind="rsa1024")
    leaf = ca.issue_client_certificate(weak_ca, CN, ORG).certificate
    detail = rejected(check(der(leaf, weak_ca.certificate), pki.store), "cert_weak_key")
    assert "Weak CA" in detail


# -- cert_no_client_auth ------------------------------------------------------------------------


def test_eku_without_client_auth_is_refused(pki: Pki) -> None:
    server_only = pki.client(extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,))
    detail = rejected(check(der(server_only), pki.store), "cert_no_client_auth")
    assert "serverAuth" in detail


def test_absent_eku_is_refused(pki: Pki) -> None:
    rejected(check(der(pki.client(extended_key_usages=())), pki.store), "cert_no_client_auth")


def test_any_extended_key_usage_alone_is_not_client_auth(pki: Pki) -> None:
    anything = pki.client(extended_key_usages=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,))
    rejected(check(der(anything), pki.store), "cert_no_client_auth")


def test_client_auth_among_other_usages_is_fine(pki: Pki) -> None:
    both = pki.client(
        extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    assert isinstance(check(der(both), pki.store), CertAccepted)


# -- subject (A00.FR.404, A00.FR.405, TC_A_08_CSMS commonName) -----------------------------------


def test_cn_must_equal_the_identity_A00_FR_405_TC_A_08_CSMS(pki: Pki) -> None:
    detail = rejected(check(der(pki.leaf.certificate), pki.store, cn="CP-0002"), "cert_cn_mismatch")
    assert "'CP-0001'" in detail and "'CP-0002'" in detail


def test_cn_comparison_is_exact(pki: Pki) -> None:
    rejected(check(der(pki.leaf.certificate), pki.store, cn="cp-0001"), "cert_cn_mismatch")
    rejected(check(der(pki.leaf.certificate), pki.store, cn="CP-000"), "cert_cn_mismatch")


def test_o_must_equal_the_cpo_A00_FR_404(pki: Pki) -> None:
    rejected(check(der(pki.leaf.certificate), pki.store, o="Other CPO"), "cert_o_mismatch")
    rejected(check(der(pki.client(o=None)), pki.store), "cert_o_mismatch")


def test_cn_is_checked_before_o(pki: Pki) -> None:
    result = check(der(pki.leaf.certificate), pki.store, cn="CP-0002", o="Other CPO")
    rejected(result, "cert_cn_mismatch")


# -- cert_malformed -----------------------------------------------------------------------------


def test_unparseable_leaf_is_malformed(pki: Pki) -> None:
    rejected(check([b"\x30\x03\x02\x01\x01"], pki.store), "cert_malformed")
    truncated = der(pki.leaf.certificate)[0][:-10]
    rejected(check([truncated], pki.store), "cert_malformed")


def test_unparseable_chain_certificate_is_malformed(pki: Pki) -> None:
    detail = rejected(check([*der(pki.leaf.certificate), b"junk"], pki.store), "cert_malformed")
    assert "chain certificate #2" in detail


# -- details are safe to log --------------------------------------------------------------------


def test_details_escape_control_characters_and_carry_no_key_material(pki: Pki) -> None:
    sneaky = pki.client(cn="CP-0001\nlevel=INFO forged=1")
    detail = rejected(check(der(sneaky), pki.store), "cert_cn_mismatch")
    assert "\n" not in detail and "\\n" in detail
    assert f"serial=0x{sneaky.serial_number:x}" in detail
    assert "issuer=O=Example CPO,CN=CPO Issuing CA" in detail
    assert "PRIVATE" not in detail and "BEGIN" not in detail


def test_every_reason_is_covered() -> None:
    assert set(REJECT_REASONS) == {
        "cert_untrusted",
        "cert_expired",
        "cert_not_yet_valid",
        "cert_revoked",
        "cert_no_client_auth",
        "cert_weak_key",
        "cert_cn_mismatch",
        "cert_o_mismatch",
        "cert_malformed",
    }
