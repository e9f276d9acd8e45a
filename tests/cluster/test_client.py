"""The gateway's Redis clients: TCP keepalive, and a pool where a burst waits instead of failing."""

from __future__ import annotations

import asyncio
import socket

from gateway.broker.service import without_backoff
from gateway.cluster.client import MAX_CONNECTIONS, connect

from ..redis_server import start_redis


async def test_redis_connections_use_tcp_keepalive(redis_server):
    """A dead idle path is found by the kernel within about a minute, on every connection."""
    client = connect(redis_server.url)
    try:
        await client.ping()
        (connection,) = client.connection_pool._available_connections
        sock = connection._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    finally:
        await client.aclose()


async def test_a_burst_beyond_the_pool_waits_for_a_connection_instead_of_failing(redis_server):
    """redis-py's default pool raises "Too many connections" past 100 commands in flight."""
    client = connect(redis_server.url)
    quick = without_backoff(client)
    try:
        for each in (client, quick):
            burst = [
                each.execute_command("BLPOP", "nothing:here", "0.2")
                for _ in range(MAX_CONNECTIONS + 50)
            ]
            assert await asyncio.gather(*burst) == [None] * (MAX_CONNECTIONS + 50)
    finally:
        await quick.aclose(close_connection_pool=True)
        await client.aclose()


async def test_a_unix_socket_url_works_without_tcp_options():
    """`redis.url = "unix:///..."` is accepted by the configuration: the client must not pass
    TCP keepalive options to a Unix socket connection (redis-py refuses them)."""
    server = start_redis(unix_socket=True)
    client = connect(f"unix://{server.directory}/redis.sock")
    try:
        assert await client.ping()
        assert await client.set("unix:key", "1") and await client.get("unix:key") == b"1"
    finally:
        await client.aclose()
        server.stop()
