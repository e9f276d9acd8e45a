"""The `ocpp-gateway` command line."""

from __future__ import annotations

import sys

import click
import orjson

from .cli_ca import ca, certs
from .cli_common import config_or_exit
from .cli_cp import cp
from .cli_remote import remote
from .cli_state import state
from .cli_ui import ui
from .config import GatewayConfig, describe, reference


def _load(path: str | None) -> GatewayConfig:
    return config_or_exit(path)


@click.group()
@click.version_option(package_name="ocpp-gateway")
def main() -> None:
    """OCPP WebSocket gateway: charge points, security profiles, routing."""


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file.")
def serve(config_path: str | None) -> None:
    """Run the gateway until SIGTERM or Ctrl-C."""
    from security.castore import CaStoreError

    from .hypercorn_compat import HypercornIncompatible
    from .server import serve as run

    config = _load(config_path)
    try:
        sys.exit(run(config))
    except HypercornIncompatible as exc:
        click.echo(f"refusing to start: {exc}", err=True)
        sys.exit(3)
    except (CaStoreError, FileExistsError) as exc:
        click.echo(f"refusing to start: the CA store is not usable: {exc}", err=True)
        sys.exit(2)


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def config_show(config_path: str | None, as_json: bool) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    effective = describe(_load(config_path))
    if as_json:
        click.echo(orjson.dumps(effective, option=orjson.OPT_INDENT_2).decode())
        return
    for section, values in effective.items():
        click.echo(f"[{section}]")
        for key, value in values.items():
            click.echo(f"{key} = {_toml(value)}")
        click.echo()


@config.command("reference")
def config_reference() -> None:
    """Print every option with its environment variable, default and meaning (Markdown)."""
    click.echo("| key | environment variable | default | meaning |")
    click.echo("|---|---|---|---|")
    for key, env, default, help_text in reference():
        click.echo(f"| `{key}` | `{env}` | `{_toml(default)}` | {help_text} |")


main.add_command(cp)
main.add_command(ca)
main.add_command(certs)
main.add_command(ui)
main.add_command(remote)
main.add_command(state)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list):
        return orjson.dumps(value).decode()
    return str(value)
