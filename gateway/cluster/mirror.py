"""A node's copy of the records and UI tokens kept in Redis (see `gateway.cluster.state`).

Reads never wait for Redis: the handshake and the UI look up the mirror, which is loaded at start,
updated when a change is announced on the state channel, and re-read when a version counter moved
(an announcement lost while the channel was down). A node's own writes update the mirror at once
and are written to Redis by a background task that retries until Redis takes them; until then the
mirror keeps them over what Redis says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

from security.records import ChargePointRecord, DowngradeRefused, check_profile_change
from security.tokens import ApiToken, revoke_in

from ..logs import event
from .bus import listen_forever
from .state import (
    RECORDS,
    TOKENS,
    WRITE_SCRIPT,
    StateKeys,
    parse_record,
    parse_token,
    raise_if_downgrade,
    record_document,
    token_document,
)

log = logging.getLogger("gateway.cluster")
T = TypeVar("T")
OnChange = Callable[[str, set[str]], None]  # kind, keys that changed
TIMEOUT = 5.0


class MirroredHash(Generic[T]):
    """The documents of one kind, and this node's writes not yet in Redis."""

    def __init__(
        self, kind: str, parse: Callable[[bytes], T], document: Callable[[T], bytes]
    ) -> None:
        self.kind = kind
        self.parse = parse
        self.document = document
        self.items: dict[str, T] = {}
        self.pending: dict[str, tuple[bytes, bool]] = {}  # key -> (document or b"", check)
        self.version: int | None = None
        self.kick: Callable[[], None] = lambda: None

    def write(self, key: str, item: T | None, document: bytes, check: bool = False) -> None:
        """Change the mirror now; Redis follows."""
        if item is None:
            self.items.pop(key, None)
        else:
            self.items[key] = item
        self.pending[key] = (document, check)
        self.kick()

    def restore(self) -> None:
        """Redis lost its data (restart without persistence): write the mirror back."""
        for key, item in self.items.items():
            self.pending.setdefault(key, (self.document(item), False))
        self.version = None
        self.kick()

    def replace_all(self, raw: dict[bytes, bytes]) -> set[str]:
        """Take Redis's documents (keeping pending writes); the keys whose value changed."""
        fresh: dict[str, T] = {}
        for key, document in raw.items():
            name = key.decode()
            try:
                fresh[name] = self.parse(document)
            except Exception:
                event(log, "state_document_invalid", logging.ERROR, kind=self.kind, key=name)
        for key in self.pending:
            if key in self.items:
                fresh[key] = self.items[key]
            else:
                fresh.pop(key, None)
        changed = {k for k in fresh.keys() | self.items.keys() if fresh.get(k) != self.items.get(k)}
        self.items = fresh
        return changed

    def replace_one(self, key: str, document: bytes | None) -> bool:
        """Take Redis's document for `key` (unless a write of ours is pending); True if changed."""
        if key in self.pending:
            return False
        before = self.items.get(key)
        if document is None:
            self.items.pop(key, None)
        else:
            try:
                self.items[key] = self.parse(document)
            except Exception:
                event(log, "state_document_invalid", logging.ERROR, kind=self.kind, key=key)
                return False
        return self.items.get(key) != before


class MirroredRecordStore:
    """`RecordStore` over the mirror: reads from memory, writes to memory and then Redis."""

    def __init__(self) -> None:
        self.hash: MirroredHash[ChargePointRecord] = MirroredHash(
            RECORDS, parse_record, record_document
        )

    def get(self, identity: str) -> ChargePointRecord | None:
        return self.hash.items.get(identity)

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        check_profile_change(self.get(record.identity), record, allow_downgrade)
        self.hash.write(record.identity, record, record_document(record), not allow_downgrade)

    def remove(self, identity: str) -> bool:
        existed = identity in self.hash.items
        if existed:
            self.hash.write(identity, None, b"")
        return existed

    def all(self) -> list[ChargePointRecord]:
        return sorted(self.hash.items.values(), key=lambda r: r.identity)


class MirroredTokenStore:
    """`TokenStore` over the mirror."""

    def __init__(self) -> None:
        self.hash: MirroredHash[ApiToken] = MirroredHash(TOKENS, parse_token, token_document)

    def by_hash(self, digest: str) -> ApiToken | None:
        return self.hash.items.get(digest)

    def put(self, token: ApiToken) -> None:
        self.hash.write(token.hash, token, token_document(token))

    def all(self) -> list[ApiToken]:
        return sorted(self.hash.items.values(), key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id; True when found."""
        return revoke_in(self, token_id)


class StateMirror:
    """Keeps the record and token mirrors current and writes this node's changes to Redis."""

    def __init__(
        self,
        redis: Any,
        prefix: str,
        records: MirroredRecordStore | None,
        tokens: MirroredTokenStore | None,
    ) -> None:
        self._redis = redis
        self._keys = StateKeys(prefix)
        self._write = redis.register_script(WRITE_SCRIPT)
        self._hashes: dict[str, MirroredHash[Any]] = {}
        for store in (records, tokens):
            if store is not None:
                self._hashes[store.hash.kind] = store.hash
                store.hash.kick = self._kick
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._applying: set[asyncio.Task[None]] = set()
        self._generation: bytes | None = None  # which life of the Redis data the mirror follows
        self.on_change: OnChange = lambda kind, keys: None
        self.on_reload: Callable[[], None] = lambda: None

    def _kick(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        """Load everything (a failure is logged: the version check retries), then follow."""
        with contextlib.suppress(Exception):
            await self.sync()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(listen_forever(self._redis, self._keys.channel, self._on_message)),
            loop.create_task(self._flush_forever()),
        ]
        if any(h.pending for h in self._hashes.values()):
            self._kick()

    async def stop(self) -> None:
        """Stop following; try once more to write what is pending."""
        for task in (*self._tasks, *self._applying):
            task.cancel()
        for task in (*self._tasks, *self._applying):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 1.0)

    async def sync(self) -> None:
        """Re-read every kind whose version counter moved since the last read. When Redis lost
        its data (its generation mark is gone or new), write this node's mirror back instead."""
        kinds = list(self._hashes)
        *versions, generation = await asyncio.wait_for(
            self._redis.mget([*(self._keys.version(k) for k in kinds), self._keys.generation]),
            TIMEOUT,
        )
        if generation is None or generation != self._generation:
            lost = self._generation is not None
            if lost:
                restoring = sum(len(m.items) for m in self._hashes.values())
                event(log, "state_lost", logging.ERROR, restoring=restoring)
                for mirror in self._hashes.values():
                    mirror.restore()
            await asyncio.wait_for(
                self._redis.set(self._keys.generation, uuid.uuid4().hex, nx=True), TIMEOUT
            )
            self._generation = await asyncio.wait_for(
                self._redis.get(self._keys.generation), TIMEOUT
            )
            if lost:
                return  # the next sync reads what the flush wrote back
        for kind, raw in zip(kinds, versions, strict=True):
            version = int(raw or 0)
            mirror = self._hashes[kind]
            if version == mirror.version:
                continue
            documents = await asyncio.wait_for(self._redis.hgetall(self._keys.hash(kind)), TIMEOUT)
            changed = mirror.replace_all(documents)
            mirror.version = version
            if changed:
                event(log, "state_reloaded", kind=kind, changed=len(changed))
                self.on_change(kind, changed)

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            kind, key = message.get("kind"), message.get("key")
        except (orjson.JSONDecodeError, AttributeError):
            event(log, "state_message_invalid", logging.WARNING)
            return
        if kind == "reload":
            self.on_reload()
        elif kind in self._hashes and isinstance(key, str):
            task = asyncio.get_running_loop().create_task(self._apply(kind, key))
            self._applying.add(task)
            task.add_done_callback(self._applying.discard)

    async def _apply(self, kind: str, key: str) -> None:
        try:
            document = await asyncio.wait_for(self._redis.hget(self._keys.hash(kind), key), TIMEOUT)
        except Exception as exc:  # the version check catches up later
            event(log, "state_read_failed", logging.WARNING, kind=kind, error=str(exc)[:200])
            return
        if self._hashes[kind].replace_one(key, document):
            self.on_change(kind, {key})

    async def flush(self) -> None:
        """Write every pending change to Redis (raises when Redis refuses or is unreachable)."""
        for kind, mirror in self._hashes.items():
            for key, (document, check) in list(mirror.pending.items()):
                keys, args = self._keys.write_args(kind, key, document, check)
                result = await asyncio.wait_for(self._write(keys=keys, args=args), TIMEOUT)
                if mirror.pending.get(key) == (document, check):
                    del mirror.pending[key]
                if isinstance(result, list):  # another node raised the profile meanwhile
                    try:
                        raise_if_downgrade(result, mirror.parse(document))
                    except DowngradeRefused as exc:
                        event(log, "state_write_refused", logging.WARNING, detail=str(exc))
                    await self._apply(kind, key)

    async def _flush_forever(self) -> None:
        delay = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = str(exc)[:200]
                event(log, "state_write_failed", logging.ERROR, error=error, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._wake.set()


class BootStates:
    """The last BootNotification status of each identity, shared so that a charge point that
    reconnects to another node is not asked to boot again."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis = redis
        self._key = StateKeys(prefix).boots
        self._writes: set[asyncio.Task[None]] = set()

    async def load(self, identity: str) -> str | None:
        """The stored status (None when unknown or Redis does not answer within a second)."""
        try:
            raw = await asyncio.wait_for(self._redis.hget(self._key, identity), 1.0)
        except Exception as exc:
            error = str(exc)[:200]
            event(log, "boot_state_unavailable", logging.WARNING, identity=identity, error=error)
            return None
        return raw.decode() if raw is not None else None

    def store(self, identity: str, status: str | None) -> None:
        """Remember `status` (in the background; a failure is logged)."""

        async def write() -> None:
            try:
                if status is None:
                    await asyncio.wait_for(self._redis.hdel(self._key, identity), TIMEOUT)
                else:
                    await asyncio.wait_for(self._redis.hset(self._key, identity, status), TIMEOUT)
            except Exception as exc:
                error = str(exc)[:200]
                event(log, "boot_state_failed", logging.WARNING, identity=identity, error=error)

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
