"""This node's reply stream: one XREAD BLOCK loop delivering the backend's answers by id.

No per-call polling: every forwarded CALL of this node waits on a future that `deliver` resolves.
Answers are remembered under their idempotency keys before they are delivered (so a duplicate that
arrives after the answer gets the same answer). Read entries are trimmed (XTRIM MINID), and the
stream expires when no node reads it any more. A node starts at the beginning of its (trimmed)
reply stream, so answers that arrived while it restarted are remembered too. The loop never dies:
Redis errors are logged and retried with backoff (0.1-1 s), resuming after the last entry read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..logs import event
from .backoff import Backoff
from .envelope import ANSWER_FIELD, Answer, Malformed, parse_answer
from .streams import CallStream

log = logging.getLogger("gateway.broker")
BLOCK_MS = 1000  # below the client's socket timeout
BATCH = 200
TRIM_EVERY_SECONDS = 5.0
REPLY_STREAM_TTL_SECONDS = 86400  # a dead node's reply stream goes away


class ReplyReader:
    """Reads one node's reply stream and hands each answer to `deliver`."""

    def __init__(
        self,
        redis: Any,
        stream: str,
        calls: CallStream,
        deliver: Callable[[Answer | Malformed], None],
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._calls = calls
        self._deliver = deliver
        # Entries left by this node's previous run (same node name) are read too: answers to
        # CALLs in flight during a restart, remembered for the charge points' re-sends.
        self._last: bytes | str = "0-0"  # the last entry id read
        self._trimmed_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set (within one BLOCK period)."""
        backoff, lost = Backoff(), False
        while not stop.is_set():
            try:
                response = await self._redis.xread(
                    {self._stream: self._last}, count=BATCH, block=BLOCK_MS
                )
                if lost:
                    lost = False
                    event(log, "broker_replies_resumed", stream=self._stream)
                backoff.reset()
                if response:
                    await self._handle(response[0][1])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                lost = True
                event(
                    log,
                    "broker_replies_lost",
                    logging.WARNING,
                    stream=self._stream,
                    error=str(exc)[:200] or type(exc).__name__,
                    retry_in=backoff.delay,
                )
                await backoff.sleep()

    async def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        self._last = entries[-1][0]
        answers: list[Answer | Malformed] = []
        raw_answers: list[tuple[str, bytes]] = []
        for _, fields in entries:
            raw = fields.get(ANSWER_FIELD)
            answer = parse_answer(raw) if raw is not None else Malformed("no 'answer' field")
            answers.append(answer)
            if isinstance(answer, Answer):
                raw_answers.append((answer.id, raw))  # type: ignore[arg-type]
        if raw_answers:
            try:
                await self._calls.remember(raw_answers)
            except Exception as exc:  # duplicates then fall back; answering goes on
                event(log, "broker_remember_failed", logging.WARNING, error=str(exc)[:200])
        for answer in answers:
            self._deliver(answer)
        if time.monotonic() - self._trimmed_at >= TRIM_EVERY_SECONDS:
            self._trimmed_at = time.monotonic()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xtrim(self._stream, minid=self._last, approximate=True)
                pipe.expire(self._stream, REPLY_STREAM_TTL_SECONDS)
                await pipe.execute()
