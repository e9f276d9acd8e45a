"""The security-profile policy (security/policy.py): Basic auth parsing and the Authenticator.

1.6 security whitepaper: profile 1 A00.FR.202-205 (HTTP Basic, username = identity, the
AuthorizationKey as password), profile 2 A00.FR.301-304 (the same over TLS), profile 3
A00.FR.401-408 (client certificate: path A00.FR.403, O A00.FR.404, CN A00.FR.405, terminate
A00.FR.407, security event A00.FR.408); A05.FR.09 no lower profile once connected with a higher
one. 2.0.1 part 6: TC_A_01_CSMS (valid), TC_A_02_CSMS (username != identity), TC_A_03_CSMS (bad
password), TC_A_07_CSMS (valid client certificate), TC_A_08_CSMS (unknown, expired, wrong CN).
"""

from __future__ import annotations

import base64
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from security import ca
from security.castore import CaStore, load_ca_store
from security.certcheck import CertAccepted
from security.devcerts import ensure_dev_certificates
from security.passwords import hash_password, password_bytes_v2, password_bytes_v16
from security.policy import (
    UNAUTHORIZED_BODY,
    UNAUTHORIZED_HEADERS,
    Admitted,
    Authenticator,
    ConnectionFacts,
    PolicySettings,
    Refused,
    Verdict,
    parse_basic_auth,
)
from security.records import ChargePointRecord, InMemoryRecordStore
from security.throttle import FailureLimiter

NOW = time.time()
CPO = "Example CPO"
PASSWORD = password_bytes_v2("Zq8Kp3Lm9Wx2Rt5Vb7Hs4Nd6")  # 2.0.1 BasicAuthPassword
AUTH_KEY = password_bytes_v16("00ff" + "a5" * 18)  # 1.6 AuthorizationKey: 20 raw bytes
OTHER_PASSWORD = password_bytes_v2("Wrong-Password-0000")
IP = "192.0.2.10"

RECORDS = (
    ChargePointRecord("CP-0", security_profile=0),
    ChargePointRecord("CP-1", security_profile=1, password_hash=hash_password(PASSWORD)),
    ChargePointRecord("CP-16", security_profile=1, password_hash=hash_password(AUTH_KEY)),
    ChargePointRecord("CP-2", security_profile=2, password_hash=hash_password(PASSWORD)),
    ChargePointRecord("CP-3", security_profile=3, expected_o=CPO),
    ChargePointRecord("CP-3-any-o", security_profile=3),
    ChargePointRecord("CP-3-serial", security_profile=3, expected_cn="SERIAL-3"),
    ChargePointRecord(
        "CP-off", security_profile=1, password_hash=hash_password(PASSWORD), enabled=False
    ),
    ChargePointRecord("CP-nohash", security_profile=1),
    # A hand-edited records file: the hash is not even ASCII.
    ChargePointRecord("CP-badhash", security_profile=1, password_hash="$argon2id$v=19$é"),
)


def basic(username: str | bytes, password: bytes) -> bytes:
    user = username.encode() if isinstance(username, str) else username
    return b"Basic " + base64.b64encode(user + b":" + password)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# -- parse_basic_auth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic("CP-1", b"secret"), (b"CP-1", b"secret")),
        (b"basic " + base64.b64encode(b"CP-1:secret"), (b"CP-1", b"secret")),
        (b"BASIC " + base64.b64encode(b"CP-1:secret"), (b"CP-1", b"secret")),
        (b"  Basic   " + base64.b64encode(b"CP-1:secret") + b"  ", (b"CP-1", b"secret")),
        (basic("CP-1", b"pa:ss:word"), (b"CP-1", b"pa:ss:word")),
        (basic("CP-1", b""), (b"CP-1", b"")),
        (basic("CP-1", AUTH_KEY), (b"CP-1", AUTH_KEY)),
        (basic("CP-1", b"\x00\xff:\x80"), (b"CP-1", b"\x00\xff:\x80")),
    ],
    ids=[
        "valid",
        "lower-scheme",
        "upper-scheme",
        "extra-spaces",
        "colon-in-password",
        "empty-password",
        "v16-raw-key",
        "binary-with-colon",
    ],
)
def test_basic_auth_yields_username_and_password_bytes(
    header: bytes, expected: tuple[bytes, bytes]
) -> None:
    """A00.FR.202/203: HTTP Basic (RFC 7617), the password is everything after the first ':'."""
    assert parse_basic_auth(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Basic",
        b"Basic " + base64.b64encode(b"no-colon-here"),
        b"Basic !!!not-base64!!!",
        b"Basic " + base64.b64encode(b"CP-1:secret")[:-2],  # broken padding
        b"Bearer " + base64.b64encode(b"CP-1:secret"),
        b"Digest username=CP-1",
        b"Basicx " + base64.b64encode(b"CP-1:secret"),
        base64.b64encode(b"CP-1:secret"),
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "missing-colon",
        "invalid-base64",
        "bad-padding",
        "bearer",
        "digest",
        "other-scheme-prefix",
        "no-scheme",
    ],
)
def test_not_a_basic_auth_header_yields_none(header: bytes | None) -> None:
    assert parse_basic_auth(header) is None


# -- fixtures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """The dev CA store and charge point certificates issued by its issuing CA (and a foreign)."""

    directory: Path
    issuing: ca.Issued
    store: CaStore
    certs: dict[str, tuple[bytes, ...]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("certs")
    dev = ensure_dev_certificates(directory, "localhost")
    assert dev is not None
    issuing = dev.issuing
    now = datetime.fromtimestamp(NOW, UTC)
    foreign_root = ca.create_root_ca("Foreign Root", CPO)
    foreign_issuing = ca.create_issuing_ca(foreign_root, "Foreign Issuing", CPO)
    leaves = {
        "good": (issuing, ca.issue_client_certificate(issuing, "CP-3", CPO)),
        "serial": (issuing, ca.issue_client_certificate(issuing, "SERIAL-3", CPO)),
        "any_o": (issuing, ca.issue_client_certificate(issuing, "CP-3-any-o", "Any O")),
        "wrong_cn": (issuing, ca.issue_client_certificate(issuing, "CP-1", CPO)),
        "wrong_o": (issuing, ca.issue_client_certificate(issuing, "CP-3", "Other CPO")),
        "expired": (
            issuing,
            ca.issue_client_certificate(
                issuing,
                "CP-3",
                CPO,
                not_before=now - timedelta(days=30),
                not_after=now - timedelta(days=1),
            ),
        ),
        "foreign": (foreign_issuing, ca.issue_client_certificate(foreign_issuing, "CP-3", CPO)),
    }
    certs = {
        name: (der(leaf.certificate), der(issuer.certificate))
        for name, (issuer, leaf) in leaves.items()
    }
    return Pki(directory, issuing, load_ca_store(directory), certs)


@dataclass
class World:
    """An Authenticator over in-memory records, a real limiter, a fake clock and a CA store."""

    pki: Pki
    settings: PolicySettings = field(default_factory=PolicySettings)
    max_failures: int = 3
    t: list[float] = field(default_factory=lambda: [NOW])
    records: InMemoryRecordStore = field(default_factory=lambda: InMemoryRecordStore(RECORDS))

    def __post_init__(self) -> None:
        self.store = self.pki.store
        self.limiter = FailureLimiter(self.max_failures, window_s=60, lockout_s=300)
        self.auth = Authenticator(
            self.records, lambda: self.store, self.settings, self.limiter, clock=lambda: self.t[0]
        )

    def attempt(
        self,
        identity: str,
        *,
        secure: bool = False,
        authorization: bytes | None = None,
        cert: str | None = None,
        ip: str = IP,
    ) -> Verdict:
        chain = self.pki.certs[cert] if cert else ()
        return self.auth.authenticate(
            ConnectionFacts(
                identity, secure, ip, authorization, chain, "TLSv1.3" if secure else None
            )
        )


@pytest.fixture
def world(pki: Pki) -> World:
    return World(pki)


@dataclass(frozen=True)
class Attempt:
    identity: str
    secure: bool = False
    authorization: bytes | None = None
    cert: str | None = None


def refused(verdict: Verdict) -> Refused:
    assert isinstance(verdict, Refused), verdict
    return verdict


def assert_uniform_401(verdict: Verdict) -> None:
    """Every 401 looks the same to the client: status, headers and body (reason stays internal)."""
    refusal = refused(verdict)
    assert (refusal.status, refusal.headers, refusal.body) == (
        401,
        UNAUTHORIZED_HEADERS,
        UNAUTHORIZED_BODY,
    )


# -- accepted -----------------------------------------------------------------------------------

ACCEPTED = {
    "profile0-ws": Attempt("CP-0"),
    "profile0-wss": Attempt("CP-0", secure=True),
    "profile0-ignores-credentials": Attempt("CP-0", authorization=basic("CP-0", OTHER_PASSWORD)),
    "profile1-ws-TC_A_01": Attempt("CP-1", authorization=basic("CP-1", PASSWORD)),
    "profile1-wss-is-an-upgrade": Attempt("CP-1", True, basic("CP-1", PASSWORD)),
    "profile1-v16-raw-key-A00.FR.205": Attempt("CP-16", authorization=basic("CP-16", AUTH_KEY)),
    "profile2-wss-TC_A_01": Attempt("CP-2", True, basic("CP-2", PASSWORD)),
    "profile3-TC_A_07": Attempt("CP-3", True, cert="good"),
    "profile3-without-expected-o": Attempt("CP-3-any-o", True, cert="any_o"),
    "profile3-expected-cn": Attempt("CP-3-serial", True, cert="serial"),
}


@pytest.mark.parametrize("case", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_profile_admits_its_valid_connection(world: World, case: Attempt) -> None:
    verdict = world.attempt(
        case.identity, secure=case.secure, authorization=case.authorization, cert=case.cert
    )
    assert isinstance(verdict, Admitted), verdict
    assert verdict.record == world.records.get(case.identity)
    if verdict.record.security_profile == 3:
        assert isinstance(verdict.certificate, CertAccepted)
        leaf = x509.load_der_x509_certificate(world.pki.certs[str(case.cert)][0])
        assert verdict.certificate.serial == leaf.serial_number
    else:
        assert verdict.certificate is None


# -- refused ------------------------------------------------------------------------------------

REFUSED = {
    "unknown-identity": (
        Attempt("CP-nope", True, basic("CP-nope", PASSWORD)),
        "unknown_or_bad_credentials",
    ),
    "unknown-identity-ws": (Attempt("CP-nope"), "unknown_or_bad_credentials"),
    "profile1-wrong-password-TC_A_03": (
        Attempt("CP-1", authorization=basic("CP-1", OTHER_PASSWORD)),
        "unknown_or_bad_credentials",
    ),
    "profile2-wrong-password-TC_A_03": (
        Attempt("CP-2", True, basic("CP-2", OTHER_PASSWORD)),
        "unknown_or_bad_credentials",
    ),
    "profile1-v16-key-as-hex-text": (
        Attempt("CP-16", authorization=basic("CP-16", ("00ff" + "a5" * 18).encode())),
        "unknown_or_bad_credentials",
    ),
    "profile1-record-without-hash": (
        Attempt("CP-nohash", authorization=basic("CP-nohash", PASSWORD)),
        "unknown_or_bad_credentials",
    ),
    "profile1-corrupt-hash-in-record": (
        Attempt("CP-badhash", authorization=basic("CP-badhash", PASSWORD)),
        "unknown_or_bad_credentials",
    ),
    "profile1-no-authorization-A00.FR.203": (Attempt("CP-1"), "missing_credentials"),
    "profile2-no-authorization-A00.FR.302": (Attempt("CP-2", True), "missing_credentials"),
    "profile1-bearer": (
        Attempt("CP-1", authorization=b"Bearer " + base64.b64encode(b"CP-1:" + PASSWORD)),
        "missing_credentials",
    ),
    "profile1-bad-base64": (
        Attempt("CP-1", authorization=b"Basic ***"),
        "missing_credentials",
    ),
    "profile1-username-mismatch-TC_A_02": (
        Attempt("CP-1", authorization=basic("CP-1Invalid", PASSWORD)),
        "username_mismatch",
    ),
    "profile2-username-other-case-A00.FR.303": (
        Attempt("CP-2", True, basic("cp-2", PASSWORD)),
        "username_mismatch",
    ),
    "disabled-record-right-password": (
        Attempt("CP-off", authorization=basic("CP-off", PASSWORD)),
        "record_disabled",
    ),
    "profile2-over-ws-right-password": (
        Attempt("CP-2", authorization=basic("CP-2", PASSWORD)),
        "downgrade_attempt",
    ),
    "profile3-over-ws": (Attempt("CP-3"), "downgrade_attempt"),
    "profile3-over-ws-with-password": (
        Attempt("CP-3", authorization=basic("CP-3", PASSWORD)),
        "downgrade_attempt",
    ),
    "profile3-wss-without-cert": (Attempt("CP-3", True), "profile3_missing_client_cert"),
    "profile3-wss-password-instead-of-cert": (
        Attempt("CP-3", True, basic("CP-3", PASSWORD)),
        "profile3_missing_client_cert",
    ),
    "profile3-other-cn-TC_A_08-A00.FR.405": (
        Attempt("CP-3", True, cert="wrong_cn"),
        "cert_cn_mismatch",
    ),
    "profile3-identity-instead-of-expected-cn": (
        Attempt("CP-3-serial", True, cert="good"),
        "cert_cn_mismatch",
    ),
    "profile3-other-o-A00.FR.404": (Attempt("CP-3", True, cert="wrong_o"), "cert_o_mismatch"),
    "profile3-expired-TC_A_08": (Attempt("CP-3", True, cert="expired"), "cert_expired"),
    "profile3-unknown-ca-TC_A_08-A00.FR.403": (
        Attempt("CP-3", True, cert="foreign"),
        "cert_untrusted",
    ),
}


@pytest.mark.parametrize(("case", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_every_refusal_is_the_same_401_with_its_reason(
    world: World, case: Attempt, reason: str
) -> None:
    """A00.FR.407: terminate; the reason is for the security event, not for the client."""
    verdict = world.attempt(
        case.identity, secure=case.secure, authorization=case.authorization, cert=case.cert
    )
    assert refused(verdict).reason == reason
    assert_uniform_401(verdict)
    assert refused(verdict).detail  # something to log


def test_all_401_refusals_are_indistinguishable_to_the_client(pki: Pki) -> None:
    world = World(pki, max_failures=0)  # no lockout: collect every answer
    answers = set()
    for case, _ in REFUSED.values():
        refusal = refused(
            world.attempt(
                case.identity, secure=case.secure, authorization=case.authorization, cert=case.cert
            )
        )
        answers.add((refusal.status, refusal.headers, refusal.body))
    assert answers == {(401, UNAUTHORIZED_HEADERS, UNAUTHORIZED_BODY)}
    assert (b"www-authenticate", b'Basic realm="OCPP", charset="UTF-8"') in UNAUTHORIZED_HEADERS


def test_profile3_certificate_expires_with_the_clock(world: World) -> None:
    """The check runs at the authenticator's time: a year and more later the leaf has expired."""
    assert isinstance(world.attempt("CP-3", secure=True, cert="good"), Admitted)
    world.t[0] = NOW + 400 * 86400
    verdict = world.attempt("CP-3", secure=True, cert="good")
    assert refused(verdict).reason == "cert_expired"
    assert_uniform_401(verdict)


def test_profile3_certificate_revoked_by_a_crl_in_the_reloaded_store(
    pki: Pki, tmp_path: Path
) -> None:
    directory = shutil.copytree(pki.directory, tmp_path / "certs")
    world = World(pki)
    world.store = load_ca_store(directory)
    assert isinstance(world.attempt("CP-3", secure=True, cert="good"), Admitted)

    leaf = x509.load_der_x509_certificate(pki.certs["good"][0])
    revoked_at = datetime.fromtimestamp(NOW, UTC) - timedelta(minutes=1)
    crl = ca.create_crl(
        pki.issuing, [(leaf.serial_number, x509.ReasonFlags.key_compromise, revoked_at)]
    )
    (directory / "crl" / "issuing.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    world.store = load_ca_store(directory)  # the reload

    verdict = world.attempt("CP-3", secure=True, cert="good")
    assert refused(verdict).reason == "cert_revoked"
    assert_uniform_401(verdict)
    assert isinstance(world.attempt("CP-3", secure=True, cert="wrong_o"), Refused)


# -- unknown identities -------------------------------------------------------------------------


def test_unknown_identity_may_answer_404_when_the_operator_opts_in(pki: Pki) -> None:
    world = World(pki, settings=PolicySettings(unknown_identity_status=404))
    verdict = refused(world.attempt("CP-nope", authorization=basic("CP-nope", PASSWORD)))
    assert (verdict.status, verdict.reason, verdict.headers) == (404, "unknown_identity", ())
    assert verdict.body != UNAUTHORIZED_BODY
    # Known identities still get the uniform 401.
    assert_uniform_401(world.attempt("CP-1", authorization=basic("CP-1", OTHER_PASSWORD)))


def test_auto_register_creates_a_profile0_record_for_an_unknown_insecure_connection(
    pki: Pki,
) -> None:
    world = World(pki, settings=PolicySettings(auto_register_profile0=True))
    verdict = world.attempt("CP-new")
    assert isinstance(verdict, Admitted)
    assert verdict.record == ChargePointRecord("CP-new", security_profile=0)
    assert world.records.get("CP-new") == verdict.record


def test_auto_register_never_registers_a_secure_connection(pki: Pki) -> None:
    world = World(pki, settings=PolicySettings(auto_register_profile0=True))
    assert_uniform_401(world.attempt("CP-new", secure=True, cert="good"))
    assert world.records.get("CP-new") is None


def test_auto_register_leaves_existing_records_alone(pki: Pki) -> None:
    world = World(pki, settings=PolicySettings(auto_register_profile0=True))
    assert refused(world.attempt("CP-1")).reason == "missing_credentials"
    assert refused(world.attempt("CP-2")).reason == "downgrade_attempt"
    assert world.records.get("CP-1") == RECORDS[1]
    assert world.records.get("CP-2") == RECORDS[3]


def test_without_auto_register_unknown_identities_are_not_recorded(world: World) -> None:
    assert_uniform_401(world.attempt("CP-new"))
    assert world.records.get("CP-new") is None


# -- brute-force protection ---------------------------------------------------------------------


def wrong(world: World, identity: str = "CP-1", ip: str = IP) -> Verdict:
    return world.attempt(identity, authorization=basic(identity, OTHER_PASSWORD), ip=ip)


def right(world: World, identity: str = "CP-1", ip: str = IP) -> Verdict:
    return world.attempt(identity, authorization=basic(identity, PASSWORD), ip=ip)


def assert_locked(verdict: Verdict, remaining: float) -> None:
    refusal = refused(verdict)
    assert (refusal.status, refusal.reason) == (429, "locked_out")
    headers = dict(refusal.headers)
    retry_after = int(headers[b"retry-after"])
    assert math.ceil(remaining) <= retry_after <= remaining + 1  # never invites an early retry
    assert refusal.body != UNAUTHORIZED_BODY


def test_lockout_answers_429_with_retry_after_even_for_the_right_password(world: World) -> None:
    for _ in range(2):
        assert_uniform_401(wrong(world))
    locking = wrong(world)
    assert_uniform_401(locking)  # the locking failure still looks like any 401
    assert "locked out" in refused(locking).detail
    assert_locked(right(world), 300)
    world.t[0] = NOW + 299.5
    assert_locked(right(world), 0.5)
    world.t[0] = NOW + 300
    assert isinstance(right(world), Admitted)


def test_failures_are_counted_per_source_address(world: World) -> None:
    for _ in range(3):
        wrong(world, "CP-1", ip="198.51.100.7")
    # Another identity, right password, same address: locked.
    assert_locked(
        world.attempt(
            "CP-2", secure=True, authorization=basic("CP-2", PASSWORD), ip="198.51.100.7"
        ),
        300,
    )
    # The same identity from elsewhere: locked (per identity).
    assert_locked(right(world, "CP-1", ip="203.0.113.1"), 300)
    # Another identity from elsewhere: unaffected.
    assert isinstance(
        world.attempt("CP-2", secure=True, authorization=basic("CP-2", PASSWORD), ip="203.0.113.1"),
        Admitted,
    )


def test_failures_are_counted_per_identity_across_addresses(world: World) -> None:
    for index in range(3):
        wrong(world, "CP-1", ip=f"203.0.113.{index}")
    assert_locked(right(world, "CP-1", ip="203.0.113.99"), 300)


def test_failures_of_every_reason_count(world: World) -> None:
    world.attempt("CP-3", secure=True, cert="wrong_cn")
    world.attempt("CP-2")  # downgrade attempt
    world.attempt("CP-nope")
    assert_locked(world.attempt("CP-0"), 300)  # the address is locked, even for profile 0


def test_success_resets_the_identity_counter(world: World) -> None:
    wrong(world, ip="203.0.113.1")
    wrong(world, ip="203.0.113.2")
    assert isinstance(right(world, ip="203.0.113.3"), Admitted)
    wrong(world, ip="203.0.113.4")
    assert_uniform_401(wrong(world, ip="203.0.113.5"))  # 2 since the success: not locked
    assert isinstance(right(world, ip="203.0.113.6"), Admitted)


def test_failures_outside_the_window_do_not_lock(world: World) -> None:
    wrong(world)
    wrong(world)
    world.t[0] = NOW + 61
    wrong(world)
    assert isinstance(right(world), Admitted)
