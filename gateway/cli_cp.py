"""`ocpp-gateway cp ...`: charge point records (security profile, credentials, certificate subject).

Passwords are never taken from the command line (shell history, `ps`): they are prompted for, or
generated and shown once. Only an argon2id hash is stored.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import click
import orjson

from security.audit import AuditLog
from security.passwords import (
    PasswordRuleError,
    generate_authorization_key,
    generate_password,
    hash_password,
    password_bytes_v2,
    password_bytes_v16,
)
from security.records import ChargePointRecord, DowngradeRefused, RecordStore

from .cli_common import config_option, config_or_exit, record_store
from .cluster.state import RedisRecordStore
from .config import KNOWN_SUBPROTOCOLS
from .identity import IdentityError, IdentityRules


def _store(config_path: str | None) -> RecordStore:
    return record_store(config_or_exit(config_path))


def _audit(config_path: str | None) -> AuditLog:
    """The audit log of `security.audit_log`, checked writable before anything changes."""
    audit = AuditLog(config_or_exit(config_path).security.audit_log)
    try:
        audit.check_writable()
    except OSError as exc:
        click.echo(f"cannot write the audit log {audit.path}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    return audit


@contextmanager
def _refusals_audited(audit: AuditLog, action: str, identity: str) -> Iterator[dict[str, str]]:
    """Audit a usage error raised inside as `refused`; the yielded dict may rename the action."""
    names = {"action": action}
    try:
        yield names
    except click.ClickException as exc:
        audit.record(
            names["action"], result="refused", identity=identity, reason=exc.format_message()
        )
        raise


def _audit_fields(record: ChargePointRecord) -> dict[str, object]:
    """What the audit line says about a record: never the password hash, only whether it is set."""
    return {
        "profile": record.security_profile,
        "credential": "set" if record.password_hash else None,
        "enabled": record.enabled,
    }


def _check_identity(identity: str) -> None:
    rules = IdentityRules("/ocpp")
    if isinstance(rules.parse(b"/ocpp/" + identity.encode()), IdentityError) or "%" in identity:
        raise click.BadParameter("not a valid charge point identity (OCPP-J 3.1.1)")


def record_options(command: click.Command) -> click.Command:
    """The options shared by `cp add` and `cp set`."""
    options = [
        click.option("--profile", type=click.IntRange(0, 3), help="Security profile 0-3."),
        click.option(
            "--password-prompt", is_flag=True, help="Prompt for a 2.0.1/2.1 BasicAuthPassword."
        ),
        click.option(
            "--generate-password", is_flag=True, help="Generate a BasicAuthPassword (shown once)."
        ),
        click.option(
            "--authorization-key-prompt",
            is_flag=True,
            help="Prompt for a 1.6 AuthorizationKey in hex (16-20 bytes).",
        ),
        click.option(
            "--generate-authorization-key",
            is_flag=True,
            help="Generate a 1.6 AuthorizationKey (shown once, as hex).",
        ),
        click.option(
            "--versions",
            help=f"Allowed subprotocols, comma-separated ({', '.join(KNOWN_SUBPROTOCOLS)}).",
        ),
        click.option("--cn", "expected_cn", help="Expected certificate CN (default: identity)."),
        click.option("--org", "expected_o", help="Expected certificate O (CPO name)."),
        click.option("--validation", type=click.Choice(["strict", "lenient"])),
        click.option("--enabled/--disabled", default=None, help="Allow or block connections."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _password_hash(opts: dict) -> str | None:
    chosen = [
        k
        for k in (
            "password_prompt",
            "generate_password",
            "authorization_key_prompt",
            "generate_authorization_key",
        )
        if opts[k]
    ]
    if len(chosen) > 1:
        raise click.UsageError("choose one way to set the password")
    if not chosen:
        return None
    try:
        if opts["generate_password"]:
            password = generate_password()
            click.echo(f"BasicAuthPassword (shown once): {password}", err=True)
            return hash_password(password_bytes_v2(password))
        if opts["generate_authorization_key"]:
            key = generate_authorization_key()
            click.echo(f"AuthorizationKey (shown once, hex): {key}", err=True)
            return hash_password(password_bytes_v16(key))
        if opts["password_prompt"]:
            password = click.prompt("BasicAuthPassword", hide_input=True, confirmation_prompt=True)
            return hash_password(password_bytes_v2(password))
        key = click.prompt("AuthorizationKey (hex)", hide_input=True, confirmation_prompt=True)
        return hash_password(password_bytes_v16(key.strip()))
    except PasswordRuleError as exc:
        raise click.UsageError(str(exc)) from None


def _versions(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    versions = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = set(versions) - set(KNOWN_SUBPROTOCOLS)
    if unknown or not versions:
        raise click.BadParameter(f"use some of {', '.join(KNOWN_SUBPROTOCOLS)}")
    return versions


def _show(record: ChargePointRecord) -> dict:
    data = record.to_json()
    data["password_hash"] = "set" if record.password_hash else None
    return data


@click.group("cp")
def cp() -> None:
    """Manage charge point records."""


@cp.command("add")
@click.argument("identity")
@record_options
@config_option
def cp_add(identity: str, config_path: str | None, **opts: object) -> None:
    """Create the record of IDENTITY."""
    audit = _audit(config_path)
    with _refusals_audited(audit, "cp.add", identity):
        _check_identity(identity)
        store = _store(config_path)
        if store.get(identity) is not None:
            raise click.UsageError(f"{identity} exists: use 'cp set'")
        profile = opts["profile"] if opts["profile"] is not None else 0
        password_hash = _password_hash(opts)
        if profile in (1, 2) and password_hash is None:
            raise click.UsageError(f"profile {profile} needs a password: --generate-password, ...")
        record = ChargePointRecord(
            identity,
            profile,
            password_hash,
            _versions(opts["versions"]),  # type: ignore[arg-type]
            opts["expected_cn"],
            opts["expected_o"],
            opts["validation"],  # type: ignore[arg-type]
            opts["enabled"] if opts["enabled"] is not None else True,  # type: ignore[arg-type]
        )
        store.put(record)
    audit.record("cp.add", identity=identity, **_audit_fields(record))
    click.echo(orjson.dumps(_show(record)).decode())


@cp.command("set")
@click.argument("identity")
@record_options
@click.option("--force-downgrade", is_flag=True, help="Allow lowering the security profile.")
@config_option
def cp_set(identity: str, config_path: str | None, force_downgrade: bool, **opts: object) -> None:
    """Change the record of IDENTITY (a lower profile needs --force-downgrade)."""
    audit = _audit(config_path)
    with _refusals_audited(audit, "cp.set", identity) as names:
        store = _store(config_path)
        record = store.get(identity)
        if record is None:
            raise click.UsageError(f"no record for {identity}: use 'cp add'")
        changes: dict[str, object] = {}
        for key in ("expected_cn", "expected_o", "validation", "enabled"):
            if opts[key] is not None:
                changes[key] = opts[key]
        if opts["profile"] is not None:
            changes["security_profile"] = opts["profile"]
            if opts["profile"] < record.security_profile:  # type: ignore[operator]
                names["action"] = "cp.downgrade"
        if opts["versions"] is not None:
            changes["allowed_versions"] = _versions(opts["versions"])  # type: ignore[arg-type]
        password_hash = _password_hash(opts)
        if password_hash is not None:
            changes["password_hash"] = password_hash
        updated = replace(record, **changes)  # type: ignore[arg-type]
        if updated.security_profile in (1, 2) and not updated.password_hash:
            raise click.UsageError("profiles 1 and 2 need a password")
        try:
            if isinstance(store, RedisRecordStore):  # only the changed fields: nodes write too
                document = updated.to_json()
                fields = {key: document[key] for key in changes}
                stored = store.patch(identity, fields, allow_downgrade=force_downgrade)
                if stored is None:
                    raise click.UsageError(f"{identity} was removed meanwhile")
                updated = stored
            else:
                store.put(updated, allow_downgrade=force_downgrade)
        except DowngradeRefused as exc:
            raise click.UsageError(str(exc)) from None
    changed = sorted("credential" if k == "password_hash" else k for k in changes)
    audit.record(
        names["action"],
        identity=identity,
        changed=changed,
        previous_profile=record.security_profile,
        **_audit_fields(updated),
    )
    click.echo(orjson.dumps(_show(updated)).decode())


@cp.command("show")
@click.argument("identity")
@config_option
def cp_show(identity: str, config_path: str | None) -> None:
    """Print the record of IDENTITY (never the password)."""
    record = _store(config_path).get(identity)
    if record is None:
        click.echo(f"no record for {identity}", err=True)
        sys.exit(1)
    click.echo(orjson.dumps(_show(record), option=orjson.OPT_INDENT_2).decode())


@cp.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@config_option
def cp_list(as_json: bool, config_path: str | None) -> None:
    """List every record."""
    for record in _store(config_path).all():
        if as_json:
            click.echo(orjson.dumps(_show(record)).decode())
        else:
            state = "enabled" if record.enabled else "disabled"
            click.echo(f"{record.identity}\tprofile {record.security_profile}\t{state}")


@cp.command("remove")
@click.argument("identity")
@config_option
def cp_remove(identity: str, config_path: str | None) -> None:
    """Delete the record of IDENTITY (a running gateway closes its session)."""
    audit = _audit(config_path)
    if not _store(config_path).remove(identity):
        audit.record("cp.remove", result="refused", identity=identity, reason="no_record")
        click.echo(f"no record for {identity}", err=True)
        sys.exit(1)
    audit.record("cp.remove", identity=identity)
    click.echo(f"removed {identity}")
