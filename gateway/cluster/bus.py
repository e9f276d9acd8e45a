"""Messages between nodes: each node listens on its own Redis pub/sub channel.

Used for takeovers (a newer session of an identity on another node closes the old one). Pub/sub is
fire-and-forget: if the old node misses the message, its claim refresh fails (the epoch moved on)
and it closes the session within one refresh interval anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from ..logs import event

log = logging.getLogger("gateway.cluster")
IDLE_PING = 15.0  # seconds without a message before a pub/sub connection is pinged
PONG_TIMEOUT = 5.0  # then dead (resubscribed) if nothing answers within this
Handler = Callable[[dict[str, Any]], None]


class RedisBus:
    """Node-addressed messages over Redis pub/sub."""

    def __init__(self, redis: Any, prefix: str, node: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self.node = node
        self._task: asyncio.Task[None] | None = None

    def _channel(self, node: str) -> str:
        return f"{self._prefix}node:{node}"

    async def publish(self, node: str, message: dict[str, Any]) -> None:
        """Send `message` to `node` (lost if the node is not listening)."""
        await self._redis.publish(self._channel(node), orjson.dumps(message))

    async def start(self, handler: Handler) -> None:
        """Listen on this node's channel (resubscribing with backoff); `handler` gets messages."""

        def on_message(data: bytes) -> None:
            try:
                handler(orjson.loads(data))
            except Exception:
                log.exception("cluster message handler failed")

        def on_subscribed() -> None:
            event(log, "cluster_bus_listening", node=self.node)

        self._task = asyncio.get_running_loop().create_task(
            listen_forever(self._redis, self._channel(self.node), on_message, on_subscribed)
        )

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class SilentChannel(ConnectionError):
    """The pub/sub connection answered nothing, not even a ping: its path died silently."""


async def listen_forever(
    redis: Any,
    channel: str,
    on_message: Callable[[bytes], None],
    on_subscribed: Callable[[], None] = lambda: None,
) -> None:
    """Deliver a channel's messages; when Redis goes away, resubscribe with backoff (0.1-5 s).

    `on_subscribed` runs each time the subscription is live (Redis confirmed it), the first time
    and after every resubscription: what was published before then was not delivered (pub/sub
    keeps nothing), so that is when a listener re-reads the state the messages announce.

    A connection whose path dies without a FIN or RST (a failover behind a virtual IP, a NAT or
    load balancer forgetting an idle flow) would wait for messages forever: after `IDLE_PING`
    seconds of silence the listener pings, and with no answer `PONG_TIMEOUT` seconds later it
    drops the connection and resubscribes.
    """
    loop = asyncio.get_running_loop()
    delay = 0.1
    while True:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            heard, pinged = loop.time(), None
            while True:
                message = await pubsub.get_message(timeout=min(1.0, PONG_TIMEOUT))
                now = loop.time()
                if message is None:
                    if pinged is None and now - heard >= IDLE_PING:
                        await pubsub.ping()
                        pinged = now
                    elif pinged is not None and now - pinged >= PONG_TIMEOUT:
                        raise SilentChannel(f"no answer to a ping within {PONG_TIMEOUT} s")
                    continue
                heard, pinged = now, None  # anything (a pong too) shows the path is alive
                kind = message["type"]
                if kind == "message":
                    on_message(message["data"])
                elif kind == "subscribe":  # Redis's confirmation: live from here on
                    delay = 0.1
                    on_subscribed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            event(
                log,
                "cluster_channel_lost",
                logging.WARNING,
                channel=channel,
                error=str(exc)[:200],
                retry_in=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        finally:
            with contextlib.suppress(Exception):  # a dead path must not hold the close either
                await asyncio.wait_for(pubsub.aclose(), 1.0)
