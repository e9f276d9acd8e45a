"""A node's copy of the records and UI tokens kept in Redis (see `gateway.cluster.state`).

Reads never wait for Redis: the handshake and the UI look up the mirror, which is loaded at start,
updated when a change is announced on the state channel, and re-read when a version token changed
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
from dataclasses import asdict
from typing import Any, Generic, TypeVar

import orjson
import redis

from security.records import ChargePointRecord, check_profile_change
from security.tokens import ApiToken, revoke_in

from ..logs import event
from .bus import listen_forever
from .state import (
    RECORDS,
    TOKENS,
    WRITE_SCRIPT,
    StateKeys,
    WriteMode,
    parse_record,
    parse_token,
    refusal,
)

log = logging.getLogger("gateway.cluster")
T = TypeVar("T")
OnChange = Callable[[str, set[str]], None]  # kind, keys that changed
Doc = dict[str, Any] | None
Pending = tuple[WriteMode, Doc]
TIMEOUT = 5.0
UNREAD: Any = object()  # a version no token equals: read at the next sync


class MirroredHash(Generic[T]):
    """The documents of one kind, and this node's writes not yet in Redis."""

    def __init__(
        self, kind: str, parse: Callable[[bytes], T], as_dict: Callable[[T], dict[str, Any]]
    ) -> None:
        self.kind = kind
        self.parse = parse
        self.as_dict = as_dict
        self.items: dict[str, T] = {}
        self.pending: dict[str, Pending] = {}  # key -> (mode, fields or the whole document)
        self.version: Any = UNREAD  # Redis's version token when last read
        self.kick: Callable[[], None] = lambda: None
        self.changes = 0  # a count of changes to single keys (ours, or applied announcements)
        self._changed_at: dict[str, int] = {}  # key -> `changes` when it last changed

    def touch(self, key: str) -> None:
        """`key` changed now (a full read asked for before this must not undo it)."""
        self.changes += 1
        self._changed_at[key] = self.changes

    def write(self, key: str, item: T | None, mode: WriteMode, fields: Doc = None) -> None:
        """Change the mirror now; Redis follows. Writes pending for one key merge: a patch of a
        pending create or patch adds its fields to it."""
        if item is None:
            self.items.pop(key, None)
        else:
            self.items[key] = item
        self.touch(key)
        previous = self.pending.get(key)
        if mode == "patch" and previous is not None and previous[0] in ("create", "patch", "put"):
            mode, fields = previous[0], {**(previous[1] or {}), **(fields or {})}
        self.pending[key] = (mode, fields)
        self.kick()

    def restore(self) -> None:
        """Redis lost its data (restart without persistence): write the mirror back, creating
        only what is missing (never over a newer write made since)."""
        for key, item in self.items.items():
            self.pending.setdefault(key, ("create", self.as_dict(item)))
        self.version = UNREAD
        self.kick()

    def replace_all(self, raw: dict[bytes, bytes], since: int) -> set[str]:
        """Take Redis's documents (keeping pending writes); the keys whose value changed.

        `since`: the `changes` count when `raw` was asked for. A key changed after that (an
        announcement applied, a write of ours flushed while the whole hash was on its way) keeps
        its newer value: an older snapshot never undoes it.
        """
        newer = {key for key, at in self._changed_at.items() if at > since}
        fresh: dict[str, T] = {}
        for key, document in raw.items():
            name = key.decode()
            try:
                fresh[name] = self.parse(document)
            except Exception:
                event(log, "state_document_invalid", logging.ERROR, kind=self.kind, key=name)
        for key in self.pending.keys() | newer:
            if key in self.items:
                fresh[key] = self.items[key]
            else:
                fresh.pop(key, None)
        changed = {k for k in fresh.keys() | self.items.keys() if fresh.get(k) != self.items.get(k)}
        self.items = fresh
        self._changed_at = {k: self._changed_at[k] for k in newer}  # older ones: in the snapshot
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
        self.touch(key)
        return self.items.get(key) != before


class MirroredRecordStore:
    """`RecordStore` over the mirror: reads from memory, writes to memory and then Redis."""

    def __init__(self) -> None:
        self.hash: MirroredHash[ChargePointRecord] = MirroredHash(
            RECORDS, parse_record, ChargePointRecord.to_json
        )

    def get(self, identity: str) -> ChargePointRecord | None:
        return self.hash.items.get(identity)

    def put(self, record: ChargePointRecord, *, allow_downgrade: bool = False) -> None:
        """A new record is created only if Redis has none; a changed one is written as a patch
        of the fields that changed, so that changes made elsewhere meanwhile are kept."""
        old = self.get(record.identity)
        check_profile_change(old, record, allow_downgrade)
        document = record.to_json()
        if old is None:
            self.hash.write(record.identity, record, "create", document)
        elif allow_downgrade:
            self.hash.write(record.identity, record, "put", document)
        else:
            before = old.to_json()
            fields = {k: v for k, v in document.items() if before.get(k) != v}
            if fields:
                self.hash.write(record.identity, record, "patch", fields)

    def remove(self, identity: str) -> bool:
        existed = identity in self.hash.items
        if existed:
            self.hash.write(identity, None, "delete")
        return existed

    def all(self) -> list[ChargePointRecord]:
        return sorted(self.hash.items.values(), key=lambda r: r.identity)


class MirroredTokenStore:
    """`TokenStore` over the mirror."""

    def __init__(self) -> None:
        self.hash: MirroredHash[ApiToken] = MirroredHash(TOKENS, parse_token, asdict)

    def by_hash(self, digest: str) -> ApiToken | None:
        return self.hash.items.get(digest)

    def put(self, token: ApiToken) -> None:
        self.hash.write(token.hash, token, "put", asdict(token))

    def all(self) -> list[ApiToken]:
        return sorted(self.hash.items.values(), key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id; True when found."""
        return revoke_in(self, token_id)


# Redis refusing writes in general (memory, a demoted primary, disk, loading): not the key's fault
_TRANSIENT = (
    *("OOM", "maxmemory", "READONLY", "MISCONF", "BUSY", "MASTERDOWN", "NOPERM", "LOADING"),
    *("TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS"),
)


def script_failed_on_this_key(error: redis.ResponseError) -> bool:
    """The write script itself failed on what this key holds (e.g. a stored document that is not
    JSON): retrying cannot help, the other writes must still go. Any refusal of Redis's own is
    transient and is retried."""
    text = str(error)
    return (
        type(error) is redis.ResponseError
        and ("user_script:" in text or "Error running script" in text)
        and not any(word in text for word in _TRANSIENT)
    )


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
        self._syncing = asyncio.Lock()
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
            loop.create_task(
                listen_forever(
                    self._redis, self._keys.channel, self._on_message, self._on_subscribed
                )
            ),
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
        self.dropped()

    async def sync(self) -> None:
        """Re-read every kind whose version token changed since the last read. When Redis lost
        its data (its generation mark is gone or new), write this node's mirror back instead.
        One at a time (the periodic check and a resubscription may ask at once)."""
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
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
        for kind, version in zip(kinds, versions, strict=True):
            mirror = self._hashes[kind]
            if version == mirror.version:
                continue
            asked_at = mirror.changes
            documents = await asyncio.wait_for(self._redis.hgetall(self._keys.hash(kind)), TIMEOUT)
            changed = mirror.replace_all(documents, asked_at)
            mirror.version = version
            if changed:
                event(log, "state_reloaded", kind=kind, changed=len(changed))
                self.on_change(kind, changed)

    def _on_subscribed(self) -> None:
        """The state channel is live (at start, or again after Redis was lost): what was announced
        before then never reached this node, so read whatever changed since the last sync."""
        self._spawn(self.sync_or_log())

    async def sync_or_log(self) -> None:
        """`sync`; a failure is logged (the next periodic check tries again)."""
        try:
            await self.sync()
        except Exception as exc:
            event(log, "state_sync_failed", logging.WARNING, error=str(exc)[:200])

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)

    def _on_message(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            kind, key = message.get("kind"), message.get("key")
        except (orjson.JSONDecodeError, AttributeError):
            event(log, "state_message_invalid", logging.WARNING)
            return
        if kind == "reload":
            self.on_reload()
        elif not (isinstance(kind, str) and isinstance(key, str)):
            # (a list as kind used to raise here and tear the subscription down)
            event(log, "state_message_invalid", logging.WARNING)
        elif kind in self._hashes:  # a kind this node does not mirror: not its business
            self._spawn(self._apply(kind, key))

    async def _apply(self, kind: str, key: str) -> None:
        try:
            document = await asyncio.wait_for(self._redis.hget(self._keys.hash(kind), key), TIMEOUT)
        except Exception as exc:  # the version check catches up later
            event(log, "state_read_failed", logging.WARNING, kind=kind, error=str(exc)[:200])
            return
        if self._hashes[kind].replace_one(key, document):
            self.on_change(kind, {key})

    async def flush(self) -> None:
        """Write every pending change to Redis (raises when Redis is unreachable), then read the
        result back: a patch merged with changes made elsewhere, or what refused the write."""
        for kind, mirror in self._hashes.items():
            for key, (mode, fields) in list(mirror.pending.items()):
                document = orjson.dumps(fields) if fields is not None else b""
                keys, args = self._keys.write_args(kind, key, mode, document)
                try:
                    result = await asyncio.wait_for(self._write(keys=keys, args=args), TIMEOUT)
                except redis.ResponseError as exc:
                    if not script_failed_on_this_key(exc):
                        raise  # Redis refuses writes for now (OOM, read-only...): kept, retried
                    result = [f"rejected: {exc}"[:200]]  # e.g. a corrupt stored document
                if mirror.pending.get(key) == (mode, fields):
                    del mirror.pending[key]
                mirror.touch(key)  # in Redis from now: an older full read must not undo it
                reason = refusal(result)
                if reason is not None:  # e.g. removed or raised elsewhere meanwhile
                    mirror.version = UNREAD  # re-read everything at the next sync as well
                    event(
                        log,
                        "state_write_refused",
                        logging.WARNING,
                        kind=kind,
                        identity=key if kind == RECORDS else None,
                        mode=mode,
                        reason=reason,
                    )
                await self._apply(kind, key)

    def dropped(self) -> None:
        """Log the writes that never reached Redis (at shutdown)."""
        for kind, mirror in self._hashes.items():
            if mirror.pending:
                keys = sorted(mirror.pending)[:20] if kind == RECORDS else None
                event(
                    log,
                    "state_write_lost",
                    logging.ERROR,
                    kind=kind,
                    count=len(mirror.pending),
                    identities=keys,
                )

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
    reconnects to another node is not asked to boot again.

    Every answer is written (not only changes: another node may have written a different status
    meanwhile), by one writer in order; a status not yet written is replaced by a newer one."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self._redis = redis
        self._key = StateKeys(prefix).boots
        self._pending: dict[str, str | None] = {}
        self._writer: asyncio.Task[None] | None = None

    async def load(self, identity: str) -> str | None:
        """The stored status (None when unknown or Redis does not answer within a second)."""
        if identity in self._pending:
            return self._pending[identity]
        try:
            raw = await asyncio.wait_for(self._redis.hget(self._key, identity), 1.0)
        except Exception as exc:
            error = str(exc)[:200]
            event(log, "boot_state_unavailable", logging.WARNING, identity=identity, error=error)
            return None
        return raw.decode() if raw is not None else None

    def store(self, identity: str, status: str | None) -> None:
        """Remember `status` (in the background, retried while Redis is unreachable)."""
        self._pending.pop(identity, None)  # re-inserted last: written in the order answered
        self._pending[identity] = status
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        delay = 0.1
        while self._pending:
            batch = dict(self._pending)
            pipe = self._redis.pipeline(transaction=False)
            for identity, status in batch.items():
                if status is None:
                    pipe.hdel(self._key, identity)
                else:
                    pipe.hset(self._key, identity, status)
            try:
                await asyncio.wait_for(pipe.execute(), TIMEOUT)
            except Exception as exc:
                error = str(exc)[:200]
                event(log, "boot_state_failed", logging.WARNING, count=len(batch), error=error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for identity, status in batch.items():
                if self._pending.get(identity, UNREAD) == status:
                    del self._pending[identity]

    async def stop(self) -> None:
        """Stop writing (what is still pending is lost: the charge point boots again)."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
