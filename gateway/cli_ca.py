"""`ocpp-gateway ca ...` and `certs ...`: charge point certificates from the store's issuing CA."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from security.ca import (
    KEY_KINDS,
    Issued,
    issue_client_certificate,
    load_certificates,
    load_private_key,
    write_certificates,
    write_private_key,
)

from .config import ConfigError, GatewayConfig, load_config
from .trust import RELOAD_TRIGGER

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TOML file."
)


def _config(path: str | None) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


@click.group("ca")
def ca() -> None:
    """The certificate authority of the CA store."""


@ca.command("issue-cp")
@click.argument("identity")
@click.option("--org", "organization", help="O of the certificate (the CPO name).")
@click.option("--cn", "common_name", help="CN (default: the identity; OCPP: the serial number).")
@click.option("--key", "key_kind", type=click.Choice(KEY_KINDS), default="ec256", show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=".", show_default=True)
@config_option
def issue_cp(
    identity: str,
    organization: str | None,
    common_name: str | None,
    key_kind: str,
    days: int,
    out_dir: str,
    config_path: str | None,
) -> None:
    """Issue a charge point certificate (clientAuth) signed by the store's issuing CA."""
    ca_dir = Path(_config(config_path).tls.certs_dir) / "ca"
    try:
        issuer = Issued(
            load_certificates(ca_dir / "issuing.pem")[0], load_private_key(ca_dir / "issuing.key")
        )
    except (OSError, ValueError) as exc:
        click.echo(f"cannot load the issuing CA from {ca_dir}: {exc}", err=True)
        sys.exit(2)
    issued = issue_client_certificate(
        issuer,
        common_name or identity,
        organization,
        key_kind=key_kind,
        days=days,  # type: ignore[arg-type]
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chain, key = out / f"{identity}.pem", out / f"{identity}.key"
    write_certificates(chain, [issued.certificate, issuer.certificate])
    write_private_key(key, issued.key)
    click.echo(
        f"certificate chain: {chain}\nprivate key (0600): {key}\n"
        f"serial: {issued.certificate.serial_number:x}"
    )


@click.group("certs")
def certs() -> None:
    """The CA store of a running gateway."""


@certs.command("reload")
@config_option
def reload(config_path: str | None) -> None:
    """Make every worker of a running gateway reload the CA store and records now."""
    certs_dir = Path(_config(config_path).tls.certs_dir)
    if not certs_dir.is_dir():
        click.echo(f"{certs_dir} is not a directory", err=True)
        sys.exit(2)
    (certs_dir / RELOAD_TRIGGER).write_text(f"{time.time()}\n")
    click.echo("reload requested: workers apply it within tls.reload_interval_seconds")
