"""The call stream in Redis: appending forwarded messages once, remembering answers, events.

A forwarded message is appended by one small Lua script, in one round trip: if the message's
idempotency key exists the message is a duplicate (the key holds the backend's answer once there
is one), else the key is set with a TTL and the envelope is XADDed (approximate MAXLEN). With
`wait_replicas` the script and a WAIT go out in one pipeline on one connection, so WAIT covers the
XADD just made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from ..config import BrokerConfig
from .envelope import ENVELOPE_FIELD
from .keys import BrokerKeys

APPEND_ONCE = """
local previous = redis.call('GET', KEYS[1])
if previous then return {0, previous} end
redis.call('SET', KEYS[1], '', 'PX', ARGV[1])
return {1, redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])}
"""
APPEND_ONCE_SHA = hashlib.sha1(APPEND_ONCE.encode()).hexdigest()


class NotReplicated(Exception):
    """WAIT returned before `wait_replicas` replicas acknowledged the append."""


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of an append: a new entry, or a duplicate and its remembered answer."""

    new: bool
    remembered: bytes | None = None  # a duplicate's backend answer, when one was remembered


class CallStream:
    """Appends to the call stream and remembers answers under the idempotency keys."""

    def __init__(self, redis: Any, keys: BrokerKeys, settings: BrokerConfig) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_ms = str(int(settings.idempotency_seconds * 1000))
        self._maxlen = settings.stream_maxlen
        self._replicas = settings.wait_replicas

    async def load_script(self) -> None:
        """Load the append script (else the first append after a Redis restart loads it)."""
        await self._redis.script_load(APPEND_ONCE)

    async def append(self, message_key: str, envelope: bytes, wait_ms: int) -> Appended:
        """Append `envelope` unless `message_key` was seen within the idempotency window.

        Raises the Redis error when Redis cannot be reached, `NotReplicated` when WAIT timed out
        (after `wait_ms`) with fewer replicas than configured.
        """
        args = (self._keys.seen(message_key), self._keys.calls)
        args += (self._ttl_ms, self._maxlen, ENVELOPE_FIELD, envelope)
        try:
            reply, replicas = await self._append(args, wait_ms)
        except NoScriptError:  # Redis restarted (or SCRIPT FLUSH): load once, then retry
            await self._redis.script_load(APPEND_ONCE)
            reply, replicas = await self._append(args, wait_ms)
        if not reply[0]:
            return Appended(False, reply[1] or None)
        if replicas < self._replicas:
            raise NotReplicated(f"{replicas} of {self._replicas} replicas within {wait_ms} ms")
        return Appended(True)

    async def _append(self, args: tuple[Any, ...], wait_ms: int) -> tuple[list[Any], int]:
        if not self._replicas:
            return await self._redis.evalsha(APPEND_ONCE_SHA, 2, *args), 0
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(APPEND_ONCE_SHA, 2, *args)
            pipe.execute_command("WAIT", self._replicas, max(1, wait_ms))
            reply, replicas = await pipe.execute()
        return reply, int(replicas)

    async def append_events(self, envelopes: list[bytes]) -> None:
        """XADD session events, pipelined (one round trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for envelope in envelopes:
                pipe.xadd(
                    self._keys.calls,
                    {ENVELOPE_FIELD: envelope},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            await pipe.execute()

    async def remember(self, answers: list[tuple[str, bytes]]) -> None:
        """Store raw answers under their messages' idempotency keys (only where the key still
        exists, keeping its TTL), so a duplicate delivery gets the same answer."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for message_key, raw in answers:
                pipe.set(self._keys.seen(message_key), raw, xx=True, keepttl=True)
            await pipe.execute()
