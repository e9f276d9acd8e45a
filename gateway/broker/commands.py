"""The backend's commands: read from the command stream by every gateway node, each run once.

The nodes share one consumer group, so each command entry goes to one node, which sends the CALL
through the router (to whichever node holds the charge point), XADDs the result to the result stream
and only then XACKs the command. A command id is remembered for `idempotency_seconds`: a command
posted twice runs once (the remembered result is posted again).

A node reads no more entries than it has free slots (MAX_IN_FLIGHT), so its read loop never waits
for one. While it runs an entry it holds a lease on it (a key naming the node, expiring after
`claim_idle_seconds`) and a separate task keeps both the entry (XCLAIM JUSTID) and the lease fresh,
however busy the node is. Entries idle for `claim_idle_seconds` are reclaimed (XAUTOCLAIM) by any
node: one whose lease is still held by a live node is left alone (its node acknowledges it), one
whose lease expired (its node died) is run again, so a command interrupted by a node's death may
reach the charge point twice; `reclaimed` in the log tells. A node restarted under the same name
takes its own pending entries back first. Consumers of the group that hold no entries and have been
idle for STALE_CONSUMER_FACTOR claim periods (names of workers that are gone: `<node_id>-<pid>`) are
deleted from the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.exceptions import ResponseError

from ..config import BrokerConfig
from ..logs import event
from ..ocppj.codec import CallError, CallResult
from ..router import CallFailed, Router
from .backoff import Backoff
from .command_format import (
    COMMAND_FIELD,
    RESULT_FIELD,
    Command,
    outcome,
    parse_command,
    result_entry,
)
from .command_ledger import CommandLedger, Leased
from .envelope import Malformed
from .keys import COMMAND_GROUP, BrokerKeys

log = logging.getLogger("gateway.broker")
BLOCK_MS = 1000  # below the client's socket timeout
BATCH = 20
MAX_IN_FLIGHT = 200
CLAIM_IDLE_SECONDS = 60.0
FRESH_TICK_SECONDS = 0.1
STALE_CONSUMER_FACTOR = 10  # a consumer idle this many claim periods, holding nothing, is gone
STOP_SECONDS = 2.0

Entry = tuple[bytes, dict[bytes, bytes] | None]


class CommandRunner:
    """Runs the backend's commands of the command stream on this node."""

    def __init__(
        self,
        redis: Any,
        keys: BrokerKeys,
        settings: BrokerConfig,
        node: str,
        router: Router,
        claim_idle_seconds: float = CLAIM_IDLE_SECONDS,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._node = node
        self._router = router
        self._maxlen = settings.stream_maxlen
        self._ledger = CommandLedger(redis, keys, node, settings.idempotency_seconds)
        self.claim_idle_seconds = claim_idle_seconds
        self.stale_consumer_seconds = claim_idle_seconds * STALE_CONSUMER_FACTOR
        self.max_in_flight = MAX_IN_FLIGHT
        self._in_flight: dict[bytes, asyncio.Task[None]] = {}
        self._slot_freed = asyncio.Event()
        self._own_after: bytes | str | None = "0"  # this name's pending entries, read first

    async def run(self, stop: asyncio.Event) -> None:
        """Read and run commands until `stop` is set; Redis errors are retried with backoff."""
        fresh = asyncio.get_running_loop().create_task(self._keep_fresh_loop(stop))
        try:
            await self._read_loop(stop)
        finally:
            fresh.cancel()

    async def _read_loop(self, stop: asyncio.Event) -> None:
        backoff, ready, lost = Backoff(), False, False
        claimed_at = float("-inf")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if not ready:
                    await self._join_group()
                    ready = True
                free = await self._free_slots()
                if not free:
                    continue
                if self._own_after is not None:
                    await self._take_own_pending(free)
                    continue
                if loop.time() - claimed_at >= self.claim_idle_seconds / 3:
                    claimed_at = loop.time()
                    await self._reclaim_stale(free)
                    await self._forget_stale_consumers()
                    continue
                response = await self._redis.xreadgroup(
                    COMMAND_GROUP,
                    self._node,
                    {self._keys.commands: ">"},
                    count=min(BATCH, free),
                    block=BLOCK_MS,
                )
                if lost:
                    lost = False
                    event(log, "broker_commands_resumed")
                backoff.reset()
                for _, entries in response or []:
                    for entry in entries:
                        self._start(entry, reclaimed=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    ready = False  # Redis lost its data: create the group again
                lost = True
                event(
                    log,
                    "broker_commands_lost",
                    logging.WARNING,
                    error=str(exc)[:200] or type(exc).__name__,
                    retry_in=backoff.delay,
                )
                await backoff.sleep()

    async def stop(self) -> None:
        """Cancel the commands still running (their entries stay pending, to be reclaimed)."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_SECONDS)

    # -- reading -----------------------------------------------------------------------------------

    async def _free_slots(self) -> int:
        """How many more commands may start now; waits up to one block period for a slot."""
        if len(self._in_flight) >= self.max_in_flight:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), BLOCK_MS / 1000)
        return max(0, self.max_in_flight - len(self._in_flight))

    async def _join_group(self) -> None:
        """Create the group at the start of the stream (commands posted before any node ran)."""
        try:
            await self._redis.xgroup_create(self._keys.commands, COMMAND_GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _take_own_pending(self, free: int) -> None:
        """Entries delivered to this node's name before a restart and never acknowledged, up to
        `free` of them per call; `_own_after` is None once they are all taken."""
        assert self._own_after is not None
        response = await self._redis.xreadgroup(
            COMMAND_GROUP, self._node, {self._keys.commands: self._own_after}, count=free
        )
        entries = response[0][1] if response else []
        if not entries:
            self._own_after = None
            return
        for entry in entries:
            self._start(entry, reclaimed=True)
        self._own_after = entries[-1][0]

    async def _reclaim_stale(self, free: int) -> None:
        """Entries idle longer than `claim_idle_seconds` with any consumer (a dead node's, or one
        still leased by its live node), as many as there are free slots."""
        start: bytes | str = "0-0"
        for _ in range(10):  # at most 10 batches per round
            reply = await self._redis.xautoclaim(
                self._keys.commands,
                COMMAND_GROUP,
                self._node,
                int(self.claim_idle_seconds * 1000),
                start_id=start,
                count=min(BATCH, free),
            )
            start, entries = reply[0], reply[1]
            for entry in entries:
                event(log, "broker_command_reclaimed", entry=entry[0].decode())
                self._start(entry, reclaimed=True)
            free = self.max_in_flight - len(self._in_flight)
            if start in (b"0-0", "0-0") or free <= 0:
                return

    async def _forget_stale_consumers(self) -> None:
        """Delete consumers that hold no entries and have been idle far beyond the claim time:
        the names of workers that are gone (a restarted worker has a new `<node_id>-<pid>`)."""
        idle_ms = self.stale_consumer_seconds * 1000
        for consumer in await self._redis.xinfo_consumers(self._keys.commands, COMMAND_GROUP):
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if name == self._node or consumer["pending"] or consumer["idle"] < idle_ms:
                continue
            await self._redis.xgroup_delconsumer(self._keys.commands, COMMAND_GROUP, name)
            event(log, "broker_consumer_removed", consumer=name, idle_ms=consumer["idle"])

    async def _keep_fresh_loop(self, stop: asyncio.Event) -> None:
        """Keep this node's running entries and their leases fresh, however busy it is."""
        loop = asyncio.get_running_loop()
        fresh_at = loop.time()
        while not stop.is_set():
            await asyncio.sleep(FRESH_TICK_SECONDS)
            if loop.time() - fresh_at < self.claim_idle_seconds / 3:
                continue
            fresh_at = loop.time()
            try:
                await self._keep_fresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the read loop reports it
                event(log, "broker_keep_fresh_failed", logging.DEBUG, error=str(exc)[:200])

    async def _keep_fresh(self) -> None:
        """Reset the idle time of the entries this node is still running; extend their leases."""
        if not self._in_flight:
            return
        lease_ms = int(self.claim_idle_seconds * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xclaim(
                self._keys.commands,
                COMMAND_GROUP,
                self._node,
                0,
                list(self._in_flight),
                justid=True,
            )
            self._ledger.extend_leases(pipe, lease_ms)
            await pipe.execute()

    def _start(self, entry: Entry, reclaimed: bool) -> None:
        entry_id = entry[0]
        if entry_id in self._in_flight:
            return
        task = asyncio.get_running_loop().create_task(self._run_one(entry, reclaimed))
        self._in_flight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(entry_id, None)
            self._ledger.release(entry_id)
            self._slot_freed.set()

        task.add_done_callback(done)

    # -- running one command -----------------------------------------------------------------------

    async def _run_one(self, entry: Entry, reclaimed: bool) -> None:
        try:
            await self._execute(entry, reclaimed)
        except Exception as exc:  # Redis went away: the entry stays pending and is reclaimed
            event(
                log,
                "broker_command_interrupted",
                logging.WARNING,
                entry=entry[0].decode(),
                error=str(exc)[:200] or type(exc).__name__,
            )

    async def _execute(self, entry: Entry, reclaimed: bool) -> None:
        entry_id, fields = entry
        raw = fields.get(COMMAND_FIELD) if fields else None
        command = parse_command(raw) if raw is not None else Malformed("no 'command' field")
        if isinstance(command, Malformed):
            event(
                log,
                "broker_command_invalid",
                logging.WARNING,
                entry=entry_id.decode(),
                command_id=command.id,
                reason=command.reason,
            )
            error = {"description": command.reason}
            body = result_entry(
                command.id, None, None, "invalid", self._node, time.time(), error=error
            )
            await self._post(entry_id, None, body)
            return
        lease_ms = max(1, int(self.claim_idle_seconds * 1000))
        remembered = await self._ledger.mark_running(entry_id, command, lease_ms)
        if isinstance(remembered, Leased):  # its node acknowledges it (or dies: reclaimed again)
            return
        if remembered is not None:  # ran before: its result again; running elsewhere: ack only
            await self._post(entry_id, None, remembered or None)
            return
        status, body = await self._call(command)
        await self._post(entry_id, command.command_id, body)
        event(
            log,
            "broker_command_done",
            command_id=command.command_id,
            identity=command.identity,
            action=command.action,
            status=status,
            reclaimed=reclaimed,
        )

    async def _call(self, command: Command) -> tuple[str, bytes]:
        """Send the command's CALL; its status and result entry (never raises)."""
        try:
            answer: CallResult | CallError | CallFailed = await self._router.call(
                command.identity, command.action, command.payload, command.timeout
            )
        except CallFailed as failed:
            answer = failed
        except Exception as exc:  # never lose the result: the backend must hear of it
            answer = CallFailed("offline", f"the gateway could not send the CALL: {exc!r}"[:200])
        status, payload, error = outcome(answer)
        body = result_entry(
            command.command_id,
            command.identity,
            command.action,
            status,
            self._node,
            time.time(),
            payload,
            error,
        )
        return status, body

    async def _post(self, entry_id: bytes, command_id: str | None, body: bytes | None) -> None:
        """XADD the result (and remember it), then XACK; retried until done or cancelled."""
        backoff, posted = Backoff(), body is None
        while True:
            try:
                if not posted:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        pipe.xadd(
                            self._keys.results,
                            {RESULT_FIELD: body},
                            maxlen=self._maxlen,
                            approximate=True,
                        )
                        if command_id is not None:
                            self._ledger.remember(pipe, command_id, body)
                        await pipe.execute()
                    posted = True
                await self._redis.xack(self._keys.commands, COMMAND_GROUP, entry_id)
                return
            except Exception as exc:
                event(
                    log,
                    "broker_result_retry",
                    logging.WARNING,
                    entry=entry_id.decode(),
                    error=str(exc)[:200] or type(exc).__name__,
                )
                await backoff.sleep()
