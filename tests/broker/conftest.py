"""Forward mode against real components: redis-server, in-process gateways, the example backend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from examples.backend_consumer import BackendConsumer

from ..conftest import RunningGateway
from ..redis_server import RedisServer
from .support import FAST, StoppableGateways, running_backend


@pytest.fixture
def prefix() -> str:
    """Keys of one test: every test has its own prefix on the shared redis-server."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def gateways() -> AsyncIterator[StoppableGateways]:
    running = StoppableGateways()
    yield running
    await running.stop_all()


@pytest.fixture
def forward_gateway(
    gateways: StoppableGateways, redis_server: RedisServer, prefix: str
) -> Callable[..., Any]:
    """Factory: a gateway in forward mode on the shared Redis; `broker=` options override."""

    async def start(url: str | None = None, node: str = "node-a", **broker: Any) -> RunningGateway:
        return await gateways.start(
            redis={"url": url or redis_server.url, "key_prefix": prefix, "node_id": node},
            broker={"mode": "forward", "answer_timeout_seconds": FAST, **broker},
            # BootNotifications are the tests' traffic (their interval tells who answered): the
            # fallback must not turn a fast loop of them into Pending (boot pacing).
            embedded={"boot_pending_above": 0},
        )

    return start


@pytest.fixture
async def backend(redis_client: aioredis.Redis, prefix: str) -> AsyncIterator[BackendConsumer]:
    async with running_backend(redis_client, prefix) as consumer:
        yield consumer
