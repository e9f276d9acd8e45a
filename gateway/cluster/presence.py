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
from typing import Any

import orjson

from ..logs import event
from ..registry import SessionInfo

log = logging.getLogger("gateway.cluster")
TIMEOUT = 2.0


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

    def __init__(self, redis: Any, prefix: str, node: str, ttl: float) -> None:
        self._redis = redis
        self._node = node
        self._ttl = ttl
        self._nodes = f"{prefix}nodes"
        self._prefix = prefix
        self._ops: list[tuple[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    def beat(self, sessions: list[SessionInfo]) -> None:
        """This node is alive and serves `sessions` (called at every claim refresh)."""
        self._queue("beat", sessions)

    async def start(self) -> None:
        """Start the writer and announce this node."""
        self._task = asyncio.get_running_loop().create_task(self._write_forever())
        self.beat([])

    async def stop(self) -> None:
        """Stop the writer and take this node out of listings."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(self._nodes, self._node)
            pipe.delete(self._hash(self._node))
            await asyncio.wait_for(pipe.execute(), TIMEOUT)

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ops, self._ops = self._ops, []
            try:
                await asyncio.wait_for(self._write(ops), TIMEOUT * 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next heartbeat rewrites what was lost
                event(log, "presence_write_failed", logging.WARNING, error=str(exc)[:200])

    async def _write(self, ops: list[tuple[str, Any]]) -> None:
        key = self._hash(self._node)
        pipe = self._redis.pipeline(transaction=False)
        beats: list[list[SessionInfo]] = []
        for op, value in ops:
            if op == "add":
                pipe.hset(key, value.identity, orjson.dumps(session_facts(value, self._node)))
            elif op == "remove":
                pipe.hdel(key, value)
            else:
                beats.append(value)
        pipe.expire(key, int(self._ttl * 3) + 1)  # a node killed before its next beat leaks nothing
        if beats:
            pipe.zadd(self._nodes, {self._node: time.time()})
            pipe.zremrangebyscore(self._nodes, "-inf", time.time() - self._ttl * 20)
        results = await pipe.execute()
        if beats and beats[-1] and not results[-3]:  # the hash is gone: Redis lost it
            sessions = beats[-1]
            mapping = {s.identity: orjson.dumps(session_facts(s, self._node)) for s in sessions}
            await self._redis.hset(key, mapping=mapping)
            await self._redis.expire(key, int(self._ttl * 3) + 1)

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
