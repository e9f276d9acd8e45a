"""The handshake's security policy (gateway/admission.py): connection facts in, Allow/Refuse out.

Secure means TLS terminated by the gateway (the ASGI TLS extension) or by a trusted offloading
proxy; profile 2/3 need it (A00.FR.311, A00.FR.401/402), profile 3 the client chain
(A00.FR.403-405). Offload headers from anyone else are ignored and reported. Every refusal is a
security event (A00.FR.408: log a security event when the certificate is refused).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.admission import OffloadSettings, ProfilePolicy
from gateway.events import GatewayEvent
from gateway.handshake import Allow, HandshakeFacts, Refuse
from gateway.registry import InMemoryRegistry
from gateway.router import Router
from gateway.security_events import SecurityEvents
from security import ca
from security.certcheck import CertAccepted
from security.policy import (
    UNAUTHORIZED_BODY,
    UNAUTHORIZED_HEADERS,
    Admitted,
    ConnectionFacts,
    Refused,
    Verdict,
)
from security.records import ChargePointRecord

CLIENT = "192.0.2.1:50000"
PROXY = "127.0.0.1:41000"
OFFLOAD = OffloadSettings.build(["127.0.0.1"], "x-forwarded-proto", "x-ssl-client-cert")

_ROOT = ca.create_root_ca("Offload Root", "Example CPO")
_ISSUING = ca.create_issuing_ca(_ROOT, "Offload Issuing", "Example CPO")
_LEAF = ca.issue_client_certificate(_ISSUING, "CP-1", "Example CPO")
LEAF_PEM = _LEAF.certificate.public_bytes(serialization.Encoding.PEM).decode()
ISSUING_PEM = _ISSUING.certificate.public_bytes(serialization.Encoding.PEM).decode()
LEAF_DER = _LEAF.certificate.public_bytes(serialization.Encoding.DER)
ISSUING_DER = _ISSUING.certificate.public_bytes(serialization.Encoding.DER)
ACCEPTED_CERT = CertAccepted(
    serial=_LEAF.certificate.serial_number,
    subject="CN=CP-1,O=Example CPO",
    not_after=datetime(2030, 1, 1, tzinfo=UTC),
    issuer="CN=Offload Issuing,O=Example CPO",
)


@dataclass
class StubAuthenticator:
    """Answers `verdict` and remembers the facts it was given."""

    verdict: Verdict
    seen: list[ConnectionFacts] = field(default_factory=list)

    def authenticate(self, facts: ConnectionFacts) -> Verdict:
        self.seen.append(facts)
        return self.verdict


@dataclass
class Harness:
    policy: ProfilePolicy
    authenticator: StubAuthenticator
    events: list[GatewayEvent]

    @property
    def facts(self) -> ConnectionFacts:
        assert len(self.authenticator.seen) == 1
        return self.authenticator.seen[0]


def harness(verdict: Verdict | None = None, offload: OffloadSettings | None = OFFLOAD) -> Harness:
    router = Router(InMemoryRegistry())
    events: list[GatewayEvent] = []
    router.subscribe(events.append)
    stub = StubAuthenticator(verdict or Admitted(ChargePointRecord("CP-1")))
    return Harness(ProfilePolicy(stub, SecurityEvents(router), offload), stub, events)  # type: ignore[arg-type]


def handshake(
    headers: tuple[tuple[bytes, bytes], ...] = (),
    client: str = CLIENT,
    tls: dict[str, object] | None = None,
) -> HandshakeFacts:
    return HandshakeFacts(
        raw_path=b"/ocpp/CP-1",
        subprotocols=("ocpp1.6",),
        headers=((b"host", b"csms.example.com"), *headers),
        client=client,
        scheme="wss" if tls is not None else "ws",
        tls=tls,
    )


# -- facts from the gateway's own TLS -----------------------------------------------------------


def test_tls_extension_means_secure_with_its_client_chain() -> None:
    h = harness()
    tls = {"client_cert_chain_der": [LEAF_DER, ISSUING_DER], "tls_version_name": "TLSv1.3"}
    h.policy.check("CP-1", handshake(((b"authorization", b"Basic \xffraw"),), tls=tls))
    assert h.facts == ConnectionFacts(
        "CP-1", True, "192.0.2.1", b"Basic \xffraw", (LEAF_DER, ISSUING_DER), "TLSv1.3"
    )
    assert h.events == []


@pytest.mark.parametrize(
    "tls",
    [{}, {"client_cert_chain_der": None}, {"client_cert_chain_der": []}],
    ids=["no-key", "none", "empty"],
)
def test_tls_without_a_client_certificate_is_secure_with_no_chain(tls: dict[str, object]) -> None:
    h = harness()
    h.policy.check("CP-1", handshake(tls=tls))
    assert h.facts.secure is True
    assert h.facts.client_chain == ()


def test_gateway_tls_wins_over_offload_headers() -> None:
    h = harness()
    headers = ((b"x-forwarded-proto", b"http"), (b"x-ssl-client-cert", quote(LEAF_PEM).encode()))
    tls = {"client_cert_chain_der": [ISSUING_DER]}
    h.policy.check("CP-1", handshake(headers, client=PROXY, tls=tls))
    assert (h.facts.secure, h.facts.client_chain) == (True, (ISSUING_DER,))


def test_no_tls_means_insecure() -> None:
    h = harness(offload=None)
    header = (b"authorization", b"Basic Q1AtMTpzZWNyZXQ=")
    h.policy.check("CP-1", handshake((header,)))
    assert h.facts == ConnectionFacts("CP-1", False, "192.0.2.1", b"Basic Q1AtMTpzZWNyZXQ=")
    assert h.events == []


def test_without_offload_settings_forwarded_headers_mean_nothing() -> None:
    h = harness(offload=None)
    headers = ((b"x-forwarded-proto", b"https"), (b"x-ssl-client-cert", quote(LEAF_PEM).encode()))
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert (h.facts.secure, h.facts.client_chain) == (False, ())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (((b"authorization", b"Basic abc"),), b"Basic abc"),
        (((b"Authorization", b"Basic abc"),), b"Basic abc"),
        (((b"AUTHORIZATION", b"Basic \x00\xff"),), b"Basic \x00\xff"),
        ((), None),
    ],
    ids=["lower", "capitalised", "upper-binary", "absent"],
)
def test_authorization_header_is_passed_through_raw(
    headers: tuple[tuple[bytes, bytes], ...], expected: bytes | None
) -> None:
    h = harness()
    h.policy.check("CP-1", handshake(headers))
    assert h.facts.authorization == expected


@pytest.mark.parametrize(
    ("client", "ip"),
    [
        ("192.0.2.1:50000", "192.0.2.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1:443", "2001:db8::1"),  # the runtime's f"{host}:{port}"
        ("::1:5000", "::1"),
    ],
)
def test_remote_ip_is_the_peer_address_without_port(client: str, ip: str) -> None:
    h = harness()
    h.policy.check("CP-1", handshake(client=client))
    assert h.facts.remote_ip == ip


# -- TLS offload --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "secure"),
    [
        (b"https", True),
        (b"HTTPS", True),
        (b"wss", True),
        (b"http", False),
        (b"ws", False),
        (b"", False),
        (None, False),
    ],
)
def test_trusted_proxy_scheme_header_decides_secure(scheme: bytes | None, secure: bool) -> None:
    h = harness()
    headers = () if scheme is None else ((b"x-forwarded-proto", scheme),)
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert h.facts.secure is secure
    assert h.facts.remote_ip == "", "not the proxy's address: lockouts are per client"
    assert h.events == []


def test_trusted_proxy_client_certificate_header_becomes_the_der_chain() -> None:
    """nginx `$ssl_client_escaped_cert`: the URL-encoded PEM of the client certificate."""
    h = harness()
    headers = ((b"X-Forwarded-Proto", b"https"), (b"X-SSL-Client-Cert", quote(LEAF_PEM).encode()))
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert (h.facts.secure, h.facts.client_chain) == (True, (LEAF_DER,))


def test_trusted_proxy_certificate_header_may_carry_the_chain() -> None:
    h = harness()
    value = quote(LEAF_PEM + ISSUING_PEM).encode()
    h.policy.check(
        "CP-1",
        handshake(((b"x-forwarded-proto", b"https"), (b"x-ssl-client-cert", value)), PROXY),
    )
    assert h.facts.client_chain == (LEAF_DER, ISSUING_DER)


def test_trusted_proxy_certificate_over_plain_http_is_ignored() -> None:
    h = harness()
    headers = ((b"x-forwarded-proto", b"http"), (b"x-ssl-client-cert", quote(LEAF_PEM).encode()))
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert (h.facts.secure, h.facts.client_chain) == (False, ())


@pytest.mark.parametrize(
    "value",
    [
        b"not a certificate",
        quote("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n").encode(),
        b"",
    ],
    ids=["garbage", "bad-base64", "empty"],
)
def test_trusted_proxy_malformed_certificate_header_gives_no_chain(value: bytes) -> None:
    h = harness()
    headers = ((b"x-forwarded-proto", b"https"), (b"x-ssl-client-cert", value))
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert (h.facts.secure, h.facts.client_chain) == (True, ())


@pytest.mark.parametrize(
    "headers",
    [
        ((b"x-forwarded-proto", b"https"),),
        ((b"x-ssl-client-cert", quote(LEAF_PEM).encode()),),
        ((b"x-forwarded-proto", b"https"), (b"x-ssl-client-cert", quote(LEAF_PEM).encode())),
    ],
    ids=["scheme", "cert", "both"],
)
def test_offload_headers_from_an_untrusted_peer_are_ignored_and_reported(
    headers: tuple[tuple[bytes, bytes], ...],
) -> None:
    h = harness()
    h.policy.check("CP-1", handshake(headers, client="198.51.100.9:6000"))
    assert (h.facts.secure, h.facts.client_chain) == (False, ())
    assert [(e.kind, e.reason, e.identity, e.remote) for e in h.events] == [
        ("security", "offload_headers_from_untrusted_peer", "CP-1", "198.51.100.9:6000")
    ]


def test_untrusted_peer_without_offload_headers_is_not_reported() -> None:
    h = harness()
    h.policy.check("CP-1", handshake(client="198.51.100.9:6000"))
    assert h.facts.secure is False
    assert h.events == []


@pytest.mark.parametrize(
    ("proxies", "address", "trusted"),
    [
        (["127.0.0.1"], "127.0.0.1", True),
        (["127.0.0.1"], "127.0.0.2", False),
        (["10.0.0.0/8"], "10.20.30.40", True),
        (["10.0.0.1/8"], "10.0.0.2", True),  # host bits allowed (strict=False)
        (["::1"], "::1", True),
        (["fd00::/8", "192.0.2.0/24"], "192.0.2.77", True),
        (["127.0.0.1"], "unknown", False),
        ([], "127.0.0.1", False),
    ],
)
def test_offload_trusts_only_the_configured_proxies(
    proxies: list[str], address: str, trusted: bool
) -> None:
    assert OffloadSettings.build(proxies, "X-Forwarded-Proto", "X-Cert").trusts(address) is trusted


def test_offload_header_names_are_matched_case_insensitively() -> None:
    settings = OffloadSettings.build(["127.0.0.1"], "X-Forwarded-Proto", "X-SSL-Client-Cert")
    assert (settings.scheme_header, settings.cert_header) == (
        b"x-forwarded-proto",
        b"x-ssl-client-cert",
    )


# -- verdicts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verdict",
    [
        Refused(401, "cert_cn_mismatch", "subject CN 'CP-9' != expected 'CP-1'"),
        Refused(401, "unknown_or_bad_credentials", "wrong password; now locked out"),
        Refused(
            429,
            "locked_out",
            "too many failed attempts; locked for 301 s",
            body="too many failed authentication attempts: retry later",
            headers=((b"retry-after", b"301"),),
        ),
        Refused(404, "unknown_identity", "no record", body="unknown charge point", headers=()),
    ],
    ids=["401-cert", "401-password", "429", "404"],
)
def test_refusal_maps_to_refuse_and_emits_a_security_event(
    verdict: Refused, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness(verdict)
    with caplog.at_level(logging.WARNING, logger="gateway.security"):
        answer = h.policy.check("CP-1", handshake(client="192.0.2.1:50000"))
    assert answer == Refuse(
        verdict.status, verdict.reason, verdict.detail, "CP-1", verdict.headers, body=verdict.body
    )
    assert [(e.kind, e.reason, e.identity, e.remote, e.detail) for e in h.events] == [
        ("security", verdict.reason, "CP-1", "192.0.2.1:50000", verdict.detail)
    ]
    logged = [r for r in caplog.records if r.getMessage() == "security_event"]
    assert len(logged) == 1
    fields = logged[0].fields  # type: ignore[attr-defined]
    assert (fields["reason"], fields["identity"], fields["status"]) == (
        verdict.reason,
        "CP-1",
        verdict.status,
    )


def test_a_401_refusal_tells_the_client_only_the_uniform_answer() -> None:
    h = harness(Refused(401, "record_disabled", "the charge point record is disabled"))
    answer = h.policy.check("CP-1", handshake())
    assert isinstance(answer, Refuse)
    assert (answer.status, answer.headers, answer.body) == (
        401,
        UNAUTHORIZED_HEADERS,
        UNAUTHORIZED_BODY,
    )


CHAIN = (LEAF_DER, ISSUING_DER)


@pytest.mark.parametrize(
    ("verdict", "tls", "expected"),
    [
        (Admitted(ChargePointRecord("CP-1")), None, Allow(profile=0)),
        (
            Admitted(
                ChargePointRecord(
                    "CP-1",
                    security_profile=2,
                    allowed_versions=("ocpp2.0.1", "ocpp1.6"),
                    validation="lenient",
                )
            ),
            {"client_cert_chain_der": []},
            Allow(2, frozenset({"ocpp2.0.1", "ocpp1.6"}), "lenient", ()),
        ),
        (
            Admitted(ChargePointRecord("CP-1", 3, validation="strict"), ACCEPTED_CERT),
            {"client_cert_chain_der": list(CHAIN)},
            Allow(3, None, "strict", CHAIN, ACCEPTED_CERT.not_after.timestamp()),
        ),
        (
            # A profile-1 record over mutual TLS: the unchecked chain is not passed on.
            Admitted(ChargePointRecord("CP-1", 1, allowed_versions=("ocpp1.6",))),
            {"client_cert_chain_der": list(CHAIN)},
            Allow(1, frozenset({"ocpp1.6"}), None, ()),
        ),
    ],
    ids=["profile0", "profile2-versions-validation", "profile3-chain", "profile1-over-mtls"],
)
def test_admission_maps_the_record_to_allow(
    verdict: Admitted, tls: dict[str, object] | None, expected: Allow
) -> None:
    h = harness(verdict)
    assert h.policy.check("CP-1", handshake(tls=tls)) == expected
    assert h.events == []


def test_repeated_offload_header_is_not_believed() -> None:
    """A proxy that appends instead of replacing keeps the client's value: believe neither."""
    h = harness()
    spoofed = quote(LEAF_PEM).encode()
    headers = (
        (b"X-Forwarded-Proto", b"https"),
        (b"X-SSL-Client-Cert", spoofed),
        (b"X-SSL-Client-Cert", spoofed),
    )
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert (h.facts.secure, h.facts.client_chain) == (True, ())


def test_ipv4_mapped_address_of_a_trusted_proxy_is_trusted() -> None:
    assert OFFLOAD.trusts("::ffff:127.0.0.1")
    assert not OFFLOAD.trusts("::ffff:10.1.2.3")


def test_empty_allowed_versions_allow_no_version() -> None:
    h = harness(Admitted(ChargePointRecord("CP-1", allowed_versions=())))
    allowed = h.policy.check("CP-1", handshake())
    assert allowed.allowed_versions == frozenset()


def test_behind_a_trusted_proxy_failures_count_per_forwarded_client_not_per_proxy() -> None:
    h = harness()
    headers = ((b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-For", b"198.51.100.7, 10.0.0.9"))
    h.policy.check("CP-1", handshake(headers, client=PROXY))
    assert h.facts.remote_ip == "10.0.0.9"
    h2 = harness()
    h2.policy.check("CP-1", handshake(((b"X-Forwarded-Proto", b"https"),), client=PROXY))
    assert h2.facts.remote_ip == "", "no address reported: count per identity only"
