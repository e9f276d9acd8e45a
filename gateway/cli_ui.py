"""`ocpp-gateway ui token ...`: API tokens for UI clients (shown once; only a hash is stored)."""

from __future__ import annotations

import re
import sys
import time

import click
import orjson

from security.tokens import ROLES, JsonFileTokenStore, new_token

from .cli_common import config_option, config_or_exit, token_store
from .cluster.state import RedisTokenStore

_DURATION = re.compile(r"^(\d+)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _store(config_path: str | None) -> RedisTokenStore | JsonFileTokenStore:
    return token_store(config_or_exit(config_path))


def parse_duration(value: str) -> float:
    """'90s', '15m', '12h', '30d' -> seconds."""
    match = _DURATION.match(value.strip())
    if not match:
        raise click.BadParameter("write a duration like 90s, 15m, 12h or 30d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@click.group("ui")
def ui() -> None:
    """The operator UI API."""


@ui.group("token")
def token() -> None:
    """Create, list and revoke UI API tokens."""


@token.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--scope", "scopes", multiple=True, help="Identity glob pattern (repeatable).")
@click.option("--expires", help="Lifetime, e.g. 30d, 12h (default: no expiry).")
@click.option("--name", default="", help="What the token is for.")
@config_option
def create(
    role: str, scopes: tuple[str, ...], expires: str | None, name: str, config_path: str | None
) -> None:
    """Create a token; it is printed once and never stored in clear."""
    lifetime = parse_duration(expires) if expires else None
    secret, record = new_token(role, scopes or ("*",), lifetime, name)  # type: ignore[arg-type]
    _store(config_path).put(record)
    click.echo(secret)
    click.echo(
        f"token {record.token_id}: role {record.role}, scopes {', '.join(record.scopes)}"
        + (
            f", expires {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(record.expires_at))}"
            if record.expires_at
            else ""
        ),
        err=True,
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
def list_tokens(as_json: bool, config_path: str | None) -> None:
    """List tokens (never their secrets)."""
    now = time.time()
    for record in _store(config_path).all():
        state = "revoked" if record.revoked else "expired" if not record.valid_at(now) else "valid"
        data = {
            "token_id": record.token_id,
            "name": record.name,
            "role": record.role,
            "scopes": list(record.scopes),
            "expires_at": record.expires_at,
            "state": state,
        }
        if as_json:
            click.echo(orjson.dumps(data).decode())
        else:
            click.echo(
                f"{record.token_id}\t{record.role}\t{state}\t{','.join(record.scopes)}\t"
                f"{record.name}"
            )


@token.command("revoke")
@click.argument("token_id")
@config_option
def revoke(token_id: str, config_path: str | None) -> None:
    """Revoke a token by id (its open connections close at their next message)."""
    if not _store(config_path).revoke(token_id):
        click.echo(f"no valid token {token_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {token_id}")
