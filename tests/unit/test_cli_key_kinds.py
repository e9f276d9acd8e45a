"""`ca issue-cp` and `ca issue-server` issue only keys the gateway's certificate policy accepts
(RSA >= 2048 bits, EC >= 256 bits: A00.FR.501-504); a weaker `--key` is refused before anything is
issued, instead of a certificate that the gateway then refuses with `cert_weak_key`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.cli import main
from gateway.cli_ca import INIT_KEY_KINDS, SERVER_KEY_KINDS
from security import ca
from security.audit import read_audit
from security.cadb import CaDatabase
from security.castore import load_ca_store
from security.certcheck import CertAccepted, check_client_certificate

PASSPHRASE = {"OCPP_GATEWAY_CA_PASSPHRASE": "a-long-test-passphrase"}
CPO = "Test CPO"


class Cli:
    """`ocpp-gateway ... --config FILE` against a CA store, records file and audit log in `tmp`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.certs = tmp / "certs"
        self.audit = tmp / "audit.log"
        self.config = tmp / "gateway.toml"
        q = json.dumps
        self.config.write_text(
            f"[tls]\ncerts_dir = {q(str(self.certs))}\n"
            f"[security]\nrecords_file = {q(str(tmp / 'records.json'))}\n"
            f"audit_log = {q(str(self.audit))}\ncpo_name = {q(CPO)}\n"
        )

    def __call__(self, *args: str, code: int = 0) -> Result:
        result = CliRunner().invoke(main, [*args, "--config", str(self.config)], env=PASSPHRASE)
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    helper = Cli(tmp_path)
    helper("ca", "init")
    return helper


@pytest.mark.parametrize("kind", ca.KEY_KINDS)
def test_key_kind_weakness_applies_the_rule_the_gateway_applies_to_keys(kind: str):
    """The same verdict as `key_weakness` (what certcheck uses) on a key of that kind."""
    assert ca.key_kind_weakness(kind) == ca.key_weakness(ca.generate_key(kind).public_key())  # type: ignore[arg-type]


def test_key_kind_weakness_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown key kind"):
        ca.key_kind_weakness("dsa1024")


def test_issue_cp_refuses_a_key_the_gateway_would_refuse(cli: Cli):
    """A00.FR.502: `--key rsa1024` exits 2 with the rule and the fix; nothing is issued."""
    out = cli.tmp / "issued"
    refused = cli("ca", "issue-cp", "CP3", "--key", "rsa1024", "--out", str(out), code=2)
    assert "RSA 1024 bits (< 2048)" in refused.output
    assert "cert_weak_key" in refused.output
    assert "ec256" in refused.output and "rsa2048" in refused.output
    assert not (out / "CP3.pem").exists() and not (out / "CP3.key").exists()
    assert CaDatabase.of_store(cli.certs).by_identity("CP3") == []
    last = read_audit(cli.audit)[-1]
    assert (last["action"], last["result"], last["reason"], last["identity"]) == (
        "ca.issue-cp",
        "refused",
        "weak_key",
        "CP3",
    )


@pytest.mark.parametrize("kind", ["ec256", "ec384", "rsa2048"])
def test_issue_cp_certificates_of_every_offered_strong_kind_pass_the_gateway_policy(
    cli: Cli, kind: str
):
    out = cli.tmp / "issued"
    cli("ca", "issue-cp", "CP3", "--key", kind, "--out", str(out))
    chain = [c.public_bytes(Encoding.DER) for c in ca.load_certificates(out / "CP3.pem")]
    checked = check_client_certificate(
        chain, load_ca_store(cli.certs), datetime.now(UTC), "CP3", CPO
    )
    assert isinstance(checked, CertAccepted), checked


def test_issue_server_and_init_offer_only_keys_the_gateway_accepts(cli: Cli):
    assert all(ca.key_kind_weakness(k) is None for k in (*SERVER_KEY_KINDS, *INIT_KEY_KINDS))
    refused = cli("ca", "issue-server", "--san", "localhost", "--key", "rsa1024", code=2)
    assert "rsa1024" in refused.output
    assert not (cli.certs / "server" / "rsa.pem").exists()
