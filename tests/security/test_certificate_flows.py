"""Charge point certificates over OCPP with real `ocpp` library clients (1.6 security extension,
2.0.1): SignCertificate -> CertificateSigned -> reconnect with the new certificate (A02/A03,
TC_A_11_CSMS, 1.6 whitepaper A02.FR.*), bad CSRs rejected (TC_A_14_CSMS), renewal triggers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v21 import call_result as result21
from ocpp.v21.enums import Action as Action21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from security.passwords import hash_password, password_bytes_v2
from security.records import ChargePointRecord

from .helpers import PASSWORD, attempt, basic, client_certificate, client_context


class Station201(ChargePoint201):
    chains: list[str]
    triggers: list[str]

    @on(Action201.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.chains.append(certificate_chain)
        return result201.CertificateSigned(status="Accepted")

    @on(Action201.trigger_message)
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        self.triggers.append(requested_message)
        return result201.TriggerMessage(status="Accepted")


class Station21(ChargePoint21):
    chains: list[str]
    triggers: list[str]

    @on(Action21.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.chains.append(certificate_chain)
        return result21.CertificateSigned(status="Accepted")

    @on(Action21.trigger_message)
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        self.triggers.append(requested_message)
        return result21.TriggerMessage(status="Accepted")


class Station16(ChargePoint16):
    chains: list[str]
    triggers: list[str]

    @on(Action16.certificate_signed)
    def on_certificate_signed(self, certificate_chain: str, **_: Any) -> Any:
        self.chains.append(certificate_chain)
        return result16.CertificateSigned(status="Accepted")

    @on(Action16.extended_trigger_message)
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        self.triggers.append(requested_message)
        return result16.ExtendedTriggerMessage(status="Accepted")


@contextlib.asynccontextmanager
async def station(url, subprotocol, identity, **connect):
    cls = {"ocpp1.6": Station16, "ocpp2.0.1": Station201, "ocpp2.1": Station21}[subprotocol]
    async with websockets.connect(url, subprotocols=[subprotocol], **connect) as ws:
        cp = cls(identity, ws, response_timeout=5)
        cp.chains, cp.triggers = [], []
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


def make_csr(common_name: str, organization: str | None = None, *, key=None, ca=False):
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


async def _wait(predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _sign_call(subprotocol: str, csr: str):
    if subprotocol == "ocpp1.6":
        return call16.SignCertificate(csr=csr)
    calls = call21 if subprotocol == "ocpp2.1" else call201
    return calls.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_csr_is_signed_and_the_new_certificate_connects_at_profile3(secure, subprotocol):
    """A02: a CSR over TLS, CertificateSigned, then a reconnection with it (TC_A_11_CSMS)."""
    csr, key = make_csr("CP2")
    url = secure.wss("CP2")
    auth = {"Authorization": basic("CP2", PASSWORD)}
    async with station(
        url, subprotocol, "CP2", additional_headers=auth, ssl=client_context(secure.certs_dir)
    ) as cp:
        answer = await cp.call(_sign_call(subprotocol, csr))
        assert answer.status == "Accepted"
        await _wait(lambda: cp.chains)
    chain = x509.load_pem_x509_certificates(cp.chains[0].encode())
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CP2"
    assert leaf.issuer == secure.issuer.certificate.subject, "signed by the issuing CA"
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    # the security team raises the record to profile 3 (TC_A_19); the new certificate connects
    record = secure.records.get("CP2")
    secure.records.put(ChargePointRecord("CP2", 3, record.password_hash))
    (secure.tmp / "new.pem").write_text(cp.chains[0])
    (secure.tmp / "new.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = client_context(secure.certs_dir)
    context.load_cert_chain(secure.tmp / "new.pem", secure.tmp / "new.key")
    assert (
        await attempt(secure.wss("CP2"), context=context, subprotocol=subprotocol)
    ).status == 101
    # and the old credential (password over TLS) is refused now
    again = await attempt(
        url, auth=basic("CP2", PASSWORD), context=client_context(secure.certs_dir)
    )
    assert again.status == 401


def _bad_csr(case: str) -> str:
    if case == "wrong_cn":
        return make_csr("CP1")[0]
    if case == "weak_key":
        return make_csr("CP2", key=rsa.generate_private_key(65537, 1024))[0]
    if case == "ca_true":
        return make_csr("CP2", ca=True)[0]
    if case == "bad_signature":
        pem, _ = make_csr("CP2")
        der = bytearray(
            x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
        )
        der[-5] ^= 0xFF  # flip bits in the signature
        import base64

        body = base64.encodebytes(bytes(der)).decode()
        return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    return "-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong_cn", "csr_cn_mismatch"),
        ("weak_key", "csr_weak_key"),
        ("ca_true", "csr_requests_ca"),
        ("bad_signature", "csr_bad_signature"),
        ("garbage", "csr_malformed"),
    ],
)
async def test_bad_csr_is_rejected_logged_and_nothing_is_signed(secure, case, reason):
    """TC_A_14_CSMS: an invalid CSR gets Rejected and no CertificateSigned follows."""
    auth = {"Authorization": basic("CP2", PASSWORD)}
    async with station(
        secure.wss("CP2"),
        "ocpp2.0.1",
        "CP2",
        additional_headers=auth,
        ssl=client_context(secure.certs_dir),
    ) as cp:
        answer = await cp.call(call201.SignCertificate(csr=_bad_csr(case)))
        assert answer.status == "Rejected"
        await secure.events.wait_for(reason)
        await asyncio.sleep(0.3)
        assert cp.chains == []


async def test_csr_over_a_profile1_session_is_rejected(secure):
    secure.records.put(ChargePointRecord("CP1B", 1, hash_password(password_bytes_v2(PASSWORD))))
    auth = {"Authorization": basic("CP1B", PASSWORD)}
    async with station(secure.ws("CP1B"), "ocpp2.0.1", "CP1B", additional_headers=auth) as cp:
        answer = await cp.call(call201.SignCertificate(csr=make_csr("CP1B")[0]))
        assert answer.status == "Rejected"
        await secure.events.wait_for("csr_on_insecure_session")
        assert cp.chains == []


@pytest.mark.parametrize(
    ("subprotocol", "requested"),
    [
        ("ocpp2.0.1", "SignChargingStationCertificate"),
        ("ocpp2.1", "SignChargingStationCertificate"),
        ("ocpp1.6", "SignChargePointCertificate"),
    ],
)
async def test_near_expiry_certificate_triggers_a_new_csr_once(secure, subprotocol, requested):
    """Renewal before expiry: time is injected, not slept."""
    now = datetime.now(UTC)
    cert = client_certificate(
        secure.tmp, secure.issuer, "short", "CP3", not_after=now + timedelta(days=40)
    )
    context = client_context(secure.certs_dir, cert)
    gateway = secure.server.gateway
    async with station(secure.wss("CP3"), subprotocol, "CP3", ssl=context) as cp:
        await _wait(lambda: gateway.registry.get("CP3") is not None)
        gateway.check_renewals(now=time.time())  # 40 days left: not yet (window: 30 days)
        await asyncio.sleep(0.2)
        assert cp.triggers == []
        later = (now + timedelta(days=15)).timestamp()
        gateway.check_renewals(now=later)
        await _wait(lambda: cp.triggers)
        gateway.check_renewals(now=later + 60)  # asked already today: not again
        await asyncio.sleep(0.2)
    assert cp.triggers == [requested]
    await secure.events.wait_for("certificate_renewal_due")
