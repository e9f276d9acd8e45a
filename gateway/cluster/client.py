"""Redis clients with the gateway's timeouts and one quick retry on a dropped connection.

After a Redis restart or failover every pooled connection is dead; without a retry, the first
command on each fails. Commands retried here are safe to repeat: scripts and stream appends are
idempotent by design (claims carry epochs, state writes are whole documents, broker entries are
deduplicated by id).
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

TIMEOUT = 5.0  # a blackholed Redis must not stall reloads, claims or closes
_RETRY_ON = [redis.ConnectionError, redis.TimeoutError]


def connect(url: str, timeout: float = TIMEOUT) -> aioredis.Redis:
    """An asyncio client of `url`."""
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=_RETRY_ON,
    )


def connect_sync(url: str, timeout: float = TIMEOUT) -> redis.Redis:
    """A synchronous client of `url` (the CLI)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=_RETRY_ON,
    )
