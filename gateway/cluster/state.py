"""Charge point records, UI tokens and boot states in Redis, shared by every node.

Layout (all keys in one hash slot, `{state}`, so each write is one atomic script on Redis Cluster):
`<prefix>{state}:records` and `<prefix>{state}:tokens` are hashes of JSON documents (by identity,
by token hash); `<prefix>{state}:version:<kind>` holds a random token replaced at every change (a
counter could fall back to an old value after a failover and hide changes); `<prefix>{state}:boots`
holds the last BootNotification status per identity. Every change is announced on the channel
`<prefix>state` so nodes apply it at once; the version tokens catch announcements that were lost.

Writes say what they mean, so that concurrent writers never undo each other's changes:
`put` replaces a document (the CLI), `put_checked` too unless it lowers the security profile,
`create` writes only when absent (auto-registration, restoring lost data), `patch` sets some fields
of an existing document (a node's password rotation or profile upgrade, the CLI's `cp set`: never
re-creates a record that was removed meanwhile, never lowers a profile; `patch_any` may, for an
audited forced downgrade) and `delete` removes one.

The CLI uses the synchronous stores here; the nodes keep a mirror (`gateway.cluster.mirror`).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Any, Literal

import orjson

from security.records import ChargePointRecord, DowngradeRefused
from security.tokens import ApiToken, revoke_in

RECORDS, TOKENS = "records", "tokens"
WriteMode = Literal["put", "put_checked", "create", "patch", "patch_any", "delete"]

# KEYS: hash, version. ARGV: field, mode, document, channel, kind, version token.
# Returns 1 (done), 0 (nothing to delete), {"exists"} (create), {"gone"} (patch) or
# {"downgrade", stored_profile, requested_profile} (put_checked, patch).
WRITE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local mode, new = ARGV[2], ARGV[3]
if mode == 'delete' then
  if not old then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
elseif mode == 'create' then
  if old then return {'exists'} end
  redis.call('HSET', KEYS[1], ARGV[1], new)
else
  if mode == 'patch' or mode == 'patch_any' then
    if not old then return {'gone'} end
    local merged = cjson.decode(old)
    for field, value in pairs(cjson.decode(new)) do merged[field] = value end
    new = cjson.encode(merged)
  end
  if old and mode ~= 'put' and mode ~= 'patch_any' then
    local before = cjson.decode(old)['security_profile'] or 0
    local after = cjson.decode(new)['security_profile'] or 0
    if after < before then return {'downgrade', before, after} end
  end
  redis.call('HSET', KEYS[1], ARGV[1], new)
end
redis.call('SET', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[4], cjson.encode({kind = ARGV[5], key = ARGV[1]}))
return 1
"""


def refusal(result: Any) -> str | None:
    """Why the script refused a write ("exists", "gone", "downgrade"), or None when it wrote."""
    if isinstance(result, list) and result:
        reason = result[0]
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return None


class StateKeys:
    """Key and channel names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.channel = f"{prefix}state"
        self.boots = f"{prefix}{{state}}:boots"
        self.generation = f"{prefix}{{state}}:generation"  # set once per life of the data
        self._prefix = prefix

    def hash(self, kind: str) -> str:
        """The hash holding the documents of `kind` (records or tokens)."""
        return f"{self._prefix}{{state}}:{kind}"

    def version(self, kind: str) -> str:
        """The version token of `kind` (new at every change)."""
        return f"{self._prefix}{{state}}:version:{kind}"

    def write_args(
        self, kind: str, key: str, mode: WriteMode, document: bytes = b""
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of WRITE_SCRIPT."""
        return (
            [self.hash(kind), self.version(kind)],
            [key, mode, document, self.channel, kind, secrets.token_hex(8)],
        )


def record_document(record: ChargePointRecord) -> bytes:
    """A record as stored in Redis."""
    return orjson.dumps(record.to_json())


def token_document(token: ApiToken) -> bytes:
    """A token (its hash, never the secret) as stored in Redis."""
    return orjson.dumps(asdict(token))


def parse_record(raw: bytes | str) -> ChargePointRecord:
    """The record of a stored document."""
    return ChargePointRecord.from_json(orjson.loads(raw))


def parse_token(raw: bytes | str) -> ApiToken:
    """The token of a stored document."""
    data = orjson.loads(raw)
    return ApiToken(**{**data, "scopes": tuple(data["scopes"])})


def raise_if_downgrade(result: Any, identity: str) -> None:
    """Turn the script's downgrade answer into `DowngradeRefused` (stored -> requested profile)."""
    if refusal(result) == "downgrade":
        raise DowngradeRefused(
            f"{identity}: security profile {int(result[1])} -> {int(result[2])} is a downgrade; "
            "use --force-downgrade (audited)"
        )


class RedisRecordStore:
    """Charge point records in Redis, for the CLI (synchronous client; every call goes to Redis)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._keys = StateKeys(prefix)
        self._write = client.register_script(WRITE_SCRIPT)

    def get(self, identity: str) -> ChargePointRecord | None:
        raw = self._client.hget(self._keys.hash(RECORDS), identity)
        return parse_record(raw) if raw is not None else None

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        mode: WriteMode = "put" if allow_downgrade else "put_checked"
        keys, args = self._keys.write_args(RECORDS, record.identity, mode, record_document(record))
        raise_if_downgrade(self._write(keys=keys, args=args), record.identity)

    def create(self, record: ChargePointRecord) -> bool:
        """Write `record` only if its identity has none; True when written."""
        keys, args = self._keys.write_args(
            RECORDS, record.identity, "create", record_document(record)
        )
        return refusal(self._write(keys=keys, args=args)) is None

    def patch(
        self, identity: str, fields: dict[str, Any], *, allow_downgrade: bool = False
    ) -> ChargePointRecord | None:
        """Set `fields` of the record as Redis holds it now (changes made elsewhere meanwhile, such
        as a rotated password, are kept); the result, or None when the record is gone."""
        mode: WriteMode = "patch_any" if allow_downgrade else "patch"
        keys, args = self._keys.write_args(RECORDS, identity, mode, orjson.dumps(fields))
        result = self._write(keys=keys, args=args)
        if refusal(result) == "gone":
            return None
        raise_if_downgrade(result, identity)
        return self.get(identity)

    def remove(self, identity: str) -> bool:
        keys, args = self._keys.write_args(RECORDS, identity, "delete")
        return self._write(keys=keys, args=args) == 1

    def all(self) -> list[ChargePointRecord]:
        raw = self._client.hgetall(self._keys.hash(RECORDS))
        return sorted((parse_record(v) for v in raw.values()), key=lambda r: r.identity)


class RedisTokenStore:
    """UI tokens in Redis, for the CLI (synchronous client)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._keys = StateKeys(prefix)
        self._write = client.register_script(WRITE_SCRIPT)

    def by_hash(self, digest: str) -> ApiToken | None:
        raw = self._client.hget(self._keys.hash(TOKENS), digest)
        return parse_token(raw) if raw is not None else None

    def put(self, token: ApiToken) -> None:
        keys, args = self._keys.write_args(TOKENS, token.hash, "put", token_document(token))
        self._write(keys=keys, args=args)

    def create(self, token: ApiToken) -> bool:
        """Write `token` only if its hash is unknown; True when written."""
        keys, args = self._keys.write_args(TOKENS, token.hash, "create", token_document(token))
        return refusal(self._write(keys=keys, args=args)) is None

    def all(self) -> list[ApiToken]:
        raw = self._client.hgetall(self._keys.hash(TOKENS))
        return sorted((parse_token(v) for v in raw.values()), key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id; True when found."""
        return revoke_in(self, token_id)


def announce_reload(client: Any, prefix: str) -> None:
    """Tell every node to reload its CA store now (synchronous client, used by the CLI)."""
    client.publish(StateKeys(prefix).channel, orjson.dumps({"kind": "reload"}))
