"""One contract for every record store and token store: memory, JSON file, Redis (the CLI's) and
a node's Redis mirror (written through to a real Redis, then read back by a fresh mirror)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.cluster.mirror import MirroredRecordStore, MirroredTokenStore, StateMirror
from gateway.cluster.state import RedisRecordStore, RedisTokenStore
from security.records import (
    ChargePointRecord,
    DowngradeRefused,
    InMemoryRecordStore,
    JsonFileRecordStore,
)
from security.tokens import InMemoryTokenStore, JsonFileTokenStore, new_token

KINDS = ["memory", "file", "redis", "mirror"]


class Harness:
    """A store, and how to see what a second reader (another process or node) would see."""

    def __init__(self, store: Any, reopen: Any, settle: Any = None) -> None:
        self.store = store
        self.reopen = reopen  # -> a new store over the same persistence
        self._settle = settle

    async def settle(self) -> None:
        if self._settle is not None:
            await self._settle()


async def _harness(kind: str, family: dict[str, Any], tmp_path: Path, url: str, client: Any):
    """A store of `family` (records or tokens) persisted the `kind` way."""
    if kind == "memory":
        store = family["memory"]()
        yield Harness(store, lambda: store)
    elif kind == "file":
        path = tmp_path / "store.json"
        yield Harness(family["file"](path), lambda: family["file"](path))
    else:
        sync = redis.Redis.from_url(url)
        if kind == "redis":
            yield Harness(family["redis"](sync, "c:"), lambda: family["redis"](sync, "c:"))
        else:
            store = family["mirror"]()
            mirror = StateMirror(client, "c:", *family["mirror_slot"](store))
            yield Harness(store, lambda: family["redis"](sync, "c:"), mirror.flush)
        sync.close()


RECORD_STORES = {
    "memory": InMemoryRecordStore,
    "file": JsonFileRecordStore,
    "redis": RedisRecordStore,
    "mirror": MirroredRecordStore,
    "mirror_slot": lambda store: (store, None),
}
TOKEN_STORES = {
    "memory": InMemoryTokenStore,
    "file": JsonFileTokenStore,
    "redis": RedisTokenStore,
    "mirror": MirroredTokenStore,
    "mirror_slot": lambda store: (None, store),
}


@pytest.fixture(params=KINDS)
async def records(request, tmp_path: Path, redis_server, redis_client) -> AsyncIterator[Harness]:
    async for harness in _harness(
        request.param, RECORD_STORES, tmp_path, redis_server.url, redis_client
    ):
        yield harness


@pytest.fixture(params=KINDS)
async def tokens(request, tmp_path: Path, redis_server, redis_client) -> AsyncIterator[Harness]:
    async for harness in _harness(
        request.param, TOKEN_STORES, tmp_path, redis_server.url, redis_client
    ):
        yield harness


async def test_records_put_get_list_remove_and_persist(records: Harness) -> None:
    store = records.store
    assert store.get("CP-A") is None
    first = ChargePointRecord("CP-B", security_profile=1, password_hash="argon2-hash")
    second = ChargePointRecord("CP-A", allowed_versions=("ocpp1.6",), expected_o="ACME")
    store.put(first)
    store.put(second)
    await records.settle()
    for reader in (store, records.reopen()):
        assert reader.get("CP-B") == first
        assert [r.identity for r in reader.all()] == ["CP-A", "CP-B"]
        assert reader.get("CP-A").allowed_versions == ("ocpp1.6",)
    assert store.remove("CP-A") is True
    assert store.remove("CP-A") is False
    await records.settle()
    assert records.reopen().get("CP-A") is None


async def test_records_refuse_a_downgrade_unless_explicitly_allowed(records: Harness) -> None:
    store = records.store
    store.put(ChargePointRecord("CP-D", security_profile=2))
    with pytest.raises(DowngradeRefused):
        store.put(ChargePointRecord("CP-D", security_profile=1))
    await records.settle()
    assert records.reopen().get("CP-D").security_profile == 2
    store.put(ChargePointRecord("CP-D", security_profile=3))
    store.put(ChargePointRecord("CP-D", security_profile=0), allow_downgrade=True)
    await records.settle()
    assert records.reopen().get("CP-D").security_profile == 0


async def test_tokens_put_find_by_hash_list_and_revoke(tokens: Harness) -> None:
    store = tokens.store
    _, older = new_token("viewer", ("CP-*",), name="wall screen")
    _, newer = new_token("admin", expires_in=3600)
    newer = replace(newer, created_at=older.created_at + 1)
    store.put(older)
    store.put(newer)
    await tokens.settle()
    for reader in (store, tokens.reopen()):
        assert reader.by_hash(older.hash) == older
        assert [t.token_id for t in reader.all()] == [older.token_id, newer.token_id]
    assert store.by_hash("0" * 64) is None
    assert store.revoke(older.token_id) is True
    assert store.revoke(older.token_id) is False  # already revoked
    assert store.revoke("nope") is False
    await tokens.settle()
    assert tokens.reopen().by_hash(older.hash).revoked is True
