"""The backend's commands: read from the command stream by every gateway node, each run once.

The nodes share one consumer group, so each command entry goes to one node, which sends the CALL
through the router (to whichever node holds the charge point), XADDs the result to the result stream
and only then XACKs the command. A command id is remembered for `idempotency_seconds`: a command
posted twice runs once (the remembered result is posted again). A node restarted under the same
name first takes back its own pending commands; entries of a dead node are reclaimed (XAUTOCLAIM)
once idle for `claim_idle_seconds`, and a node keeps the entries it is still running fresh (XCLAIM
JUSTID) so a long CALL is never mistaken for a dead node's. A command interrupted by a node's death
may reach the charge point twice; `reclaimed` in the log tells.
"""

from __future__ import annotations

import asyncio
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
from .envelope import Malformed
from .keys import COMMAND_GROUP, BrokerKeys

log = logging.getLogger("gateway.broker")
BLOCK_MS = 1000  # below the client's socket timeout
BATCH = 20
MAX_IN_FLIGHT = 200
CLAIM_IDLE_SECONDS = 60.0
RUNNING = b"running:"
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
        self._remember_seconds = max(1, int(settings.idempotency_seconds))
        self.claim_idle_seconds = claim_idle_seconds
        self._in_flight: dict[bytes, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def run(self, stop: asyncio.Event) -> None:
        """Read and run commands until `stop` is set; Redis errors are retried with backoff."""
        backoff, ready, lost = Backoff(), False, False
        claimed_at = float("-inf")
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if not ready:
                    await self._join_group()
                    await self._take_own_pending()
                    ready = True
                if loop.time() - claimed_at >= self.claim_idle_seconds / 3:
                    claimed_at = loop.time()
                    await self._keep_fresh()
                    await self._reclaim_stale()
                response = await self._redis.xreadgroup(
                    COMMAND_GROUP,
                    self._node,
                    {self._keys.commands: ">"},
                    count=BATCH,
                    block=BLOCK_MS,
                )
                if lost:
                    lost = False
                    event(log, "broker_commands_resumed")
                backoff.reset()
                for _, entries in response or []:
                    for entry in entries:
                        await self._start(entry, reclaimed=False)
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

    async def _join_group(self) -> None:
        """Create the group at the start of the stream (commands posted before any node ran)."""
        try:
            await self._redis.xgroup_create(self._keys.commands, COMMAND_GROUP, "0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _take_own_pending(self) -> None:
        """Entries delivered to this node's name before a restart and never acknowledged."""
        after: bytes | str = "0"
        while True:
            response = await self._redis.xreadgroup(
                COMMAND_GROUP, self._node, {self._keys.commands: after}, count=BATCH
            )
            entries = response[0][1] if response else []
            if not entries:
                return
            for entry in entries:
                await self._start(entry, reclaimed=True)
            after = entries[-1][0]

    async def _reclaim_stale(self) -> None:
        """Entries idle longer than `claim_idle_seconds` with any consumer: a dead node's."""
        start: bytes | str = "0-0"
        for _ in range(10):  # at most 10 batches per round
            reply = await self._redis.xautoclaim(
                self._keys.commands,
                COMMAND_GROUP,
                self._node,
                int(self.claim_idle_seconds * 1000),
                start_id=start,
                count=BATCH,
            )
            start, entries = reply[0], reply[1]
            for entry in entries:
                event(log, "broker_command_reclaimed", entry=entry[0].decode())
                await self._start(entry, reclaimed=True)
            if start in (b"0-0", "0-0"):
                return

    async def _keep_fresh(self) -> None:
        """Reset the idle time of the entries this node is still running."""
        if self._in_flight:
            await self._redis.xclaim(
                self._keys.commands,
                COMMAND_GROUP,
                self._node,
                0,
                list(self._in_flight),
                justid=True,
            )

    async def _start(self, entry: Entry, reclaimed: bool) -> None:
        entry_id = entry[0]
        if entry_id in self._in_flight:
            return
        await self._slots.acquire()  # back-pressure: read no more than we can run
        task = asyncio.get_running_loop().create_task(self._run_one(entry, reclaimed))
        self._in_flight[entry_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(entry_id, None)
            self._slots.release()

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
        remembered = await self._mark_running(entry_id, command)
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

    async def _mark_running(self, entry_id: bytes, command: Command) -> bytes | None:
        """None: run it. Else the remembered result, or b"" when it runs elsewhere."""
        key = self._keys.command(command.command_id)
        marker = RUNNING + entry_id
        for _ in range(2):
            if await self._redis.set(key, marker, nx=True, ex=self._remember_seconds):
                return None
            previous = await self._redis.get(key)
            if previous is None:  # expired in between: try again
                continue
            if previous == marker:  # this very entry (restarted or reclaimed): run it
                return None
            event(
                log,
                "broker_command_duplicate",
                command_id=command.command_id,
                entry=entry_id.decode(),
                running=previous.startswith(RUNNING),
            )
            return b"" if previous.startswith(RUNNING) else previous
        return None

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
                            key = self._keys.command(command_id)
                            pipe.set(key, body, xx=True, keepttl=True)
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
