"""Who holds which charge point: claims with a fencing epoch, a TTL, and compare-and-delete.

A node claims an identity after the connection passed authentication. Every claim gets a new,
strictly increasing epoch for that identity; the claim carries a TTL that its owner refreshes, so
a node that dies (SIGKILL) leaves claims that expire. Releasing and refreshing only work for the
exact (node, epoch) that holds the claim, so a session that was taken over can never delete or
extend its successor's claim. `InMemoryDirectory` serves the embedded single-process default;
`RedisDirectory` does the same with Lua scripts, atomically, for any number of nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import NoScriptError


@dataclass(frozen=True, slots=True)
class Claim:
    """A successful claim: its epoch, and the holder it replaced (None when it was free)."""

    epoch: int
    previous_node: str | None
    previous_epoch: int | None


@dataclass(frozen=True, slots=True)
class Holder:
    """The current holder of an identity."""

    node: str
    epoch: int


class SessionDirectory(Protocol):
    """Claims of identities by nodes."""

    async def claim(self, identity: str, node: str) -> Claim:
        """Make `node` the holder with a new epoch (always succeeds: the newest session wins)."""

    async def claim_if_free(self, identity: str, node: str) -> Claim | None:
        """Claim `identity` only if nobody holds it (restoring claims never takes over)."""

    async def refresh(self, identity: str, node: str, epoch: int) -> bool | None:
        """Extend the claim's TTL if (node, epoch) still holds it: True; held by another, or by
        nobody since a newer claim ended: False; no claim at all (expired, or Redis lost its
        data): None."""

    async def refresh_many(self, node: str, claims: list[tuple[str, int]]) -> list[bool | None]:
        """`refresh` of each (identity, epoch) held by `node`, in order, in few round trips."""

    async def release(self, identity: str, node: str, epoch: int) -> bool:
        """Delete the claim if (node, epoch) still holds it."""

    async def holder(self, identity: str) -> Holder | None:
        """Who holds `identity` now (None when free or expired)."""


class InMemoryDirectory:
    """The directory of one process (the embedded default)."""

    def __init__(self, ttl: float = 30.0, clock: Any = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._claims: dict[str, tuple[str, int, float]] = {}
        self._epochs: dict[str, int] = {}

    def _current(self, identity: str) -> tuple[str, int, float] | None:
        claim = self._claims.get(identity)
        if claim is not None and claim[2] <= self._clock():
            del self._claims[identity]
            return None
        return claim

    async def claim(self, identity: str, node: str) -> Claim:
        previous = self._current(identity)
        epoch = self._epochs.get(identity, 0) + 1
        self._epochs[identity] = epoch
        self._claims[identity] = (node, epoch, self._clock() + self._ttl)
        if previous is None:
            return Claim(epoch, None, None)
        return Claim(epoch, previous[0], previous[1])

    async def claim_if_free(self, identity: str, node: str) -> Claim | None:
        if self._current(identity) is not None:
            return None
        return await self.claim(identity, node)

    async def refresh(self, identity: str, node: str, epoch: int) -> bool | None:
        current = self._current(identity)
        if current is None:  # gone; taken over meanwhile if a newer epoch was handed out
            return False if self._epochs.get(identity, 0) > epoch else None
        if current[:2] != (node, epoch):
            return False
        self._claims[identity] = (node, epoch, self._clock() + self._ttl)
        return True

    async def refresh_many(self, node: str, claims: list[tuple[str, int]]) -> list[bool | None]:
        return [await self.refresh(identity, node, epoch) for identity, epoch in claims]

    async def release(self, identity: str, node: str, epoch: int) -> bool:
        current = self._current(identity)
        if current is None or current[:2] != (node, epoch):
            return False
        del self._claims[identity]
        return True

    async def holder(self, identity: str) -> Holder | None:
        current = self._current(identity)
        return Holder(current[0], current[1]) if current else None


# KEYS[1] the claim hash, KEYS[2] the epoch counter; ARGV node, ttl ms.
# Returns {new epoch, previous node or false, previous epoch or false}.
_CLAIM = """
local previous = redis.call('HMGET', KEYS[1], 'node', 'epoch')
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {epoch, previous[1], previous[2]}
"""
# Like _CLAIM, but only when nobody holds the identity; false otherwise.
_CLAIM_IF_FREE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return epoch
"""
# KEYS[1] the claim hash, KEYS[2] the epoch counter; ARGV node, epoch, ttl ms. 1: (node, epoch)
# holds it; 0: another holder, or none but a newer claim was made since (the newer session ended:
# the superseded one must not come back); -1: no claim at all (expired, or Redis lost its data).
_REFRESH = """
local current = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if not current[1] then
  local newest = tonumber(redis.call('GET', KEYS[2]) or '0')
  if newest > tonumber(ARGV[2]) then
    return 0
  end
  return -1
end
if current[1] == ARGV[1] and current[2] == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
local current = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if current[1] == ARGV[1] and current[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


BATCH = 500  # refresh scripts per pipelined round trip


class RedisDirectory:
    """Claims in Redis: atomic Lua scripts; both keys of an identity share one hash slot."""

    def __init__(self, redis: Any, prefix: str = "ocppgw:", ttl: float = 30.0) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = int(ttl * 1000)
        self._claim = redis.register_script(_CLAIM)
        self._claim_if_free = redis.register_script(_CLAIM_IF_FREE)
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)

    def _keys(self, identity: str) -> list[str]:
        tag = f"{self._prefix}{{cp:{identity}}}"  # hash tag: one slot on Redis Cluster
        return [f"{tag}:claim", f"{tag}:epoch"]

    async def claim(self, identity: str, node: str) -> Claim:
        epoch, previous_node, previous_epoch = await self._claim(
            keys=self._keys(identity), args=[node, self._ttl_ms]
        )
        if previous_node is None:
            return Claim(int(epoch), None, None)
        return Claim(int(epoch), _text(previous_node), int(previous_epoch))

    async def claim_if_free(self, identity: str, node: str) -> Claim | None:
        epoch = await self._claim_if_free(keys=self._keys(identity), args=[node, self._ttl_ms])
        return Claim(int(epoch), None, None) if epoch is not None else None

    async def refresh(self, identity: str, node: str, epoch: int) -> bool | None:
        keys = self._keys(identity)
        answer = int(await self._refresh(keys=keys, args=[node, epoch, self._ttl_ms]))
        return None if answer < 0 else bool(answer)

    async def refresh_many(self, node: str, claims: list[tuple[str, int]]) -> list[bool | None]:
        """Pipelined, `BATCH` scripts per round trip: 15,000 claims in about 30 round trips
        (one by one they took 2 s on loopback, more than a refresh interval on a remote Redis)."""
        answers: list[bool | None] = []
        for start in range(0, len(claims), BATCH):
            batch = claims[start : start + BATCH]
            results = await self._refresh_batch(node, batch)
            if any(isinstance(result, NoScriptError) for result in results):
                results = await self._refresh_batch(node, batch)  # Redis restarted: loaded again
            answers.extend(_refreshed(result) for result in results)
        return answers

    async def _refresh_batch(self, node: str, batch: list[tuple[str, int]]) -> list[Any]:
        """One pipeline of refresh scripts; a key's error is its answer, not the batch's."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for identity, epoch in batch:
                await self._refresh(
                    keys=self._keys(identity), args=[node, epoch, self._ttl_ms], client=pipe
                )
            return list(await pipe.execute(raise_on_error=False))

    async def release(self, identity: str, node: str, epoch: int) -> bool:
        return bool(await self._release(keys=self._keys(identity)[:1], args=[node, epoch]))

    async def holder(self, identity: str) -> Holder | None:
        node, epoch = await self._redis.hmget(self._keys(identity)[0], "node", "epoch")
        return Holder(_text(node), int(epoch)) if node is not None else None


def _refreshed(result: Any) -> bool | None:
    """A refresh script's answer; an error for one key (a foreign value under the claim's name)
    counts as no claim: restoring it then says what is wrong, the other claims are unaffected."""
    if isinstance(result, Exception):
        return None
    return None if int(result) < 0 else bool(int(result))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
