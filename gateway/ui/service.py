"""What all UI connections of a worker share: tokens, command rate limits, idempotency keys."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from security.tokens import ApiToken, TokenStore, token_hash

from ..config import UiConfig


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass(slots=True)
class UiService:
    """Token checks, per-token command rate limits and the idempotency cache."""

    tokens: TokenStore
    settings: UiConfig
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _idempotent: dict[tuple[str, str], tuple[float, asyncio.Future[Any]]] = field(
        default_factory=dict
    )

    def authenticate(self, secret: str | None) -> ApiToken | None:
        """The valid (known, unexpired, unrevoked) token for this secret, or None."""
        if not secret:
            return None
        token = self.tokens.by_hash(token_hash(secret))
        return token if token is not None and token.valid_at(time.time()) else None

    def still_valid(self, token: ApiToken) -> bool:
        """True while the token has not been revoked or expired since authentication."""
        current = self.tokens.by_hash(token.hash)
        return current is not None and current.valid_at(time.time())

    def allow_command(self, token: ApiToken) -> bool:
        """Take one command from the token's bucket (commands_per_minute, bursts up to that)."""
        rate = self.settings.commands_per_minute / 60.0
        now = time.monotonic()
        bucket = self._buckets.get(token.token_id)
        if bucket is None:
            bucket = self._buckets[token.token_id] = _Bucket(self.settings.commands_per_minute, now)
        bucket.tokens = min(
            self.settings.commands_per_minute, bucket.tokens + (now - bucket.updated) * rate
        )
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def forget(self, token: ApiToken, key: str) -> None:
        """Drop an idempotency key whose first attempt did not complete."""
        self._idempotent.pop((token.token_id, key), None)

    def idempotent(self, token: ApiToken, key: str) -> tuple[asyncio.Future[Any], bool]:
        """The future holding the answer for (token, key), and whether it is new (to run)."""
        now = time.monotonic()
        for stale in [k for k, (expires, _) in self._idempotent.items() if expires < now]:
            del self._idempotent[stale]
        entry = self._idempotent.get((token.token_id, key))
        if entry is not None:
            return entry[1], False
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._idempotent[(token.token_id, key)] = (now + self.settings.idempotency_seconds, future)
        return future, True
