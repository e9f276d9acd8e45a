"""Charge point records, UI tokens and boot states in Redis, shared by every node.

Layout (all keys in one hash slot, `{state}`, so each write is one atomic script on Redis Cluster):
`<prefix>{state}:records` and `<prefix>{state}:tokens` are hashes of JSON documents (by identity,
by token hash); `<prefix>{state}:version:<kind>` counts their changes; `<prefix>{state}:boots`
holds the last BootNotification status per identity. Every change is announced on the channel
`<prefix>state` so nodes apply it at once; the version counters catch announcements that were lost.

The CLI uses the synchronous stores here; the nodes keep a mirror (`gateway.cluster.mirror`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from security.records import ChargePointRecord, DowngradeRefused
from security.tokens import ApiToken, revoke_in

RECORDS, TOKENS = "records", "tokens"

# KEYS: hash, version counter. ARGV: field, document ('' deletes), channel, kind, check_downgrade.
# Returns 1 (written or deleted), 0 (nothing to delete) or {"downgrade", old_profile}.
WRITE_SCRIPT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if not old then return 0 end
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  if old and ARGV[5] == '1' then
    local before = cjson.decode(old)['security_profile'] or 0
    local after = cjson.decode(ARGV[2])['security_profile'] or 0
    if after < before then return {'downgrade', before} end
  end
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({kind = ARGV[4], key = ARGV[1]}))
return 1
"""


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
        """The change counter of `kind`."""
        return f"{self._prefix}{{state}}:version:{kind}"

    def write_args(self, kind: str, key: str, document: bytes, check: bool) -> tuple[list, list]:
        """KEYS and ARGV of WRITE_SCRIPT."""
        return (
            [self.hash(kind), self.version(kind)],
            [key, document, self.channel, kind, "1" if check else "0"],
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


def raise_if_downgrade(result: Any, record: ChargePointRecord) -> None:
    """Turn the script's downgrade answer into `DowngradeRefused`."""
    if isinstance(result, list) and result and result[0] in (b"downgrade", "downgrade"):
        raise DowngradeRefused(
            f"{record.identity}: security profile {int(result[1])} -> "
            f"{record.security_profile} is a downgrade; use --force-downgrade (audited)"
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
        keys, args = self._keys.write_args(
            RECORDS, record.identity, record_document(record), not allow_downgrade
        )
        raise_if_downgrade(self._write(keys=keys, args=args), record)

    def remove(self, identity: str) -> bool:
        keys, args = self._keys.write_args(RECORDS, identity, b"", False)
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
        keys, args = self._keys.write_args(TOKENS, token.hash, token_document(token), False)
        self._write(keys=keys, args=args)

    def all(self) -> list[ApiToken]:
        raw = self._client.hgetall(self._keys.hash(TOKENS))
        return sorted((parse_token(v) for v in raw.values()), key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id; True when found."""
        return revoke_in(self, token_id)


def announce_reload(client: Any, prefix: str) -> None:
    """Tell every node to reload its CA store now (synchronous client, used by the CLI)."""
    client.publish(StateKeys(prefix).channel, orjson.dumps({"kind": "reload"}))
