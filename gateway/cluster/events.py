"""Session events shared by all nodes, so UI subscribers on any node see every charge point.

Each node forwards its own events to one Redis pub/sub channel and delivers the other nodes'
events to its local listeners. Forwarding never blocks the charge point path: events go into a
bounded queue that a background task publishes in pipelined batches (one round trip per batch);
when Redis is slow the oldest events are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from ..events import GatewayEvent
from ..logs import event
from .bus import listen_forever

log = logging.getLogger("gateway.cluster")
MAX_BATCH = 500


class ClusterEvents:
    """Forwards local events to the other nodes and delivers theirs here."""

    def __init__(self, redis: Any, prefix: str, node: str, capacity: int = 10_000) -> None:
        self._redis = redis
        self._channel = f"{prefix}events"
        self._node = node
        self._queue: deque[bytes] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events waiting to be published (a metric)."""
        return len(self._queue)

    def forward(self, gateway_event: GatewayEvent) -> None:
        """Queue a local event for the other nodes (never blocks)."""
        if len(self._queue) >= self._capacity:
            self._queue.popleft()
            self.dropped += 1
        payload = {"node": self._node, "event": dataclasses.asdict(gateway_event)}
        self._queue.append(orjson.dumps(payload))
        self._wakeup.set()

    async def start(self, deliver: Callable[[GatewayEvent], None]) -> None:
        """Start publishing queued events and delivering the other nodes' events to `deliver`."""

        def on_message(data: bytes) -> None:
            try:
                message = orjson.loads(data)
                if message.get("node") == self._node:
                    return
                deliver(GatewayEvent(**message["event"]))
            except (TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
                event(log, "cluster_event_malformed", logging.WARNING)

        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish()),
            loop.create_task(listen_forever(self._redis, self._channel, on_message)),
        ]

    async def _publish(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for item in batch:
                            pipe.publish(self._channel, item)
                        await pipe.execute()
                except Exception as exc:  # Redis down: these events are lost, say so once
                    self.dropped += len(batch)
                    event(
                        log,
                        "cluster_events_dropped",
                        logging.WARNING,
                        count=len(batch),
                        error=str(exc)[:200],
                    )

    async def stop(self) -> None:
        """Stop both tasks."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
