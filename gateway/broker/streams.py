"""The call stream in Redis: appending forwarded messages once, remembering answers, events.

A forwarded message is appended by one small Lua script, in one round trip: if the message's
idempotency key exists the message is a duplicate, else the envelope is XADDed (approximate MAXLEN)
and the key is set with a TTL. The key first holds `pending <entry id> <reply stream>` (where the
answer to this first delivery will go), then the backend's answer (a JSON object), stored by the
node that reads that reply stream. With `wait_replicas` the script and a WAIT go out in one pipeline
on one connection, so WAIT covers the XADD just made.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from ..config import BrokerConfig
from .envelope import ANSWER_FIELD, ENVELOPE_FIELD, parse_answer
from .keys import BrokerKeys

APPEND_ONCE = """
local previous = redis.call('GET', KEYS[1])
if previous then return {0, previous} end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', ARGV[3], ARGV[4])
redis.call('SET', KEYS[1], 'pending ' .. id .. ' ' .. ARGV[5], 'PX', ARGV[1])
return {1, id}
"""
APPEND_ONCE_SHA = hashlib.sha1(APPEND_ONCE.encode()).hexdigest()
PENDING = b"pending "  # a seen key's value before the answer: `pending <entry id> <reply stream>`
CLOCK_MARGIN_MS = 5000  # Redis Cluster: shards' clocks (stream ids) may differ this much
SCAN_BATCH = 200


class NotReplicated(Exception):
    """WAIT returned before `wait_replicas` replicas acknowledged the append."""


@dataclass(frozen=True, slots=True)
class FirstDelivery:
    """Where the first delivery of a message went: its call stream entry, its reply stream."""

    entry: str
    reply_to: str

    @property
    def scan_from(self) -> str:
        """The reply stream id to read after: the answer was XADDed after the entry."""
        milliseconds = self.entry.partition("-")[0]
        if not milliseconds.isdigit():  # not an entry id: the whole stream
            return "0-0"
        return f"{max(0, int(milliseconds) - CLOCK_MARGIN_MS)}-0"


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of an append: a new entry, or a duplicate and its remembered answer."""

    new: bool
    remembered: bytes | None = None  # a duplicate's backend answer, when one was remembered
    first: FirstDelivery | None = None  # a duplicate without one: where its answer will go


def read_seen(value: bytes) -> Appended:
    """A duplicate, from its seen key's value: an answer, the pending first delivery, or
    neither (`""`, written by gateways before the first delivery was recorded)."""
    if not value.startswith(PENDING):
        return Appended(False, value or None)
    entry, _, reply_to = value[len(PENDING) :].decode(errors="replace").partition(" ")
    return Appended(False, None, FirstDelivery(entry, reply_to) if reply_to else None)


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

    async def append(
        self, message_key: str, envelope: bytes, wait_ms: int, reply_to: str | None
    ) -> Appended:
        """Append `envelope` unless `message_key` was seen within the idempotency window.

        `reply_to` is where the backend answers it (None: it gets no answer). Raises the Redis
        error when Redis cannot be reached, `NotReplicated` when WAIT timed out (after
        `wait_ms`) with fewer replicas than configured.
        """
        args = (self._keys.seen(message_key), self._keys.calls)
        args += (self._ttl_ms, self._maxlen, ENVELOPE_FIELD, envelope, reply_to or "")
        try:
            reply, replicas = await self._append(args, wait_ms)
        except NoScriptError:  # Redis restarted (or SCRIPT FLUSH): load once, then retry
            await self._redis.script_load(APPEND_ONCE)
            reply, replicas = await self._append(args, wait_ms)
        if not reply[0]:
            return read_seen(reply[1])
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

    async def find_answer(
        self, message_key: str, first: FirstDelivery | None, after: str | None
    ) -> tuple[bytes | None, str | None]:
        """The raw answer to a duplicate's first delivery, if there is one now, and where to read
        the first delivery's reply stream next time.

        One round trip: the seen key, and (when `first` names a reply stream) up to SCAN_BATCH
        entries of that stream after `after`. An answer found in the stream is remembered under
        the seen key, for the next duplicates.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self._keys.seen(message_key))
            if first is not None and after is not None:
                pipe.xread({first.reply_to: after}, count=SCAN_BATCH)
            replies = await pipe.execute()
        remembered = read_seen(replies[0]) if replies[0] is not None else None
        if remembered is not None and remembered.remembered is not None:
            return remembered.remembered, after
        for _, entries in replies[1] if len(replies) > 1 and replies[1] else []:
            for entry_id, fields in entries:
                after = entry_id.decode()
                raw = fields.get(ANSWER_FIELD)
                if raw is not None and parse_answer(raw).id == message_key:
                    await self.remember([(message_key, raw)])
                    return raw, after
        return None, after
