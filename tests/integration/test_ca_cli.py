"""The CA command line end to end: init, server and charge point certificates, CSRs, revocation with
a running gateway, the CA database listing, trust anchor rollover, and the audit log.

OCPP 1.6 security whitepaper: A00.FR.401-407 (profile 3: client certificates), A00.FR.501-512
(certificate properties, checked on CSRs), A00.FR.601/602 (the CPO as CA; CA keys well protected),
A00.FR.702/704 (revocation the central system verifies: CRLs published into the store).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from gateway.cli import main
from security import ca
from security.audit import read_audit
from security.cadb import CaDatabase, fingerprint
from security.castore import load_ca_store
from security.certcheck import CertAccepted, check_client_certificate
from security.records import JsonFileRecordStore

from ..security.helpers import HEARTBEAT, attempt

PASSPHRASE = "Prompted-CA-Passphrase-7731"
PASSPHRASE_ENV = {"OCPP_GATEWAY_CA_PASSPHRASE": PASSPHRASE}
CPO = "Test CPO"


@dataclass
class CaCli:
    """A temporary store, records and audit log, and the CLI pointed at them."""

    tmp: Path
    calls: int = 0

    @property
    def config(self) -> Path:
        return self.tmp / "gateway.toml"

    @property
    def certs(self) -> Path:
        return self.tmp / "certs"

    @property
    def records(self) -> Path:
        return self.tmp / "records.json"

    @property
    def audit(self) -> Path:
        return self.tmp / "audit.log"

    def __call__(
        self, *args: str, code: int = 0, input: str | None = None, ca_env: bool = True
    ) -> Result:
        """Run `ocpp-gateway ARGS --config ...`; `ca_env` exports the CA passphrase."""
        env = PASSPHRASE_ENV if ca_env else {}
        result = CliRunner().invoke(
            main, [*args, "--config", str(self.config)], input=input, env=env
        )
        self.calls += 1
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result

    def audit_lines(self) -> list[dict[str, Any]]:
        return read_audit(self.audit)

    def root_pem(self) -> Path:
        return self.certs / "trust" / f"{fingerprint(self.root())[:16]}.pem"

    def root(self) -> x509.Certificate:
        return ca.load_certificates(self.certs / "ca" / "root.pem")[0]

    def issuing(self) -> x509.Certificate:
        return ca.load_certificates(self.certs / "ca" / "issuing.pem")[0]


@pytest.fixture
def cli(tmp_path: Path) -> CaCli:
    helper = CaCli(tmp_path)
    q = json.dumps
    helper.config.write_text(
        f"[tls]\ncerts_dir = {q(str(helper.certs))}\n"
        f"[security]\nrecords_file = {q(str(helper.records))}\n"
        f"audit_log = {q(str(helper.audit))}\ncpo_name = {q(CPO)}\nrenew_days_before = 30\n"
    )
    return helper


@pytest.fixture
def initialized(cli: CaCli) -> CaCli:
    """`ca init` with a prompted passphrase (A00.FR.602), then the env passphrase for the rest."""
    cli("ca", "init", "--passphrase-prompt", input=f"{PASSPHRASE}\n{PASSPHRASE}\n", ca_env=False)
    return cli


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _csr(cn: str = "CP3", org: str | None = CPO, key: Any = None, ca_true: bool = False) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if ca_true:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.PEM)


def _assert_no_secrets(cli: CaCli) -> None:
    text = cli.audit.read_text()
    assert "PRIVATE KEY" not in text and PASSPHRASE not in text


# -- init ------------------------------------------------------------------------------------


def test_init_creates_a_protected_two_level_hierarchy(initialized: CaCli):
    cli, ca_dir = initialized, initialized.certs / "ca"
    assert _mode(ca_dir) == 0o700
    for key in ("root.key", "issuing.key"):
        assert _mode(ca_dir / key) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in (ca_dir / key).read_bytes()  # A00.FR.602
        with pytest.raises(ValueError, match="encrypted"):
            ca.load_private_key(ca_dir / key)
    root, issuing = cli.root(), cli.issuing()
    basic = x509.BasicConstraints
    assert root.extensions.get_extension_for_class(basic).value.path_length == 1
    assert issuing.extensions.get_extension_for_class(basic).value.path_length == 0
    issuing.verify_directly_issued_by(root)
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CPO
    store = load_ca_store(cli.certs)  # trust/ + intermediate/ + an empty CRL load together
    assert store.anchors == (root,) and store.intermediates == (issuing,)
    assert len(store.crls) == 1 and len(store.crls[0]) == 0
    assert cli.root_pem().is_file()
    [line] = cli.audit_lines()
    assert (line["action"], line["result"], line["encrypted"]) == ("ca.init", "ok", True)
    _assert_no_secrets(cli)


def test_init_refuses_an_existing_ca_unless_forced_and_keeps_the_old_root_trusted(
    initialized: CaCli,
):
    cli = initialized
    old_root, old_issuing = cli.root(), cli.issuing()
    refused = cli("ca", "init", code=1)
    assert "exists" in refused.output and cli.root() == old_root
    cli("ca", "init", "--force", "--key", "ec256")
    assert cli.root() != old_root
    anchors = load_ca_store(cli.certs).anchors
    assert set(anchors) == {old_root, cli.root()}  # staged rollover: both trusted
    retired = cli.certs / "ca" / "retired" / fingerprint(old_issuing)[:16]
    assert ca.load_certificates(retired / "issuing.pem") == [old_issuing]
    assert (cli.certs / "crl" / f"{fingerprint(old_issuing)[:16]}.pem").is_file()
    actions = [(e["action"], e["result"], e.get("reason")) for e in cli.audit_lines()]
    assert actions == [
        ("ca.init", "ok", None),
        ("ca.init", "refused", "ca_exists"),
        ("ca.init", "ok", None),
    ]


def test_revoking_a_certificate_of_the_previous_ca_publishes_that_cas_crl(initialized: CaCli):
    cli = initialized
    cli("cp", "add", "CP3", "--profile", "3", ca_env=False)
    cli("ca", "issue-cp", "CP3", "--out", str(cli.tmp / "old"))
    old_issuing = cli.issuing()
    cli("ca", "init", "--force")
    cli("ca", "revoke", "CP3", "--reason", "superseded")
    store = load_ca_store(cli.certs)  # both CRLs are signed by CAs still in intermediate/
    serial = ca.load_certificates(cli.tmp / "old" / "CP3.pem")[0].serial_number
    old_crl = next(c for c in store.crls if c.issuer == old_issuing.subject and len(c))
    assert old_crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert old_crl.is_signature_valid(old_issuing.public_key())


# -- the running gateway: issue, connect, revoke ---------------------------------------------


async def test_issue_connect_revoke_closes_the_live_session(initialized: CaCli, start_gateway):
    """A00.FR.401-405 then A00.FR.704: a revoked certificate ends the session and is refused."""
    cli = initialized
    cli("ca", "issue-server", "--san", "localhost", "--san", "127.0.0.1")
    cli("cp", "add", "CP3", "--profile", "3", ca_env=False)
    cli("ca", "issue-cp", "CP3", "--out", str(cli.tmp / "issued"))
    assert _mode(cli.tmp / "issued" / "CP3.key") == 0o600
    server = await start_gateway(
        tls={
            "wss_bind": ["127.0.0.1:0"],
            "certs_dir": str(cli.certs),
            "reload_interval_seconds": 0.1,
            "dev_certificates": False,
        },
        records=JsonFileRecordStore(cli.records),
        security={"dev_auto_register": False},
    )
    context = ssl.create_default_context(cafile=str(cli.root_pem()))
    context.load_cert_chain(cli.tmp / "issued" / "CP3.pem", cli.tmp / "issued" / "CP3.key")
    async with websockets.connect(
        server.wss_url("CP3"), subprotocols=["ocpp2.0.1"], ssl=context, open_timeout=5
    ) as ws:
        await ws.send(HEARTBEAT)
        assert (await asyncio.wait_for(ws.recv(), 5)).startswith('[3,"hb"')
        revoked = cli("ca", "revoke", "CP3", "--reason", "keyCompromise")
        assert "CRL published" in revoked.output
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 1008 and "cert_revoked" in closed.value.rcvd.reason
    assert (await attempt(server.wss_url("CP3"), context=context)).status == 401

    lines = cli.audit_lines()
    assert len(lines) == cli.calls  # one line per operation
    assert [e["action"] for e in lines] == [
        "ca.init",
        "ca.issue-server",
        "cp.add",
        "ca.issue-cp",
        "ca.revoke",
    ]
    revoke = lines[-1]
    assert (revoke["identity"], revoke["revocation"], revoke["result"]) == (
        "CP3",
        "keyCompromise",
        "ok",
    )
    assert revoke["serials"] == [
        f"{ca.load_certificates(cli.tmp / 'issued' / 'CP3.pem')[0].serial_number:x}"
    ]
    _assert_no_secrets(cli)


def test_issue_server_writes_the_chain_by_key_type(initialized: CaCli):
    cli = initialized
    cli("ca", "issue-server", "--san", "gw.example.com", "--san", "10.0.0.1", "--key", "rsa2048")
    chain = ca.load_certificates(cli.certs / "server" / "rsa.pem")
    assert chain[1] == cli.issuing() and _mode(cli.certs / "server" / "rsa.key") == 0o600
    leaf = chain[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw.example.com"
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    [entry] = CaDatabase.of_store(cli.certs).all()
    assert (entry.kind, entry.identity) == ("server", None)


def test_an_encrypted_ca_needs_its_passphrase(initialized: CaCli):
    refused = initialized("ca", "issue-cp", "CP3", code=2, ca_env=False)
    assert "passphrase" in refused.output
    assert initialized.audit_lines()[-1]["reason"] == "issuing_ca_unavailable"


# -- CSRs --------------------------------------------------------------------------------------


def test_sign_csr_issues_a_certificate_that_chains_to_the_store(initialized: CaCli):
    cli = initialized
    cli("cp", "add", "CP3", "--profile", "3", ca_env=False)
    (cli.tmp / "cp3.csr").write_bytes(_csr())
    out = cli.tmp / "cp3-signed.pem"
    cli("ca", "sign-csr", str(cli.tmp / "cp3.csr"), "--identity", "CP3", "--out", str(out))
    chain = ca.load_certificates(out)
    checked = check_client_certificate(
        [c.public_bytes(Encoding.DER) for c in chain],
        load_ca_store(cli.certs),
        datetime.now(UTC),
        "CP3",
        CPO,
    )
    assert isinstance(checked, CertAccepted), checked
    [entry] = CaDatabase.of_store(cli.certs).all()
    assert (entry.identity, entry.serial) == ("CP3", f"{chain[0].serial_number:x}")
    stdout = cli("ca", "sign-csr", str(cli.tmp / "cp3.csr"), "--identity", "CP3").output
    assert stdout.count("BEGIN CERTIFICATE") == 2  # the chain on stdout without --out
    assert [e["result"] for e in cli.audit_lines()[-2:]] == ["ok", "ok"]


@pytest.mark.parametrize(
    ("csr", "reason"),
    [
        (lambda: _csr(cn="CP4"), "csr_cn_mismatch"),  # A00.FR.511
        (lambda: _csr(org="Other CPO"), "csr_o_mismatch"),  # A00.FR.509
        (lambda: _csr(key=rsa.generate_private_key(65537, 1024)), "csr_weak_key"),  # A00.FR.502
        (lambda: _csr(ca_true=True), "csr_requests_ca"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n", "csr_malformed"),
    ],
    ids=["wrong-cn", "wrong-o", "weak-key", "ca-true", "garbage"],
)
def test_sign_csr_refuses_bad_csrs_signs_nothing_and_audits(initialized: CaCli, csr, reason):
    cli = initialized
    cli("cp", "add", "CP3", "--profile", "3", ca_env=False)
    (cli.tmp / "bad.csr").write_bytes(csr())
    out = cli.tmp / "never.pem"
    args = ("ca", "sign-csr", str(cli.tmp / "bad.csr"), "--identity", "CP3", "--out", str(out))
    result = cli(*args, code=1)
    assert reason in result.output
    assert not out.exists() and CaDatabase.of_store(cli.certs).all() == []
    line = cli.audit_lines()[-1]
    assert (line["action"], line["result"], line["reason"], line["identity"]) == (
        "ca.sign-csr",
        "refused",
        reason,
        "CP3",
    )


# -- list, revoke, CRL -------------------------------------------------------------------------


def test_list_shows_status_and_renewal_due(initialized: CaCli):
    cli = initialized
    out = str(cli.tmp / "issued")
    short = cli("ca", "issue-cp", "CP5", "--days", "5", "--out", out).output
    cli("ca", "issue-cp", "CP6", "--out", out)
    cli("ca", "issue-cp", "CP7", "--days", "5", "--out", out)
    cli("ca", "revoke", "CP7")
    rows = [json.loads(line) for line in cli("ca", "list", "--json").output.splitlines()]
    by_identity = {row["identity"]: row for row in rows}
    assert by_identity["CP5"]["serial"] in short
    assert (by_identity["CP5"]["status"], by_identity["CP5"]["renewal_due"]) == ("valid", True)
    assert (by_identity["CP6"]["status"], by_identity["CP6"]["renewal_due"]) == ("valid", False)
    assert (by_identity["CP7"]["status"], by_identity["CP7"]["renewal_due"]) == ("revoked", False)
    assert {"serial", "kind", "subject", "not_after"} <= set(rows[0])
    text = cli("ca", "list").output
    assert "renewal due" in text and "revoked" in text


def test_revoke_by_serial_and_refusals(initialized: CaCli):
    cli = initialized
    cli("ca", "issue-cp", "CP8", "--out", str(cli.tmp / "issued"))
    serial = CaDatabase.of_store(cli.certs).all()[0].serial
    cli("ca", "revoke", serial.upper(), "--reason", "cessationOfOperation")
    crl = load_ca_store(cli.certs).crls[0]
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.cessation_of_operation
    cli("ca", "revoke", serial, code=1)
    cli("ca", "revoke", "NOPE", code=1)
    cli("ca", "revoke", serial, "--reason", "bored", code=2)  # click refuses the choice
    published = cli("ca", "crl", "--next-update-days", "2").output
    assert "1 revoked" in published
    assert [(e["action"], e["result"], e.get("reason")) for e in cli.audit_lines()[2:]] == [
        ("ca.revoke", "ok", None),
        ("ca.revoke", "refused", "already_revoked"),
        ("ca.revoke", "refused", "unknown"),
        ("ca.crl", "ok", None),
    ]


# -- anchors -------------------------------------------------------------------------------


def test_import_and_retire_anchors(initialized: CaCli):
    cli = initialized
    new_root = ca.create_root_ca("New Root", CPO)
    issuing = ca.create_issuing_ca(new_root, "New Issuing", CPO)
    leaf = ca.issue_client_certificate(issuing, "CP1", CPO)
    files = {}
    for name, certs in (("root", [new_root.certificate]), ("issuing", [issuing.certificate])):
        files[name] = cli.tmp / f"{name}.pem"
        ca.write_certificates(files[name], certs)
    ca.write_certificates(cli.tmp / "leaf.pem", [leaf.certificate])
    ca.write_private_key(cli.tmp / "with-key.pem", new_root.key)

    fp = fingerprint(new_root.certificate)
    assert fp in cli("ca", "import-anchor", str(files["root"])).output
    assert (cli.certs / "trust" / f"{fp[:16]}.pem").is_file()
    assert "already" in cli("ca", "import-anchor", str(files["root"])).output
    for path, reason in (
        (files["issuing"], "not_self_signed"),
        (cli.tmp / "leaf.pem", "not_a_ca"),
        (cli.tmp / "with-key.pem", "contains_private_key"),
    ):
        cli("ca", "import-anchor", str(path), code=1)
        assert cli.audit_lines()[-1]["reason"] == reason
    assert len(load_ca_store(cli.certs).anchors) == 2
    listed = cli("ca", "list-anchors").output
    assert fp in listed and fingerprint(cli.root()) in listed

    own = fingerprint(cli.root())
    cli("ca", "retire-anchor", own[:12], code=1)  # the own CA's root: --force
    assert cli.audit_lines()[-1]["reason"] == "own_ca_root"
    cli("ca", "retire-anchor", "0000000000", code=1)
    cli("ca", "retire-anchor", "abc", code=1)
    cli("ca", "retire-anchor", fp[:10].upper())
    assert load_ca_store(cli.certs).anchors == (cli.root(),)
    cli("ca", "retire-anchor", own, code=1)  # the last anchor (only --force removes it)
    assert cli.audit_lines()[-1]["reason"] == "last_anchor"
    retired = [e for e in cli.audit_lines() if e["action"] == "ca.retire-anchor"]
    assert [e["result"] for e in retired] == ["refused", "refused", "refused", "ok", "refused"]
    _assert_no_secrets(cli)


def test_retiring_an_anchor_that_signs_a_crl_in_the_store_is_refused(initialized: CaCli):
    cli = initialized
    extra = ca.create_root_ca("Extra Root", CPO)
    ca.write_certificates(cli.tmp / "extra.pem", [extra.certificate])
    cli("ca", "import-anchor", str(cli.tmp / "extra.pem"))
    crl = ca.create_crl(extra, [])
    (cli.certs / "crl" / "extra.pem").write_bytes(crl.public_bytes(Encoding.PEM))
    result = cli("ca", "retire-anchor", fingerprint(extra.certificate), code=1)
    assert "extra.pem" in result.output
    assert len(load_ca_store(cli.certs).anchors) == 2


# -- records are audited too -------------------------------------------------------------------


def test_record_changes_are_audited_without_passwords(cli: CaCli):
    added = cli("cp", "add", "CP2", "--profile", "2", "--generate-password", ca_env=False)
    password = added.output.split("(shown once): ")[1].split()[0]
    cli("cp", "add", "CP2", "--profile", "0", code=2, ca_env=False)
    cli("cp", "set", "CP2", "--profile", "3", ca_env=False)
    cli("cp", "set", "CP2", "--profile", "1", code=2, ca_env=False)
    cli("cp", "set", "CP2", "--profile", "2", "--force-downgrade", ca_env=False)
    cli("cp", "remove", "CP2", ca_env=False)
    cli("cp", "remove", "CP2", code=1, ca_env=False)
    lines = cli.audit_lines()
    assert [(e["action"], e["result"]) for e in lines] == [
        ("cp.add", "ok"),
        ("cp.add", "refused"),
        ("cp.set", "ok"),
        ("cp.downgrade", "refused"),
        ("cp.downgrade", "ok"),
        ("cp.remove", "ok"),
        ("cp.remove", "refused"),
    ]
    assert all(e["identity"] == "CP2" for e in lines)
    assert lines[0]["credential"] == "set" and lines[4]["previous_profile"] == 3
    text = cli.audit.read_text()
    assert password not in text and "argon2" not in text
