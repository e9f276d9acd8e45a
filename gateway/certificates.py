"""Charge point certificates over OCPP: SignCertificate -> CertificateSigned, and renewal triggers.

SignCertificate (1.6 security extension, 2.0.1/2.1 A02/A03): the CSR is checked with the same policy
as `ocpp-gateway ca sign-csr` (security/csr.py) against the session's record (expected CN, O = the
CPO name); Accepted is answered, then the certificate is signed by the store's issuing CA and sent
with CertificateSigned (the chain, leaf first; `certificateType` echoed in 2.x); the charge point's
answer is logged. CSRs over profile 0 or 1 sessions are rejected: without TLS the CSR could come
from anyone. Renewal: a profile-3 session whose certificate expires within
`security.renew_days_before` days is asked for a new CSR (TriggerMessage
SignChargingStationCertificate in 2.x, ExtendedTriggerMessage SignChargePointCertificate in 1.6),
at most once per session per day.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from security.ca import Issued, issue_client_certificate, load_certificates, load_private_key
from security.csr import CsrRejected, check_csr
from security.records import RecordStore

from .logs import event
from .ocppj.codec import CallResult
from .registry import SessionInfo
from .router import CallFailed, Router
from .security_events import SecurityEvents
from .versions.base import OcppVersion

log = logging.getLogger("gateway.certificates")
PASSPHRASE_ENV = "OCPP_GATEWAY_CA_PASSPHRASE"
RENEWAL_REPEAT_SECONDS = 86400.0
CHARGE_POINT_CERTIFICATE = "ChargingStationCertificate"


class CertificateService:
    """Signs charge point CSRs with the store's issuing CA and triggers renewals."""

    def __init__(
        self,
        certs_dir: Path,
        records: RecordStore,
        router: Router,
        events: SecurityEvents,
        cpo_name: str | None,
        renew_days_before: int,
        validity_days: int = 365,
    ) -> None:
        self._ca_dir = certs_dir / "ca"
        self._records = records
        self._router = router
        self._events = events
        self._cpo_name = cpo_name or None
        self._renew_seconds = renew_days_before * 86400.0
        self._validity_days = validity_days
        self._renewal_asked: dict[tuple[str, float], float] = {}
        self.on_issued: Callable[[Issued, str], None] | None = None  # e.g. the CA database

    def _issuer(self) -> Issued | None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        try:
            certificate = load_certificates(self._ca_dir / "issuing.pem")[0]
            key = load_private_key(
                self._ca_dir / "issuing.key", passphrase.encode() if passphrase else None
            )
        except (OSError, ValueError, IndexError, TypeError) as exc:
            event(log, "issuing_ca_unavailable", logging.ERROR, error=str(exc)[:200])
            return None
        return Issued(certificate, key)

    # -- SignCertificate --------------------------------------------------------------------------

    def sign_certificate(
        self, info: SessionInfo, version: OcppVersion, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable[[], Any] | None]:
        """The SignCertificate answer, and the CertificateSigned follow-up when Accepted."""
        certificate_type = payload.get("certificateType")
        refused = self._refusal(info, payload, certificate_type)
        if refused is not None:
            reason, detail = refused
            self._events.emit(reason, identity=info.identity, remote=info.remote, detail=detail)
            return {"status": "Rejected"}, None
        record = self._records.get(info.identity)
        assert record is not None
        checked = check_csr(
            payload["csr"], record.certificate_cn, record.expected_o or self._cpo_name
        )
        if isinstance(checked, CsrRejected):
            self._events.emit(
                checked.reason, identity=info.identity, remote=info.remote, detail=checked.detail
            )
            return {"status": "Rejected"}, None
        issuer = self._issuer()
        if issuer is None:
            return {"status": "Rejected"}, None

        async def send_certificate() -> None:
            issued = issue_client_certificate(
                issuer,
                checked.common_name,
                checked.organization,
                days=self._validity_days,
                public_key=checked.csr.public_key(),
            )
            chain = b"".join(
                c.public_bytes(Encoding.PEM) for c in (issued.certificate, issuer.certificate)
            ).decode()
            serial = f"{issued.certificate.serial_number:x}"
            if self.on_issued is not None:
                self.on_issued(issued, info.identity)
            signed: dict[str, Any] = {"certificateChain": chain}
            if certificate_type is not None:
                signed["certificateType"] = certificate_type
            await self._call_and_log(
                info.identity, "CertificateSigned", signed, "certificate_signed", serial=serial
            )

        return {"status": "Accepted"}, send_certificate

    def _refusal(
        self, info: SessionInfo, payload: dict[str, Any], certificate_type: Any
    ) -> tuple[str, str] | None:
        if info.security_profile < 2:
            return (
                "csr_on_insecure_session",
                f"a CSR over a security profile {info.security_profile} session is refused",
            )
        if certificate_type not in (None, CHARGE_POINT_CERTIFICATE):
            return (
                "csr_unsupported_type",
                f"the gateway signs charge point certificates only, not {certificate_type}",
            )
        if self._records.get(info.identity) is None:
            return ("csr_without_record", "no record for this identity")
        return None

    # -- renewal ----------------------------------------------------------------------------------

    def renewal_trigger(self, version: OcppVersion) -> tuple[str, dict[str, Any]]:
        """The CALL that asks a charge point of `version` for a new CSR."""
        if version.subprotocol == "ocpp1.6":
            return "ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"}
        return "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}

    def due_for_renewal(self, info: SessionInfo, now: float) -> bool:
        """True when the session's certificate expires within the window and was not asked today."""
        not_after = info.certificate_not_after
        if not_after is None or not_after - now > self._renew_seconds:
            return False
        key = (info.identity, info.connected_at)
        last = self._renewal_asked.get(key)
        if last is not None and now - last < RENEWAL_REPEAT_SECONDS:
            return False
        self._renewal_asked[key] = now
        return True

    async def request_renewal(self, info: SessionInfo, version: OcppVersion, now: float) -> None:
        """Ask the charge point for a new CSR; the answer is logged."""
        action, payload = self.renewal_trigger(version)
        days = max(0.0, ((info.certificate_not_after or now) - now) / 86400)
        self._events.emit(
            "certificate_renewal_due",
            identity=info.identity,
            remote=info.remote,
            detail=f"client certificate expires in {days:.1f} days: {action} sent",
        )
        await self._call_and_log(
            info.identity, action, payload, "renewal_triggered", trigger=action
        )

    async def _call_and_log(
        self, identity: str, action: str, payload: dict[str, Any], name: str, **fields: Any
    ) -> None:
        """Send a CALL and log the charge point's answer as `name` (or `name_failed`)."""
        try:
            answer = await self._router.call(identity, action, payload)
        except CallFailed as failed:
            event(
                log,
                f"{name}_failed",
                logging.WARNING,
                identity=identity,
                reason=failed.reason,
                **fields,
            )
            return
        status = answer.payload.get("status") if isinstance(answer, CallResult) else None
        event(
            log,
            name,
            identity=identity,
            **fields,
            charge_point_answer=status or getattr(answer, "error_code", None),
        )
