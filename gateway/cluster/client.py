"""Redis clients with the gateway's timeouts and one quick retry on a dropped connection.

After a Redis restart or failover every pooled connection is dead; without a retry, the first
command on each fails. Commands retried here are safe to repeat: scripts and stream appends are
idempotent by design (claims carry epochs, state writes are whole documents, broker entries are
deduplicated by id).
"""

from __future__ import annotations

import socket

import redis
import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

TIMEOUT = 5.0  # a blackholed Redis must not stall reloads, claims or closes
_RETRY_ON = [redis.ConnectionError, redis.TimeoutError]
MAX_CONNECTIONS = 200  # per client and process
# TCP keepalive (Linux names): an idle connection whose path died is found within about a minute
# (pub/sub connections also ping: gateway.cluster.bus)
KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}
TCP_OPTIONS = {"socket_keepalive": True, "socket_keepalive_options": KEEPALIVE}


def connect(url: str, timeout: float = TIMEOUT) -> aioredis.Redis:
    """An asyncio client of `url`. At most `MAX_CONNECTIONS` connections: beyond that a command
    waits for one to be free (up to `timeout`) instead of failing at once, as redis-py's default
    pool does past 100 (a burst of claims or announcements then failed with "Too many
    connections" while Redis was fine)."""
    tcp = {} if url.startswith("unix://") else TCP_OPTIONS  # a Unix socket has no keepalive
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=_RETRY_ON,
        **tcp,
    )
    client = aioredis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool, as with from_url
    return client


def connect_sync(url: str, timeout: float = TIMEOUT) -> redis.Redis:
    """A synchronous client of `url` (the CLI)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=_RETRY_ON,
    )
