"""What the CLI commands share: the `--config` option and loading the configuration."""

from __future__ import annotations

import sys
from typing import Any

import click
import redis

from security.records import JsonFileRecordStore, RecordStore
from security.tokens import JsonFileTokenStore

from .cluster.client import connect_sync
from .cluster.state import RedisRecordStore, RedisTokenStore
from .config import ConfigError, GatewayConfig, load_config
from .stores import in_redis

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


def redis_or_exit(config: GatewayConfig) -> Any:
    """A synchronous client of the configured Redis; exit 2 when it does not answer."""
    client = connect_sync(config.redis.url)
    try:
        client.ping()
    except redis.RedisError as exc:  # the message names host and port, never the password
        click.echo(f"cannot reach Redis (redis.url): {exc}", err=True)
        sys.exit(2)
    return client


def record_store(config: GatewayConfig) -> RecordStore:
    """The charge point records the gateway uses: in Redis or in security.records_file."""
    if in_redis(config):
        return RedisRecordStore(redis_or_exit(config), config.redis.key_prefix)
    return JsonFileRecordStore(
        persisted_file(config.security.records_file, "security.records_file")
    )


def persistent_record_store(config: GatewayConfig) -> RecordStore | None:
    """The records the gateway checks charge points against, as `record_store`, for commands that
    only read them: None when it keeps none (no Redis state store and an empty
    security.records_file: records in memory). Redis is not asked here: when it does not answer,
    the first read raises `redis.RedisError`, for the caller to refuse (and audit)."""
    if in_redis(config):
        return RedisRecordStore(connect_sync(config.redis.url), config.redis.key_prefix)
    if not config.security.records_file:
        return None
    return JsonFileRecordStore(config.security.records_file)


def token_store(config: GatewayConfig) -> RedisTokenStore | JsonFileTokenStore:
    """The UI tokens the gateway uses: in Redis or in ui.tokens_file."""
    if in_redis(config):
        return RedisTokenStore(redis_or_exit(config), config.redis.key_prefix)
    return JsonFileTokenStore(persisted_file(config.ui.tokens_file, "ui.tokens_file"))
