"""Which charge points every node serves, so that a UI `list` on any node shows all of them.

Each node keeps a hash `<prefix>sessions:<node>` (identity -> session facts) and its heartbeat in
the sorted set `<prefix>nodes` (score: the time of its last claim refresh). A listing reads the
hashes of the nodes seen alive within one claim TTL, so a killed node's sessions drop out with its
claims. Writes are queued and sent in order, pipelined, by one task; a failed write is corrected
by the next heartbeat, which rewrites the hash when Redis lost it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..logs import event
from ..registry import SessionInfo

log = logging.getLogger("gateway.cluster")
TIMEOUT = 2.0
REWRITE_EVERY = 12  # heartbeats between full rewrites of a node's hash (a minute at 15 s TTL)


def session_facts(info: SessionInfo, node: str) -> dict[str, Any]:
    """What a listing shows of a session held by `node`."""
    return {
        "identity": info.identity,
        "subprotocol": info.subprotocol,
        "security_profile": info.security_profile,
        "connected_at": info.connected_at,
        "remote": info.remote,
        "node": node,
    }


class ClusterPresence:
    """This node's sessions in Redis, and every live node's sessions for listings."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        node: str,
        ttl: float,
        sessions: Callable[[], list[SessionInfo]] = list,
    ) -> None:
        self._redis = redis
        self._node = node
        self._ttl = ttl
        self._sessions = sessions  # this node's live sessions (the registry)
        self._nodes = f"{prefix}nodes"
        self._prefix = prefix
        self._ops: list[tuple[str, Any]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beats = 0

    def _hash(self, node: str) -> str:
        return f"{self._prefix}sessions:{node}"

    def _queue(self, op: str, value: Any) -> None:
        self._ops.append((op, value))
        self._wake.set()

    def add(self, info: SessionInfo) -> None:
        """`info`'s charge point is served here (written in the background)."""
        self._queue("add", info)

    def remove(self, identity: str) -> None:
        """`identity` is no longer served here."""
        self._queue("remove", identity)

    async def start(self) -> None:
        """Start the writer and the heartbeat (a third of the claim TTL)."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_forever()),
            loop.create_task(self._beat_forever()),
        ]

    async def stop(self) -> None:
        """Stop writing and take this node out of listings."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(self._nodes, self._node)
            pipe.delete(self._hash(self._node))
            await asyncio.wait_for(pipe.execute(), TIMEOUT)

    def beat(self) -> None:
        """Announce this node and check its hash now (also done every third of the TTL)."""
        self._queue("beat", None)

    async def _beat_forever(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._ttl / 3)

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            try:
                await asyncio.wait_for(self._write(ops), TIMEOUT * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next heartbeat repairs what was lost
                event(log, "presence_write_failed", logging.WARNING, error=str(exc)[:200])

    def _document(self, info: SessionInfo) -> bytes:
        return orjson.dumps(session_facts(info, self._node))

    async def _write(self, ops: list[tuple[str, Any]]) -> None:
        """Apply queued adds and removes in order; on a heartbeat, also announce the node and
        repair the hash: it is replaced from the registry when its identities disagree (a lost
        write, Redis restarted), and every REWRITE_EVERY beats anyway (facts gone stale)."""
        key = self._hash(self._node)
        pipe = self._redis.pipeline(transaction=False)
        beat = False
        for op, value in ops:
            if op == "add":
                pipe.hset(key, value.identity, self._document(value))
            elif op == "remove":
                pipe.hdel(key, value)
            else:
                beat = True
        pipe.expire(key, int(self._ttl * 3) + 1)  # a node killed before its next beat leaks nothing
        if beat:
            pipe.hkeys(key)
            pipe.zadd(self._nodes, {self._node: time.time()})
            pipe.zremrangebyscore(self._nodes, "-inf", time.time() - self._ttl * 20)
        results = await pipe.execute()
        if not beat:
            return
        self._beats += 1
        sessions = self._sessions()
        published = {raw.decode() for raw in results[-3]}
        if published != {s.identity for s in sessions} or self._beats % REWRITE_EVERY == 0:
            replace = self._redis.pipeline(transaction=True)  # MULTI: listings never see it empty
            replace.delete(key)
            if sessions:
                replace.hset(key, mapping={s.identity: self._document(s) for s in sessions})
                replace.expire(key, int(self._ttl * 3) + 1)
            await replace.execute()

    async def facts(self, node: str, identity: str) -> dict[str, Any] | None:
        """What `node` published of its session of `identity`."""
        raw = await self._redis.hget(self._hash(node), identity)
        return orjson.loads(raw) if raw is not None else None

    async def others(self) -> list[dict[str, Any]]:
        """The sessions of every other node seen alive within one claim TTL."""
        nodes = await self._redis.zrangebyscore(self._nodes, time.time() - self._ttl, "+inf")
        names = [n.decode() for n in nodes if n.decode() != self._node]
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._hash(name))
        found = []
        for documents in await pipe.execute():
            found.extend(orjson.loads(doc) for doc in documents.values())
        return found
