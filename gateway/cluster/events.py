"""Session events shared by all nodes, so UI subscribers on any node see every charge point.

Each node forwards its own events to one Redis pub/sub channel and delivers the other nodes'
events to its local listeners. Forwarding never blocks the charge point path: events go into a
bounded queue that a background task publishes in pipelined batches (one round trip per batch);
when Redis is slow the oldest events are dropped and counted.

Events are forwarded only while another node has watchers (UI clients): a node with local
watchers keeps itself in the `{prefix}watchers` sorted set (score: expiry, refreshed every
second) and announces its first watcher on the channel at once; every node reads the set each
second. Without watchers anywhere, no event is built or sent, so the OCPP hot path costs no Redis
traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from ..events import GatewayEvent
from ..logs import event
from .bus import listen_forever

log = logging.getLogger("gateway.cluster")
MAX_BATCH = 500
WATCH_REFRESH_SECONDS = 1.0
WATCH_TTL_SECONDS = 5.0  # a node that stopped refreshing (killed) stops counting after this


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
        self._watchers_key = f"{prefix}watchers"
        self.local_watchers = 0
        self.remote_watchers = False  # another node has watchers: forward every event
        self._announcements = 0  # "watching" announcements heard (a read older than one loses)
        self._watch_changed = asyncio.Event()

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

    def set_local_watchers(self, count: int) -> None:
        """This node's number of listeners that watch OCPP messages (announced to the others)."""
        self.local_watchers = count
        self._watch_changed.set()

    async def start(self, deliver: Callable[[GatewayEvent], None]) -> None:
        """Start publishing queued events and delivering the other nodes' events to `deliver`."""

        def on_message(data: bytes) -> None:
            try:
                message = orjson.loads(data)
                if message.get("node") == self._node:
                    return
                if message.get("watching"):
                    self._announcements += 1
                    self.remote_watchers = True
                    return
                deliver(GatewayEvent(**message["event"]))
            except (TypeError, KeyError, AttributeError, orjson.JSONDecodeError):
                event(log, "cluster_event_malformed", logging.WARNING)

        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish()),
            # subscribed (again): an announcement made before then was missed, read the set now
            loop.create_task(
                listen_forever(self._redis, self._channel, on_message, self._watch_changed.set)
            ),
            loop.create_task(self._watch()),
        ]

    async def _watch(self) -> None:
        """Keep this node in the watchers set while it has watchers; read whether others do."""
        registered = False
        while True:
            try:
                now, heard = time.time(), self._announcements
                async with self._redis.pipeline(transaction=False) as pipe:
                    if self.local_watchers:
                        pipe.zadd(self._watchers_key, {self._node: now + WATCH_TTL_SECONDS})
                    elif registered:
                        pipe.zrem(self._watchers_key, self._node)
                    pipe.zremrangebyscore(self._watchers_key, "-inf", now)
                    pipe.zrange(self._watchers_key, 0, -1)
                    results = await pipe.execute()
                if self.local_watchers and not registered:  # in the set first, then announced:
                    # the other nodes forward at once instead of at their next read
                    announcement = orjson.dumps({"node": self._node, "watching": True})
                    await self._redis.publish(self._channel, announcement)
                registered = bool(self.local_watchers)
                node = self._node.encode()
                others = any(member != node for member in results[-1])
                # an announcement heard while the read was in flight is newer than the read
                self.remote_watchers = others or self._announcements != heard
            except Exception as exc:  # Redis down: keep the last answer, events fail anyway
                log.debug("watchers refresh failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._watch_changed.wait(), WATCH_REFRESH_SECONDS)
            self._watch_changed.clear()

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
        """Stop the tasks; leave the watchers set."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.local_watchers:
            with contextlib.suppress(Exception):  # Redis down: the entry expires by itself
                await asyncio.wait_for(self._redis.zrem(self._watchers_key, self._node), 1.0)
