"""What the CLI commands share: the `--config` option and loading the configuration."""

from __future__ import annotations

import sys

import click

from .config import ConfigError, GatewayConfig, load_config

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="TOML file."
)


def config_or_exit(path: str | None) -> GatewayConfig:
    """The configuration, or exit 2 with the error that names the key and the fix."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def persisted_file(value: str, key: str) -> str:
    """A store's file from the configuration; exit 2 when it is empty (nothing would persist)."""
    if not value:
        click.echo(f"{key} is empty: nothing would be persisted", err=True)
        sys.exit(2)
    return value
