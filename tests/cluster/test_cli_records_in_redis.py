"""The CLI with charge point records in Redis (`redis.state_store = "redis"`): `ca issue-cp` and
`ca sign-csr` take the expected certificate subject from the record in Redis, as the gateway does
(A00.FR.511 CN, A00.FR.509 O); a refused downgrade names the stored and the requested profile.
"""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gateway.cluster.state import RedisRecordStore
from security.audit import read_audit
from security.records import ChargePointRecord, DowngradeRefused

from ..security.helpers import PASSWORD, attempt
from .cli import Cli

PASSPHRASE = {"OCPP_GATEWAY_CA_PASSPHRASE": "a-long-test-passphrase"}
CPO = "Test CPO"


@pytest.fixture
def prefix() -> str:
    return f"f{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def cli(tmp_path: Path, redis_server, prefix: str) -> Cli:
    return Cli(tmp_path, redis_server.url, prefix)


def _subject(chain: Path) -> tuple[str, str]:
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    o = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    return str(cn), str(o)


def _csr(cn: str, o: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
        ]
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(Encoding.PEM)


async def test_issue_cp_takes_the_expected_subject_from_the_record_in_redis(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    """A00.FR.511/509: the certificate carries the record's CN and O, and the gateway admits it
    (before: CN=CP-3 from the identity, refused with cert_cn_mismatch)."""
    cli("ca", "init")
    cli("ca", "issue-server", "--san", "localhost", "--san", "127.0.0.1")
    cli("cp", "add", "CP-3", "--profile", "3", "--cn", "SERIAL-0003", "--org", "Fleet CPO")
    out = cli.tmp / "issued"
    issued = cli("ca", "issue-cp", "CP-3", "--out", str(out))
    assert "warning" not in issued
    assert _subject(out / "CP-3.pem") == ("SERIAL-0003", "Fleet CPO")

    node = await start_gateway(
        redis={"url": redis_server.url, "key_prefix": prefix, "node_id": "node-0"},
        tls={"wss_bind": ["127.0.0.1:0"], "certs_dir": str(cli.certs), "dev_certificates": False},
        security={"dev_auto_register": False},
    )
    context = ssl.create_default_context(cafile=str(cli.certs / "ca" / "root.pem"))
    context.load_cert_chain(out / "CP-3.pem", out / "CP-3.key")
    assert (await attempt(node.wss_url("CP-3"), context=context)).status == 101


def test_issue_cp_warns_when_cn_differs_from_the_record_in_redis(cli: Cli):
    cli("ca", "init")
    cli("cp", "add", "CP-4", "--profile", "3", "--cn", "SERIAL-0004")
    out = cli.tmp / "issued"
    issued = cli("ca", "issue-cp", "CP-4", "--cn", "CP-4", "--out", str(out))
    assert "expects CN='SERIAL-0004'" in issued
    assert "the gateway will refuse this certificate" in issued


def test_sign_csr_checks_the_csr_against_the_record_in_redis(cli: Cli):
    """The SignCertificate policy with the record's CN and O (before: the identity and cpo_name)."""
    cli("ca", "init")
    cli("cp", "add", "CP-5", "--profile", "3", "--cn", "SERIAL-0005", "--org", "Fleet CPO")
    good, identity_cn = cli.tmp / "good.csr", cli.tmp / "identity-cn.csr"
    good.write_bytes(_csr("SERIAL-0005", "Fleet CPO"))
    identity_cn.write_bytes(_csr("CP-5", CPO))

    chain = cli.tmp / "CP-5.pem"
    cli("ca", "sign-csr", str(good), "--identity", "CP-5", "--out", str(chain))
    assert _subject(chain) == ("SERIAL-0005", "Fleet CPO")

    refused = cli("ca", "sign-csr", str(identity_cn), "--identity", "CP-5", code=1)
    assert "csr_cn_mismatch" in refused
    assert "'SERIAL-0005'" in refused


def test_issue_cp_refuses_when_redis_holding_the_records_does_not_answer(tmp_path: Path):
    """Nothing is issued on a guess: the record (and so the subject) is unknown."""
    cli = Cli(tmp_path, "redis://127.0.0.1:1/0", "down:")
    cli("ca", "init")
    refused = cli("ca", "issue-cp", "CP-6", "--out", str(tmp_path / "issued"), code=2)
    assert "cannot read the record of CP-6 from Redis (redis.url)" in refused
    assert not (tmp_path / "issued" / "CP-6.pem").exists()
    last = read_audit(tmp_path / "audit.log")[-1]
    assert (last["action"], last["result"], last["reason"]) == (
        "ca.issue-cp",
        "refused",
        "records_unavailable",
    )


def test_cp_set_downgrade_message_names_stored_and_requested_profile(cli: Cli):
    """`cp set --profile 0` on a profile-1 record: "1 -> 0" (before: "1 -> 1")."""
    cli("cp", "add", "CPD", "--profile", "1", "--password-prompt", input=f"{PASSWORD}\n" * 2)
    refused = cli("cp", "set", "CPD", "--profile", "0", code=2)
    assert "security profile 1 -> 0 is a downgrade" in refused
    assert "--force-downgrade" in refused


def test_redis_record_store_downgrade_refusals_name_stored_then_requested_profile(
    redis_server, prefix: str
):
    store = RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix)
    store.put(ChargePointRecord("CPR", security_profile=3))
    with pytest.raises(DowngradeRefused, match=r"CPR: security profile 3 -> 1 is a downgrade"):
        store.patch("CPR", {"security_profile": 1})
    with pytest.raises(DowngradeRefused, match=r"CPR: security profile 3 -> 0 is a downgrade"):
        store.put(ChargePointRecord("CPR", security_profile=0))
    assert store.get("CPR").security_profile == 3  # type: ignore[union-attr]
