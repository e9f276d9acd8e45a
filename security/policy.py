"""The security-profile policy: from a connection's facts and the charge point's record, a verdict.

Profiles (OCPP 1.6 security whitepaper section 2, 2.0.1 part 2 A00): 0 no credentials; 1 HTTP Basic
auth over ws; 2 TLS + Basic auth; 3 TLS with a client certificate. A profile never goes down: a
weaker transport or credential than the record demands is refused even with a right password.

Every refusal before the upgrade answers the same 401 (status, headers and body) whatever the
reason, so a prober learns nothing about which identities exist or why it failed; the reason goes
to the security event. Lockouts answer 429 with Retry-After; an operator may opt into 404 for
unknown identities (OCPP-J's recommendation).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .castore import CaStore
from .certcheck import CertAccepted, CertRejected, check_client_certificate
from .passwords import hash_password, verify_password
from .records import ChargePointRecord, RecordStore
from .throttle import FailureLimiter

_DECOY_HASH = hash_password(b"decoy password for identities without a record")
UNAUTHORIZED_HEADERS = ((b"www-authenticate", b'Basic realm="OCPP", charset="UTF-8"'),)
UNAUTHORIZED_BODY = "unauthorized: bad or missing credentials for this charge point"


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """What the transport knows about a connection attempt (pure data)."""

    identity: str
    secure: bool  # TLS terminated by the gateway, or by a trusted offloading proxy
    remote_ip: str
    authorization: bytes | None = None  # the raw Authorization header value
    client_chain: tuple[bytes, ...] = ()  # DER, leaf first, as verified by TLS
    tls_version: str | None = None


@dataclass(frozen=True, slots=True)
class Admitted:
    """The charge point may connect."""

    record: ChargePointRecord
    certificate: CertAccepted | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Refuse the upgrade: HTTP `status` with `headers` and `body`; `reason` for the event."""

    status: int
    reason: str
    detail: str
    body: str = UNAUTHORIZED_BODY
    headers: tuple[tuple[bytes, bytes], ...] = UNAUTHORIZED_HEADERS


Verdict = Admitted | Refused


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """Operator choices of the policy."""

    unknown_identity_status: Literal[401, 404] = 401
    auto_register_profile0: bool = False  # development only: unknown identities become profile 0


def parse_basic_auth(header: bytes | None) -> tuple[bytes, bytes] | None:
    """(username, password) bytes of an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    username, sep, password = decoded.partition(b":")
    return (username, password) if sep else None


class Authenticator:
    """Applies the security-profile policy with brute-force protection (no IO)."""

    def __init__(
        self,
        records: RecordStore,
        ca_store: Callable[[], CaStore],
        settings: PolicySettings,
        limiter: FailureLimiter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._ca_store = ca_store
        self._settings = settings
        self._limiter = limiter
        self._clock = clock

    def authenticate(self, facts: ConnectionFacts) -> Verdict:
        """The verdict for one connection attempt."""
        now = self._clock()
        keys: tuple[str, ...] = (f"id:{facts.identity}",)
        if facts.remote_ip:  # empty behind a proxy that does not report the client's address
            keys += (f"ip:{facts.remote_ip}",)
        locked = max(self._limiter.locked_for(key, now) for key in keys)
        if locked > 0:
            return Refused(
                429,
                "locked_out",
                f"too many failed attempts; locked for {int(locked) + 1} s",
                body="too many failed authentication attempts: retry later",
                headers=((b"retry-after", str(int(locked) + 1).encode()),),
            )
        verdict = self._decide(facts, now)
        if isinstance(verdict, Refused):
            for key in keys:
                if self._limiter.failure(key, now):
                    verdict = Refused(
                        verdict.status,
                        verdict.reason,
                        f"{verdict.detail}; now locked out",
                        verdict.body,
                        verdict.headers,
                    )
        else:
            self._limiter.success(keys[0])
        return verdict

    def _decide(self, facts: ConnectionFacts, now: float) -> Verdict:
        record = self._records.get(facts.identity)
        if record is None:
            credentials = parse_basic_auth(facts.authorization)
            if credentials is not None:  # same work as a wrong password: no timing signal
                verify_password(_DECOY_HASH, credentials[1])
            if self._settings.auto_register_profile0 and not facts.secure:
                record = ChargePointRecord(facts.identity, security_profile=0)
                self._records.put(record)
                return Admitted(record)
            if self._settings.unknown_identity_status == 404:
                return Refused(
                    404,
                    "unknown_identity",
                    "no record for this identity",
                    body="unknown charge point",
                    headers=(),
                )
            return Refused(401, "unknown_or_bad_credentials", "no record for this identity")
        if not record.enabled:
            return Refused(401, "record_disabled", "the charge point record is disabled")
        profile = record.security_profile
        if profile >= 2 and not facts.secure:
            return Refused(
                401,
                "downgrade_attempt",
                f"security profile {profile} requires TLS (wss); the connection used plain ws",
            )
        if profile == 3:
            return self._check_certificate(record, facts, now)
        if profile in (1, 2):
            return self._check_password(record, facts)
        return Admitted(record)

    def _check_password(self, record: ChargePointRecord, facts: ConnectionFacts) -> Verdict:
        credentials = parse_basic_auth(facts.authorization)
        if credentials is None:
            return Refused(
                401,
                "missing_credentials",
                f"security profile {record.security_profile} requires HTTP Basic auth",
            )
        username, password = credentials
        if username != facts.identity.encode():
            return Refused(
                401,
                "username_mismatch",
                "the Basic-auth username must equal the identity in the URL (A00.FR.204)",
            )
        if record.password_hash is None or not verify_password(record.password_hash, password):
            return Refused(401, "unknown_or_bad_credentials", "wrong password")
        return Admitted(record)

    def _check_certificate(
        self, record: ChargePointRecord, facts: ConnectionFacts, now: float
    ) -> Verdict:
        if not facts.client_chain:
            return Refused(
                401,
                "profile3_missing_client_cert",
                "security profile 3 requires a client certificate (TLS without one is a downgrade)",
            )
        checked = check_client_certificate(
            facts.client_chain,
            self._ca_store(),
            datetime.fromtimestamp(now, UTC),
            record.certificate_cn,
            record.expected_o,
        )
        if isinstance(checked, CertRejected):
            return Refused(401, checked.reason, checked.detail)
        return Admitted(record, checked)
