"""`ocpp-gateway ca ...` and `certs ...`: the gateway's own CA, its database, CRLs and anchors.

The CA lives in the store's `ca/` folder (root and issuing CA, folder 0700, keys 0600, optionally
encrypted: `--passphrase-prompt` or $OCPP_GATEWAY_CA_PASSPHRASE). Every certificate it issues is
recorded in `ca/issued.json` (security/cadb.py); revocations publish a fresh CRL into `crl/` at
once, which a running gateway applies within `tls.reload_interval_seconds` (closing live sessions
of revoked certificates). Every command appends one line to `security.audit_log`
(security/audit.py): action, identity/serial, result, never a key or a passphrase.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, cast

import click
import orjson
import redis
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from security.audit import AuditLog
from security.ca import (
    KEY_KINDS,
    Issued,
    KeyKind,
    certificates_from_pem,
    create_issuing_ca,
    create_root_ca,
    issue_client_certificate,
    issue_server_certificate,
    key_kind_weakness,
    key_weakness,
    load_certificates,
    load_private_key,
    write_certificates,
    write_private_key,
)
from security.cadb import (
    DEFAULT_CRL_VALIDITY,
    REVOCATION_REASONS,
    AlreadyRevoked,
    CaDatabase,
    IssuedCertificate,
    UnknownCertificate,
    fingerprint,
    iso,
    key_id,
    write_crl,
)
from security.castore import CaStoreError, is_ca, is_self_signed, load_ca_store
from security.csr import CsrRejected, check_csr

from .cli_common import persistent_record_store
from .cluster.client import connect_sync
from .cluster.state import announce_reload
from .config import ConfigError, GatewayConfig, load_config
from .identity import IdentityError, IdentityRules
from .trust import RELOAD_TRIGGER

PASSPHRASE_ENV = "OCPP_GATEWAY_CA_PASSPHRASE"
INIT_KEY_KINDS = ("ec256", "rsa3072")
SERVER_KEY_KINDS = ("ec256", "rsa2048", "rsa3072")
FINGERPRINT_CHARS = 16  # file names in trust/ and intermediate/: a SHA-256 fingerprint prefix
MIN_FINGERPRINT_CHARS = 8
MAX_INPUT_BYTES = 64 * 1024
CURRENT_CRL = "issuing.pem"

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TOML file."
)
passphrase_option = click.option(
    "--passphrase-prompt",
    is_flag=True,
    help=f"Prompt for the CA key passphrase (otherwise ${PASSPHRASE_ENV}, if set).",
)


# -- the command context ---------------------------------------------------------------------


@dataclass
class CaCli:
    """Configuration, audit log and (lazily) the passphrase of one CA command."""

    config: GatewayConfig
    audit: AuditLog
    prompt: bool = False
    _passphrase: bytes | None = field(default=None, repr=False)
    _asked: bool = False

    @property
    def certs_dir(self) -> Path:
        return Path(self.config.tls.certs_dir)

    @property
    def ca_dir(self) -> Path:
        return self.certs_dir / "ca"

    @property
    def db(self) -> CaDatabase:
        return CaDatabase.of_store(self.certs_dir)

    def passphrase(self, confirm: bool = False) -> bytes | None:
        """The CA key passphrase: prompted (with --passphrase-prompt), from the env, or None."""
        if not self._asked:
            self._asked = True
            if self.prompt:
                text = click.prompt(
                    "CA key passphrase", hide_input=True, confirmation_prompt=confirm, err=True
                )
                self._passphrase = text.encode()
            elif os.environ.get(PASSPHRASE_ENV):
                self._passphrase = os.environ[PASSPHRASE_ENV].encode()
        return self._passphrase

    def refuse(
        self,
        action: str,
        reason: str,
        message: str,
        *,
        code: int = 1,
        identity: str | None = None,
        serial: str | None = None,
        **fields: Any,
    ) -> NoReturn:
        """Audit a refusal, say why on stderr and exit with `code`."""
        self.audit.record(
            action, result="refused", identity=identity, serial=serial, reason=reason, **fields
        )
        click.echo(message, err=True)
        sys.exit(code)

    def announce_change(self) -> None:
        """With Redis, tell every node to reload the CA store now (not at its next interval)."""
        if not self.config.redis.url:
            return
        try:
            announce_reload(connect_sync(self.config.redis.url), self.config.redis.key_prefix)
        except redis.RedisError as exc:
            click.echo(
                f"warning: the nodes were not told through Redis ({exc}); they apply the change "
                "within tls.reload_interval_seconds",
                err=True,
            )

    def issuer(self, action: str, **context: Any) -> Issued:
        """The current issuing CA with its key; refuses (exit 2) when it cannot be loaded."""
        try:
            return _load_ca(self.ca_dir / "issuing.pem", self.ca_dir / "issuing.key", self)
        except (OSError, ValueError, IndexError) as exc:
            self.refuse(
                action,
                "issuing_ca_unavailable",
                f"cannot load the issuing CA from {self.ca_dir}: {exc}\n"
                f"(not initialized? run 'ocpp-gateway ca init'; an encrypted key needs "
                f"--passphrase-prompt or ${PASSPHRASE_ENV})",
                code=2,
                **context,
            )


def _load_ca(cert_path: Path, key_path: Path, cli: CaCli) -> Issued:
    certificate = load_certificates(cert_path)[0]
    key_pem = key_path.read_bytes()
    passphrase = cli.passphrase() if b"ENCRYPTED" in key_pem else None
    return Issued(certificate, load_private_key(key_path, passphrase))


def _context(config_path: str | None, prompt: bool = False) -> CaCli:
    """Load the configuration (the passphrase variable is not a setting) and open the audit log."""
    environ = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    try:
        config = load_config(config_path, environ)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    audit = AuditLog(config.security.audit_log)
    try:
        audit.check_writable()
    except OSError as exc:
        click.echo(f"cannot write the audit log {audit.path}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    return CaCli(config, audit, prompt)


def _check_identity(cli: CaCli, action: str, identity: str) -> None:
    rules = IdentityRules(cli.config.server.path_prefix, cli.config.ocpp.identity_extra_characters)
    raw = f"{cli.config.server.path_prefix}/{identity}".encode()
    if "%" in identity or isinstance(rules.parse(raw), IdentityError):
        cli.refuse(
            action,
            "invalid_identity",
            f"{identity!r} is not a valid charge point identity (OCPP-J 3.1.1)",
            code=2,
            identity=identity,
        )


def _expected_subject(cli: CaCli, action: str, identity: str) -> tuple[str, str | None, bool]:
    """(CN, O, has_record) a certificate of `identity` must carry, as the gateway checks them.

    The record comes from the store the gateway uses (Redis with `redis.state_store = "redis"`,
    else `security.records_file`), like `cp show`; exit 2 when Redis cannot be read.
    """
    cpo = cli.config.security.cpo_name or None
    store = persistent_record_store(cli.config)
    try:
        record = store.get(identity) if store is not None else None
    except redis.RedisError as exc:  # the message names host and port, never the password
        cli.refuse(
            action,
            "records_unavailable",
            f"cannot read the record of {identity} from Redis (redis.url): {exc}",
            code=2,
            identity=identity,
        )
    if record is None:
        return identity, cpo, False
    return record.certificate_cn, record.expected_o or cpo, True


def _check_key_kind(cli: CaCli, action: str, key_kind: str, **context: Any) -> None:
    """Refuse (exit 2) a key kind whose certificates the gateway would refuse (`cert_weak_key`)."""
    weakness = key_kind_weakness(key_kind)
    if weakness is not None:
        strong = ", ".join(k for k in KEY_KINDS if key_kind_weakness(k) is None)
        cli.refuse(
            action,
            "weak_key",
            f"--key {key_kind}: {weakness} is too weak, the gateway would refuse the certificate "
            f"(cert_weak_key, A00.FR.501-504); use one of {strong}",
            code=2,
            algorithm=key_kind,
            **context,
        )


def _fp_name(cert: x509.Certificate) -> str:
    return f"{fingerprint(cert)[:FINGERPRINT_CHARS]}.pem"


# -- the CA's signing keys and CRLs ----------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """An issuing CA whose key is at hand, and where its CRL is published."""

    issuer: Issued
    crl_path: Path

    @property
    def key_id(self) -> str:
        return key_id(self.issuer.certificate)


def _store_ca_fingerprints(certs_dir: Path) -> set[str]:
    """Fingerprints of the CA certificates in trust/ and intermediate/ (bad files skipped)."""
    found = set()
    for folder in ("trust", "intermediate"):
        for path in sorted((certs_dir / folder).glob("*.pem")):
            try:
                found.update(fingerprint(c) for c in load_certificates(path))
            except ValueError:
                continue
    return found


def _signers(cli: CaCli, action: str) -> list[Signer]:
    """The current issuing CA, then retired ones (after `init --force`) still in the store."""
    signers = [Signer(cli.issuer(action), cli.certs_dir / "crl" / CURRENT_CRL)]
    in_store = _store_ca_fingerprints(cli.certs_dir)
    for folder in sorted((cli.ca_dir / "retired").glob("*")):
        try:
            retired = _load_ca(folder / "issuing.pem", folder / "issuing.key", cli)
        except (OSError, ValueError, IndexError) as exc:
            click.echo(f"warning: skipping the retired CA in {folder}: {exc}", err=True)
            continue
        if fingerprint(retired.certificate) in in_store:  # else its CRL would break the store
            crl_path = cli.certs_dir / "crl" / _fp_name(retired.certificate)
            signers.append(Signer(retired, crl_path))
    return signers


def _signer_of(entry: IssuedCertificate, signers: list[Signer]) -> Signer | None:
    for signer in signers:
        if entry.issuer_key_id == signer.key_id or (
            entry.issuer_key_id is None
            and entry.issuer == signer.issuer.certificate.subject.rfc4514_string()
        ):
            return signer
    return None


def _publish(
    cli: CaCli, signers: list[Signer], next_update: timedelta = DEFAULT_CRL_VALIDITY
) -> list[dict[str, Any]]:
    """Sign and publish the CRL of every signer; what was published, for the audit line."""
    published = []
    for signer in signers:
        crl = cli.db.build_crl(signer.issuer, next_update)
        write_crl(signer.crl_path, crl)
        published.append(
            {
                "crl": str(signer.crl_path),
                "revoked": len(crl),
                "next_update": iso(crl.next_update_utc) if crl.next_update_utc else None,
            }
        )
    return published


# -- groups ----------------------------------------------------------------------------------


@click.group("ca")
def ca() -> None:
    """The gateway's certificate authority: issue, sign, revoke, CRLs, anchors.

    \b
    Staged rollover of a trust anchor (no charge point is locked out at any time):
      1. ocpp-gateway ca import-anchor NEW-ROOT.pem   (or 'ca init --force' for a new own CA:
                                                       the old root stays trusted)
      2. re-issue server and charge point certificates under the new hierarchy
         (ca issue-server, ca issue-cp / sign-csr, or SignCertificate over OCPP)
      3. ocpp-gateway ca retire-anchor OLD-FINGERPRINT (see 'ca list-anchors')
    """


@click.group("certs")
def certs() -> None:
    """The CA store of a running gateway."""


# -- ca init -------------------------------------------------------------------------------


@ca.command("init")
@click.option("--key", "key_kind", type=click.Choice(INIT_KEY_KINDS), default="ec256")
@click.option("--org", "organization", help="O of the CA (default: security.cpo_name).")
@click.option("--force", is_flag=True, help="Replace an existing CA (its root stays trusted).")
@passphrase_option
@config_option
def init(
    key_kind: str,
    organization: str | None,
    force: bool,
    passphrase_prompt: bool,
    config_path: str | None,
) -> None:
    """Create the CA: a root and an issuing CA.

    The root (pathLen 1) and the issuing CA (pathLen 0) are written to ca/. The root is copied to
    trust/, the issuing CA to intermediate/ and an empty CRL is published. Keys are 0600 in a 0700
    folder (A00.FR.602), encrypted with a passphrase when one is given.
    """
    action = "ca.init"
    cli = _context(config_path, passphrase_prompt)
    existing = (cli.ca_dir / "root.key").exists()
    if existing and not force:
        cli.refuse(
            action,
            "ca_exists",
            f"{cli.ca_dir / 'root.key'} exists: the CA is initialized already "
            "(--force creates a new one; the old root stays trusted until 'ca retire-anchor')",
        )
    organization = organization or cli.config.security.cpo_name
    if not organization:
        cli.refuse(
            action,
            "no_organization",
            "give --org NAME or set security.cpo_name (A00.FR.509: O in every certificate)",
            code=2,
        )
    passphrase = cli.passphrase(confirm=True)
    kind = cast(KeyKind, key_kind)
    root = create_root_ca(f"{organization} Root CA", organization, kind)
    issuing = create_issuing_ca(root, f"{organization} Issuing CA", organization, kind)
    for folder in ("ca", "trust", "intermediate", "crl", "server"):
        (cli.certs_dir / folder).mkdir(parents=True, exist_ok=True)
    cli.ca_dir.chmod(0o700)
    retired = _retire_current_ca(cli) if existing else None
    assert root.key is not None and issuing.key is not None
    write_private_key(cli.ca_dir / "root.key", root.key, passphrase)
    write_private_key(cli.ca_dir / "issuing.key", issuing.key, passphrase)
    write_certificates(cli.ca_dir / "root.pem", [root.certificate])
    write_certificates(cli.ca_dir / "issuing.pem", [issuing.certificate])
    write_certificates(cli.certs_dir / "trust" / _fp_name(root.certificate), [root.certificate])
    intermediate = cli.certs_dir / "intermediate" / _fp_name(issuing.certificate)
    write_certificates(intermediate, [issuing.certificate])
    crl_path = cli.certs_dir / "crl" / CURRENT_CRL
    write_crl(crl_path, cli.db.build_crl(issuing))
    cli.audit.record(
        action,
        serial=f"{issuing.certificate.serial_number:x}",
        organization=organization,
        algorithm=key_kind,
        encrypted=passphrase is not None,
        forced=existing,
        root_serial=f"{root.certificate.serial_number:x}",
        root_fingerprint=fingerprint(root.certificate),
        issuing_fingerprint=fingerprint(issuing.certificate),
        retired_to=str(retired) if retired else None,
    )
    cli.announce_change()
    click.echo(
        f"root CA: {cli.ca_dir / 'root.pem'} (trust anchor {_fp_name(root.certificate)})\n"
        f"issuing CA: {cli.ca_dir / 'issuing.pem'}\nCRL: {crl_path}"
    )
    if passphrase is None:
        click.echo("warning: the CA keys are not encrypted (--passphrase-prompt)", err=True)
    if retired is not None:
        click.echo(f"the previous CA was moved to {retired}; its root stays trusted", err=True)
    if not any((cli.certs_dir / "server").glob("*.pem")):
        click.echo(
            "next: 'ocpp-gateway ca issue-server --san HOST' before 'serve' (a first start without "
            "a server chain and with tls.dev_certificates would create a development CA)",
            err=True,
        )


def _retire_current_ca(cli: CaCli) -> Path:
    """Move the current CA to ca/retired/<fingerprint>/ and its CRL to crl/<fingerprint>.pem."""
    try:
        name = _fp_name(load_certificates(cli.ca_dir / "issuing.pem")[0]).removesuffix(".pem")
    except (ValueError, IndexError):
        name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = cli.ca_dir / "retired" / name
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for file in ("root.pem", "root.key", "issuing.pem", "issuing.key"):
        if (cli.ca_dir / file).exists():
            os.replace(cli.ca_dir / file, target / file)
    old_crl = cli.certs_dir / "crl" / CURRENT_CRL
    if old_crl.exists():
        os.replace(old_crl, cli.certs_dir / "crl" / f"{name}.pem")
    return target


# -- ca issue-server / issue-cp / sign-csr --------------------------------------------------


@ca.command("issue-server")
@click.option("--san", "sans", multiple=True, help="DNS name or IP (repeat; default: server_name).")
@click.option("--cn", "common_name", help="CN, the FQDN (A00.FR.510; default: the first DNS SAN).")
@click.option("--key", "key_kind", type=click.Choice(SERVER_KEY_KINDS), default="ec256")
@click.option("--days", type=click.IntRange(1, 825), default=397, show_default=True)
@passphrase_option
@config_option
def issue_server(
    sans: tuple[str, ...],
    common_name: str | None,
    key_kind: str,
    days: int,
    passphrase_prompt: bool,
    config_path: str | None,
) -> None:
    """Issue the gateway's TLS server chain.

    Written to server/ecdsa.pem+key or server/rsa.pem+key (by --key), leaf and issuing CA. A running
    gateway serves it to new connections after tls.reload_interval_seconds. Short lifetimes are the
    whitepaper's revocation method for server certificates (A00.FR.701).
    """
    action = "ca.issue-server"
    cli = _context(config_path, passphrase_prompt)
    names = list(sans) or [cli.config.tls.server_name]
    dns_names = [n for n in names if not _is_ip(n)]
    cn = common_name or (dns_names[0] if dns_names else cli.config.tls.server_name)
    _check_key_kind(cli, action, key_kind, sans=names)
    issuer = cli.issuer(action, sans=names)
    issued = issue_server_certificate(
        issuer, cn, names, key_kind=cast(KeyKind, key_kind), days=days
    )
    assert issued.key is not None
    kind = "rsa" if key_kind.startswith("rsa") else "ecdsa"
    server = cli.certs_dir / "server"
    server.mkdir(parents=True, exist_ok=True)
    write_private_key(server / f"{kind}.key", issued.key)
    write_certificates(server / f"{kind}.pem", [issued.certificate, issuer.certificate])
    entry = cli.db.add(issued.certificate, "server", issuer=issuer.certificate)
    cli.audit.record(
        action,
        serial=entry.serial,
        common_name=cn,
        sans=names,
        algorithm=key_kind,
        not_after=entry.not_after,
        chain=str(server / f"{kind}.pem"),
    )
    cli.announce_change()
    click.echo(
        f"server chain: {server / f'{kind}.pem'}\nprivate key (0600): {server / f'{kind}.key'}\n"
        f"serial: {entry.serial}\nnot after: {entry.not_after}"
    )


@ca.command("issue-cp")
@click.argument("identity")
@click.option("--org", "organization", help="O (default: the record's O, else security.cpo_name).")
@click.option("--cn", "common_name", help="CN (default: the record's CN, else the identity).")
@click.option("--key", "key_kind", type=click.Choice(KEY_KINDS), default="ec256", show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True)
@passphrase_option
@config_option
def issue_cp(
    identity: str,
    organization: str | None,
    common_name: str | None,
    key_kind: str,
    days: int,
    out_dir: str,
    passphrase_prompt: bool,
    config_path: str | None,
) -> None:
    """Issue a charge point certificate and key.

    Signed by the issuing CA, extended key usage clientAuth. CN = the charge point's serial number
    (A00.FR.511), O = the CPO (A00.FR.509): both default to what the gateway expects of IDENTITY
    (its record, else the identity and security.cpo_name). A --key the gateway would refuse
    (rsa1024: A00.FR.501-504) exits 2 and nothing is issued.
    """
    action = "ca.issue-cp"
    cli = _context(config_path, passphrase_prompt)
    _check_identity(cli, action, identity)
    _check_key_kind(cli, action, key_kind, identity=identity)
    expected_cn, expected_o, has_record = _expected_subject(cli, action, identity)
    cn, org = common_name or expected_cn, organization or expected_o
    if has_record and (cn != expected_cn or (expected_o is not None and org != expected_o)):
        click.echo(
            f"warning: the record of {identity} expects CN={expected_cn!r} O={expected_o!r}: "
            "the gateway will refuse this certificate until the record changes",
            err=True,
        )
    issuer = cli.issuer(action, identity=identity)
    issued = issue_client_certificate(issuer, cn, org, key_kind=cast(KeyKind, key_kind), days=days)
    assert issued.key is not None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chain, key = out / f"{identity}.pem", out / f"{identity}.key"
    write_certificates(chain, [issued.certificate, issuer.certificate])
    write_private_key(key, issued.key)
    entry = cli.db.add(issued.certificate, "charge_point", identity, issuer=issuer.certificate)
    cli.audit.record(
        action,
        identity=identity,
        serial=entry.serial,
        subject=entry.subject,
        algorithm=key_kind,
        not_after=entry.not_after,
        chain=str(chain),
    )
    click.echo(f"certificate chain: {chain}\nprivate key (0600): {key}\nserial: {entry.serial}")


@ca.command("sign-csr")
@click.argument("csr_file", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--identity", required=True, help="The charge point the CSR is for.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Chain file (or stdout).")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@passphrase_option
@config_option
def sign_csr(
    csr_file: str,
    identity: str,
    out_file: str | None,
    days: int,
    passphrase_prompt: bool,
    config_path: str | None,
) -> None:
    """Sign a charge point's CSR (the SignCertificate policy).

    The same checks as a SignCertificate over OCPP: CN and O must be what the gateway expects of
    IDENTITY (A00.FR.511/509), the key RSA >= 2048 or EC >= 256 bits (A00.FR.501-504), no CA powers.
    A refused CSR exits 1 and nothing is signed.
    """
    action = "ca.sign-csr"
    cli = _context(config_path, passphrase_prompt)
    _check_identity(cli, action, identity)
    try:
        with open(csr_file, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        cli.refuse(
            action,
            "csr_unreadable",
            f"cannot read {csr_file}: {exc.strerror or exc}",
            identity=identity,
        )
    expected_cn, expected_o, _ = _expected_subject(cli, action, identity)
    checked = check_csr(data, expected_cn, expected_o)
    if isinstance(checked, CsrRejected):
        cli.refuse(
            action,
            checked.reason,
            f"CSR refused ({checked.reason}): {checked.detail}",
            identity=identity,
            detail=checked.detail,
        )
    issuer = cli.issuer(action, identity=identity)
    issued = issue_client_certificate(
        issuer,
        checked.common_name,
        checked.organization,
        days=days,
        public_key=checked.csr.public_key(),  # type: ignore[arg-type]
    )
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in (issued.certificate, issuer.certificate))
    if out_file:
        write_certificates(out_file, [issued.certificate, issuer.certificate])
    entry = cli.db.add(issued.certificate, "charge_point", identity, issuer=issuer.certificate)
    cli.audit.record(
        action,
        identity=identity,
        serial=entry.serial,
        subject=entry.subject,
        not_after=entry.not_after,
        chain=out_file or "stdout",
    )
    if out_file:
        click.echo(f"certificate chain: {out_file}\nserial: {entry.serial}")
    else:
        click.echo(pem.decode(), nl=False)


# -- ca revoke / crl / list -----------------------------------------------------------------


@ca.command("revoke")
@click.argument("target", metavar="SERIAL|IDENTITY")
@click.option(
    "--reason",
    type=click.Choice(list(REVOCATION_REASONS)),
    default="unspecified",
    show_default=True,
    help="RFC 5280 reason code.",
)
@passphrase_option
@config_option
def revoke(target: str, reason: str, passphrase_prompt: bool, config_path: str | None) -> None:
    """Revoke a serial, or every valid certificate of an identity.

    The CA database is updated and a fresh CRL is published into crl/ at once: a running gateway
    refuses the certificate and closes its live session within tls.reload_interval_seconds.
    """
    action = "ca.revoke"
    cli = _context(config_path, passphrase_prompt)
    db = cli.db
    by_serial = db.get(target)
    of_identity = db.by_identity(target)
    valid = [e for e in of_identity if e.status == "valid"]
    context: dict[str, Any] = {"identity": target} if by_serial is None else {"serial": target}
    if by_serial is not None and valid:
        cli.refuse(
            action, "ambiguous", f"{target} is both a serial and an identity", revocation=reason
        )
    if by_serial is None and not valid:
        known = "has no valid certificate" if of_identity else "is no serial or identity"
        cli.refuse(
            action,
            "already_revoked" if of_identity else "unknown",
            f"{target} {known} in the CA database",
            revocation=reason,
            **context,
        )
    if by_serial is not None and by_serial.status == "revoked":
        cli.refuse(
            action,
            "already_revoked",
            f"serial {by_serial.serial} was revoked at {by_serial.revoked_at}",
            serial=by_serial.serial,
            identity=by_serial.identity,
        )
    targets = [by_serial] if by_serial is not None else valid
    signers = _signers(cli, action)
    orphans = [t.serial for t in targets if _signer_of(t, signers) is None]
    if orphans:
        cli.refuse(
            action,
            "issuer_unavailable",
            f"no CA key at hand publishes the CRL for {', '.join(orphans)}: nothing revoked",
            serials=orphans,
            **context,
        )
    try:
        if by_serial is not None:
            revoked = [db.revoke(by_serial.serial, reason)]
        else:
            revoked = db.revoke_identity(target, reason)
    except (UnknownCertificate, AlreadyRevoked) as exc:
        cli.refuse(action, "changed_meanwhile", str(exc), **context)
    affected = {id(_signer_of(e, signers)) for e in revoked}
    published = _publish(cli, [s for s in signers if id(s) in affected])
    cli.audit.record(
        action,
        identity=revoked[0].identity if by_serial is not None else target,
        serial=revoked[0].serial if by_serial is not None else None,
        serials=[e.serial for e in revoked],
        revocation=reason,
        published=published,
    )
    cli.announce_change()
    for entry in revoked:
        click.echo(f"revoked {entry.serial} ({entry.subject}): {reason}")
    for item in published:
        click.echo(f"CRL published: {item['crl']} ({item['revoked']} revoked)")


@ca.command("crl")
@click.option(
    "--next-update-days",
    type=click.IntRange(1, 365),
    default=DEFAULT_CRL_VALIDITY.days,
    show_default=True,
    help="nextUpdate of the new CRLs.",
)
@passphrase_option
@config_option
def crl(next_update_days: int, passphrase_prompt: bool, config_path: str | None) -> None:
    """Publish fresh CRLs from the CA database.

    Run it regularly (e.g. daily from cron), well before the published CRL's nextUpdate.
    """
    action = "ca.crl"
    cli = _context(config_path, passphrase_prompt)
    published = _publish(cli, _signers(cli, action), timedelta(days=next_update_days))
    cli.audit.record(action, published=published)
    cli.announce_change()
    for item in published:
        click.echo(
            f"CRL published: {item['crl']} ({item['revoked']} revoked, "
            f"next update {item['next_update']})"
        )


@ca.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--identity", help="Only the certificates of this identity.")
@config_option
def list_issued(as_json: bool, identity: str | None, config_path: str | None) -> None:
    """List issued certificates, their status and renewal_due.

    renewal_due: valid and expiring within security.renew_days_before days.
    """
    cli = _context(config_path)
    now, window = datetime.now(UTC), cli.config.security.renew_days_before
    entries = cli.db.all() if identity is None else cli.db.by_identity(identity)
    cli.audit.record("ca.list", identity=identity, count=len(entries))
    for entry in entries:
        row = {
            "serial": entry.serial,
            "kind": entry.kind,
            "identity": entry.identity,
            "subject": entry.subject,
            "not_after": entry.not_after,
            "status": entry.status,
            "renewal_due": entry.renewal_due(now, window),
            "revoked_at": entry.revoked_at,
            "reason": entry.reason,
        }
        if as_json:
            click.echo(orjson.dumps(row).decode())
        else:
            due = "\trenewal due" if row["renewal_due"] else ""
            click.echo(
                f"{entry.serial}\t{entry.kind}\t{entry.identity or '-'}\t{entry.subject}\t"
                f"{entry.not_after}\t{entry.status}{due}"
            )


# -- trust anchors ---------------------------------------------------------------------------


def _anchor_files(certs_dir: Path) -> list[tuple[Path, list[x509.Certificate]]]:
    files = []
    for path in sorted((certs_dir / "trust").glob("*.pem")):
        if path.name.startswith("."):
            continue
        try:
            files.append((path, load_certificates(path)))
        except ValueError as exc:
            click.echo(f"warning: skipping {path}: {exc}", err=True)
    return files


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@ca.command("list-anchors")
@config_option
def list_anchors(config_path: str | None) -> None:
    """List the trust anchors with their fingerprints.

    One line per anchor in trust/: SHA-256 fingerprint, file, subject, end of validity.
    """
    cli = _context(config_path)
    files = _anchor_files(cli.certs_dir)
    cli.audit.record("ca.list-anchors", count=sum(len(certs) for _, certs in files))
    for path, certs_in_file in files:
        for cert in certs_in_file:
            click.echo(
                f"{fingerprint(cert)}\t{path.name}\t{cert.subject.rfc4514_string()}\t"
                f"not after {cert.not_valid_after_utc.date()}"
            )


@ca.command("import-anchor")
@click.argument("file", type=click.Path(dir_okay=False))
@config_option
def import_anchor(file: str, config_path: str | None) -> None:
    """Trust a new anchor (rollover step 1).

    FILE is a self-signed CA certificate (PEM); it is copied to trust/<fingerprint prefix>.pem. Step
    1 of a staged rollover: import the new root, re-issue certificates under it, then 'ca
    retire-anchor' the old one. Refuses non-CA, non-self-signed, weak or expired certificates.
    """
    action = "ca.import-anchor"
    cli = _context(config_path)
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        cli.refuse(action, "unreadable", f"cannot read {file}: {exc.strerror or exc}", file=file)
    if b"PRIVATE KEY" in data:
        cli.refuse(action, "contains_private_key", f"{file} holds a private key: refused")
    try:
        found = certificates_from_pem(data, source=file)
    except ValueError as exc:
        cli.refuse(action, "not_a_certificate", str(exc), file=file)
    if len(found) != 1:
        cli.refuse(action, "not_one_certificate", f"{file}: give exactly one certificate")
    cert = found[0]
    fields = {"fingerprint": fingerprint(cert), "subject": cert.subject.rfc4514_string()}
    problem = None
    if not is_ca(cert):
        problem = ("not_a_ca", "not a CA certificate (BasicConstraints CA:TRUE)")
    elif not is_self_signed(cert):
        problem = ("not_self_signed", "not self-signed: an issuing CA is no anchor")
    elif (weakness := key_weakness(cert.public_key())) is not None:
        problem = ("weak_key", f"its key is too weak ({weakness}; A00.FR.501-504)")
    elif cert.not_valid_after_utc <= datetime.now(UTC):
        problem = ("expired", f"expired on {cert.not_valid_after_utc.isoformat()}")
    if problem is not None:
        cli.refuse(action, problem[0], f"{file}: {problem[1]}", **fields)
    trusted = {
        fingerprint(c) for _, certs_in_file in _anchor_files(cli.certs_dir) for c in certs_in_file
    }
    target = cli.certs_dir / "trust" / _fp_name(cert)
    changed = fields["fingerprint"] not in trusted
    if changed:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_certificates(target, [cert])
    cli.audit.record(action, changed=changed, file=str(target), **fields)
    cli.announce_change()
    click.echo(f"{'trusted' if changed else 'already trusted'}: {fields['fingerprint']} {target}")


@ca.command("retire-anchor")
@click.argument("fingerprint_prefix", metavar="FINGERPRINT")
@click.option("--force", is_flag=True, help="Also the last anchor, or the own CA's root.")
@config_option
def retire_anchor(fingerprint_prefix: str, force: bool, config_path: str | None) -> None:
    """Stop trusting an anchor (rollover step 3).

    FINGERPRINT: its SHA-256 fingerprint, or a prefix of at least 8 hex digits. Last step of a
    staged rollover, once every charge point has a certificate under the new anchor: charge points
    still presenting a certificate under the old one are refused and their live sessions closed.
    Refuses to remove the last anchor, or the root of the CA in ca/, unless --force, and any removal
    that would leave the store unloadable (e.g. a CRL signed by it).
    """
    action = "ca.retire-anchor"
    cli = _context(config_path)
    prefix = fingerprint_prefix.strip().lower().replace(":", "")
    if len(prefix) < MIN_FINGERPRINT_CHARS or set(prefix) - set("0123456789abcdef"):
        cli.refuse(
            action,
            "bad_fingerprint",
            f"give the SHA-256 fingerprint (at least {MIN_FINGERPRINT_CHARS} hex digits)",
            fingerprint=fingerprint_prefix,
        )
    files = _anchor_files(cli.certs_dir)
    matches = {fingerprint(c) for _, cs in files for c in cs if fingerprint(c).startswith(prefix)}
    if len(matches) != 1:
        reason = "unknown_anchor" if not matches else "ambiguous"
        cli.refuse(action, reason, f"{len(matches)} anchors match {prefix}", fingerprint=prefix)
    fp = matches.pop()
    remaining = sum(1 for _, cs in files for c in cs if fingerprint(c) != fp)
    if remaining == 0 and not force:
        cli.refuse(action, "last_anchor", "this is the last trust anchor (--force)", fingerprint=fp)
    own_root = cli.ca_dir / "root.pem"
    if not force and own_root.exists() and fingerprint(load_certificates(own_root)[0]) == fp:
        cli.refuse(
            action,
            "own_ca_root",
            "this is the root of the CA in ca/, which issues new certificates (--force)",
            fingerprint=fp,
        )
    changes = {
        path: [c for c in cs if fingerprint(c) != fp]
        for path, cs in files
        if any(fingerprint(c) == fp for c in cs)
    }
    problem = _store_problem_after(cli.certs_dir, changes)
    if problem is not None:
        cli.refuse(
            action,
            "store_would_break",
            f"refused: the store would not load ({problem})",
            fingerprint=fp,
        )
    for path, kept in changes.items():
        if kept:
            write_certificates(path, kept)
        else:
            path.unlink()
    cli.audit.record(
        action, fingerprint=fp, files=[str(p) for p in changes], remaining_anchors=remaining
    )
    cli.announce_change()
    click.echo(f"retired {fp} ({remaining} anchors remain)")


def _store_problem_after(
    certs_dir: Path, changes: dict[Path, list[x509.Certificate]]
) -> str | None:
    """Why the store would fail to load with `changes` to trust/ applied (None: it loads).

    A store that does not load today is not blamed on the change.
    """
    try:
        load_ca_store(certs_dir)
    except CaStoreError:
        return None
    with tempfile.TemporaryDirectory() as temp:
        copy = Path(temp)
        for folder in ("trust", "intermediate", "crl"):
            if (certs_dir / folder).is_dir():
                shutil.copytree(certs_dir / folder, copy / folder)
        for path, kept in changes.items():
            target = copy / "trust" / path.name
            if kept:
                write_certificates(target, kept)
            else:
                target.unlink()
        try:
            load_ca_store(copy)
        except CaStoreError as exc:
            return f"{exc.path.name}: {exc.reason}"
    return None


# -- certs reload ----------------------------------------------------------------------------


@certs.command("reload")
@config_option
def reload(config_path: str | None) -> None:
    """Make every worker of a running gateway reload the CA store and records now."""
    cli = _context(config_path)
    if not cli.certs_dir.is_dir():
        cli.refuse("certs.reload", "no_store", f"{cli.certs_dir} is not a directory", code=2)
    (cli.certs_dir / RELOAD_TRIGGER).write_text(f"{time.time()}\n")
    cli.audit.record("certs.reload")
    cli.announce_change()
    click.echo(
        "reload requested: workers apply it within tls.reload_interval_seconds"
        + (" (told now through Redis)" if cli.config.redis.url else "")
    )
