"""One real redis-server for the cluster tests (flushed before each test), and gateways on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from security.tokens import InMemoryTokenStore

from ..redis_server import RedisServer


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def start_cluster(redis_server: RedisServer, tmp_path, request):
    """Factory: `await start_cluster()` makes a `Cluster` of gateway processes on the session Redis
    (or `redis_url=`), with a key prefix of its own; every process is killed at teardown."""
    from .processes import Cluster

    clusters: list[Cluster] = []

    async def start(redis_url: str | None = None, claim_ttl_seconds: float = 3.0) -> Cluster:
        directory = tmp_path / f"cluster{len(clusters)}"
        directory.mkdir()
        prefix = f"p{len(clusters)}-{request.node.name[:40]}:"
        cluster = Cluster(directory, redis_url or redis_server.url, prefix, claim_ttl_seconds)
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        await cluster.close()


@pytest.fixture
async def nodes(start_gateway, redis_server: RedisServer, request):
    """Two in-process gateways, node-a and node-b, on a flushed Redis with a shared token store:
    `((a, b), tokens, key_prefix)`."""
    prefix = f"n-{request.node.name[:20]}:"
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    tokens = InMemoryTokenStore()
    started = []
    for name in ("node-a", "node-b"):
        started.append(
            await start_gateway(
                tokens=tokens,
                redis={"url": redis_server.url, "node_id": name, "key_prefix": prefix},
            )
        )
    return tuple(started), tokens, prefix
