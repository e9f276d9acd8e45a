"""Forward mode: wires the broker's parts for one gateway node (see docs/broker.md).

- `handler` (forwarding.py): the CallHandler for charge point CALLs and SENDs;
- the reply reader (replies.py): this node's answers, one XREAD BLOCK loop;
- presence (presence.py): `connected`/`disconnected` events into the call stream;
- the command runner (commands.py): the backend's commands, unless `commands = false`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..cluster.client import MAX_CONNECTIONS
from ..config import BrokerConfig
from ..handler import CallHandler
from ..logs import event
from ..router import Router
from .commands import CommandRunner
from .forwarding import ForwardingHandler
from .keys import BrokerKeys
from .presence import Presence
from .replies import ReplyReader
from .streams import CallStream

log = logging.getLogger("gateway.broker")
FLUSH_SECONDS = 1.0
STOP_SECONDS = 2.0  # above the loops' blocking reads (1 s)


def without_backoff(redis: aioredis.Redis) -> aioredis.Redis:
    """A client of the same server whose commands fail at once when Redis is down (one immediate
    reconnect for a pooled connection that died): a forwarded CALL then gets the fallback now,
    not after the shared client's retry backoff."""
    pool = redis.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 1)}
    quick = BlockingConnectionPool(  # a burst waits a moment for a connection, not an error
        max_connections=MAX_CONNECTIONS,
        timeout=1.0,
        connection_class=pool.connection_class,
        **kwargs,
    )
    return aioredis.Redis(connection_pool=quick)


class BrokerService:
    """The broker between this node's charge points and a backend CSMS, over Redis Streams."""

    def __init__(
        self,
        redis: aioredis.Redis,
        settings: BrokerConfig,
        prefix: str,
        node: str,
        router: Router,
        fallback: CallHandler,
    ) -> None:
        self.keys = BrokerKeys.under(prefix)
        self.node = node
        self._router = router
        self._quick = without_backoff(redis)
        self._calls = calls = CallStream(self._quick, self.keys, settings)
        reply_to = self.keys.replies(node)
        self.handler = ForwardingHandler(calls, settings, node, reply_to, fallback)
        self.replies = ReplyReader(redis, reply_to, calls, self.handler.resolve)
        self.presence = Presence(calls, router.registry, node)
        self.commands = (
            CommandRunner(redis, self.keys, settings, node, router) if settings.commands else None
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._presence_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Start reading answers (and commands) and publishing session events."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):  # Redis down: loaded by the first append
            await asyncio.wait_for(self._calls.load_script(), FLUSH_SECONDS)
        self._router.subscribe(self.presence.on_event, messages=False)
        self._stop.clear()
        self._tasks = [loop.create_task(self.replies.run(self._stop))]
        if self.commands is not None:
            self._tasks.append(loop.create_task(self.commands.run(self._stop)))
        self._presence_task = loop.create_task(self.presence.run())
        event(
            log,
            "broker_started",
            node=self.node,
            calls=self.keys.calls,
            replies=self.keys.replies(self.node),
            commands=self.keys.commands if self.commands is not None else None,
        )

    async def stop(self) -> None:
        """Stop every background task (commands still running stay pending, to be reclaimed).

        Cancelling a blocked redis-py command can be swallowed or hang (redis/redis-py#2579):
        the loops also stop at the stop flag after their blocking read, and no wait is unbounded.
        """
        with contextlib.suppress(ValueError):
            self._router.unsubscribe(self.presence.on_event)
        self._stop.set()
        tasks = [*self._tasks, *([self._presence_task] if self._presence_task else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            if running:
                event(log, "broker_stop_slow", logging.WARNING, tasks=len(running))
        self._tasks, self._presence_task = [], None
        with contextlib.suppress(Exception):  # the last disconnects of the drain, if Redis is up
            await asyncio.wait_for(self.presence.flush(), FLUSH_SECONDS)
        if self.commands is not None:
            await self.commands.stop()
        await self.handler.stop()
        await self._quick.aclose(close_connection_pool=True)
