"""`ocpp-gateway state ...`: the shared state in Redis (moving from files, and what is there)."""

from __future__ import annotations

import sys
from dataclasses import replace

import click
import orjson

from security.audit import AuditLog
from security.records import DowngradeRefused, JsonFileRecordStore
from security.tokens import JsonFileTokenStore

from .cli_common import config_option, config_or_exit, redis_or_exit
from .cluster.state import RECORDS, TOKENS, RedisRecordStore, RedisTokenStore, StateKeys
from .stores import in_redis


@click.group("state")
def state() -> None:
    """Charge point records, UI tokens and boot states kept in Redis."""


@state.command("import")
@click.option("--records", "records_file", help="Records file (default: security.records_file).")
@click.option("--tokens", "tokens_file", help="Tokens file (default: ui.tokens_file).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace what Redis holds already (never lowering a profile, never un-revoking).",
)
@config_option
def import_files(
    records_file: str | None, tokens_file: str | None, overwrite: bool, config_path: str | None
) -> None:
    """Copy records and tokens from JSON files into Redis (moving a deployment to Redis).

    By default only what Redis does not hold is added: running it again never undoes a change
    made since (a removed record stays removed only if it is not in the file, so run it once).
    """
    config = config_or_exit(config_path)
    if not in_redis(config):
        click.echo("redis.url is empty or redis.state_store is 'files': no import", err=True)
        sys.exit(2)
    audit = AuditLog(config.security.audit_log)
    client = redis_or_exit(config)
    records = RedisRecordStore(client, config.redis.key_prefix)
    tokens = RedisTokenStore(client, config.redis.key_prefix)
    imported, kept = 0, []
    source = records_file or config.security.records_file
    for record in JsonFileRecordStore(source).all() if source else []:
        try:
            if overwrite:
                records.put(record)
            elif not records.create(record):
                kept.append(record.identity)
                continue
            imported += 1
        except DowngradeRefused:
            kept.append(record.identity)
    token_count, tokens_kept = 0, 0
    source_tokens = tokens_file or config.ui.tokens_file
    for token in JsonFileTokenStore(source_tokens).all() if source_tokens else []:
        current = tokens.by_hash(token.hash)
        if current is None and tokens.create(token):
            token_count += 1
        elif overwrite and current is not None:
            tokens.put(replace(token, revoked=token.revoked or current.revoked))
            token_count += 1
        else:
            tokens_kept += 1
    audit.record(
        "state.import",
        records=imported,
        ui_clients=token_count,
        kept_existing=kept,
        overwrite=overwrite,
    )
    click.echo(f"imported {imported} records and {token_count} tokens into Redis")
    for identity in kept:
        click.echo(f"kept {identity}: Redis holds it already (or a higher profile)", err=True)
    if tokens_kept:
        click.echo(f"kept {tokens_kept} tokens Redis holds already", err=True)


@state.command("show")
@config_option
def show(config_path: str | None) -> None:
    """Counts of what Redis holds, as JSON."""
    config = config_or_exit(config_path)
    if not config.redis.url:
        click.echo("redis.url is empty: the state lives in files", err=True)
        sys.exit(2)
    client = redis_or_exit(config)
    keys = StateKeys(config.redis.key_prefix)
    generation = client.get(keys.generation)
    summary = {
        "store": config.redis.state_store,
        "records": client.hlen(keys.hash(RECORDS)),
        "tokens": client.hlen(keys.hash(TOKENS)),
        "boot_states": client.hlen(keys.boots),
        "versions": {
            kind: (client.get(keys.version(kind)) or b"").decode() or None
            for kind in (RECORDS, TOKENS)
        },
        "generation": generation.decode() if generation else None,
    }
    click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
