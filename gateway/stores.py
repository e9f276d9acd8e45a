"""Where a node keeps charge point records, UI tokens and boot states: files or memory (one node,
or nodes sharing a volume) or Redis (every node shares them; see `gateway.cluster.state`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from security.records import InMemoryRecordStore, JsonFileRecordStore, RecordStore
from security.tokens import InMemoryTokenStore, JsonFileTokenStore, TokenStore

from .cluster.mirror import BootStates, MirroredRecordStore, MirroredTokenStore, StateMirror
from .config import GatewayConfig


@dataclass
class Stores:
    """The stores of one node; `mirror` and `boots` are set when they live in Redis."""

    records: RecordStore
    tokens: TokenStore
    mirror: StateMirror | None = None
    boots: BootStates | None = None


def in_redis(config: GatewayConfig) -> bool:
    """True when records, tokens and boot states live in Redis."""
    return bool(config.redis.url) and config.redis.state_store == "redis"


def open_stores(
    config: GatewayConfig,
    redis: Any = None,
    records: RecordStore | None = None,
    tokens: TokenStore | None = None,
) -> Stores:
    """The configured stores; `records`/`tokens` given by the caller (tests) win."""
    if in_redis(config) and redis is not None:
        mirrored_records = MirroredRecordStore() if records is None else None
        mirrored_tokens = MirroredTokenStore() if tokens is None else None
        prefix = config.redis.key_prefix
        return Stores(
            records or mirrored_records,  # type: ignore[arg-type]
            tokens or mirrored_tokens,  # type: ignore[arg-type]
            StateMirror(redis, prefix, mirrored_records, mirrored_tokens),
            BootStates(redis, prefix),
        )
    records_file, tokens_file = config.security.records_file, config.ui.tokens_file
    return Stores(
        records or (JsonFileRecordStore(records_file) if records_file else InMemoryRecordStore()),
        tokens or (JsonFileTokenStore(tokens_file) if tokens_file else InMemoryTokenStore()),
    )
