"""The CallHandler of forward mode: charge point CALLs go to the backend, its answers come back.

A CALL is appended to the call stream (once per idempotency key) and waits for the backend's answer,
which the reply reader hands to `resolve`. No answer within `answer_timeout_seconds`, Redis
unreachable, or an invalid answer: the fallback answers (the embedded central system, or a
CALLERROR). A message re-sent with the same id is not appended again: it gets the remembered
answer, or waits for the first delivery's answer. A re-send that arrives while this node still
waits joins that wait (each caller waits on a shield of the shared future, so a cancelled caller
never takes the answer from the others); a re-send whose first delivery went through another node
(or an earlier run of this one) looks for the answer itself (`_watch`). Nothing here raises into
the connection but the CALLERRORs it means to send.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..config import BrokerConfig
from ..handler import ActionNotHandled, CallHandler, CallRefused, FollowUp
from ..logs import event
from ..ocppj.codec import Call, Send
from ..ocppj.errors import RpcErrorKind
from ..registry import SessionInfo
from ..versions.base import OcppVersion
from .envelope import (
    Answer,
    Invalid,
    Malformed,
    Refusal,
    judge_answer,
    message_envelope,
    message_key,
    parse_answer,
)
from .streams import CallStream, FirstDelivery, NotReplicated

log = logging.getLogger("gateway.broker")
Payload = dict[str, Any]
WATCH_SECONDS = 0.15  # how often a duplicate looks for the answer to another node's delivery

FALLBACK_REASONS = {
    "timeout": "the backend CSMS did not answer {action} within {timeout:g} s",
    "redis_unavailable": "the backend CSMS cannot be reached: the broker is unavailable",
    "not_replicated": "{action} could not be stored durably: replicas did not acknowledge it",
    "invalid_answer": "the backend CSMS answered {action} with an invalid response",
    "interrupted": "the delivery of {action} to the backend CSMS was interrupted",
}


@dataclass(slots=True, eq=False)
class Delivery:
    """One forwarded CALL awaiting its answer: the first delivery and the re-sends joined to it."""

    future: asyncio.Future[Answer | Malformed]
    waiters: int = 1
    watch: asyncio.Task[None] | None = None  # a duplicate looking for another node's answer


class ForwardingHandler:
    """Forwards charge point CALLs and SENDs to the backend; answers from it or the fallback."""

    def __init__(
        self,
        stream: CallStream,
        settings: BrokerConfig,
        node: str,
        reply_to: str,
        fallback: CallHandler,
    ) -> None:
        self._stream = stream
        self._node = node
        self._reply_to = reply_to
        self._fallback = fallback
        self._actions = frozenset(settings.forward_actions)
        self._timeout = settings.answer_timeout_seconds
        # WAIT gets half the answer timeout: the backend needs the other half.
        self._wait_ms = max(1, int(settings.answer_timeout_seconds * 500))
        self._error_fallback = settings.fallback == "error"
        self._waiting: dict[str, Delivery] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self.healthy = True  # false from a failed append to the next good one
        self.failed_appends = 0

    # -- the CallHandler contract --------------------------------------------------------------

    def handle(self, info: SessionInfo, version: OcppVersion, call: Call) -> Any:
        """Forward `call` (an awaitable answer); actions not forwarded go to the fallback."""
        if self._actions and call.action not in self._actions:
            return self._fallback.handle(info, version, call)
        return self._forward(info, version, call)

    def notify(self, info: SessionInfo, version: OcppVersion, send: Send) -> None:
        """Append a 2.1 SEND to the call stream in the background (it gets no answer)."""
        if self._actions and send.action not in self._actions:
            self._fallback.notify(info, version, send)
            return
        task = asyncio.get_running_loop().create_task(self._append_send(info, version, send))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # -- answers from the reply reader -----------------------------------------------------------

    def resolve(self, answer: Answer | Malformed) -> None:
        """Hand a backend answer to the CALL waiting for it; late answers are dropped."""
        if isinstance(answer, Malformed):
            event(
                log, "broker_answer_malformed", logging.WARNING, id=answer.id, reason=answer.reason
            )
        delivery = self._waiting.get(answer.id) if answer.id is not None else None
        if delivery is None or delivery.future.done():
            if isinstance(answer, Answer):
                event(log, "broker_answer_late", id=answer.id)
            return
        delivery.future.set_result(answer)

    async def stop(self) -> None:
        """Stop appending SENDs still under way."""
        for task in list(self._sends):
            task.cancel()

    # -- forwarding --------------------------------------------------------------------------------

    async def _forward(self, info: SessionInfo, version: OcppVersion, call: Call) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        key = message_key(info.identity, call.message_id)
        delivery = self._waiting.get(key)
        if delivery is not None:  # re-sent while the first delivery still waits: the same answer
            event(
                log,
                "broker_duplicate",
                identity=info.identity,
                message_id=call.message_id,
                answer="joined",
            )
            delivery.waiters += 1
            try:
                return await self._wait(info, version, call, delivery.future, started)
            finally:
                self._leave(key, delivery)
        # Registered before the append: the answer may come back at once.
        delivery = self._waiting[key] = Delivery(loop.create_future())
        try:
            failure = await self._append(info, version, call, key, delivery)
            if failure is not None:
                return await self._fall_back(info, version, call, failure)
            return await self._wait(info, version, call, delivery.future, started)
        finally:
            self._leave(key, delivery)

    def _leave(self, key: str, delivery: Delivery) -> None:
        """One caller stops waiting; the last one to leave forgets the delivery."""
        delivery.waiters -= 1
        if delivery.waiters:
            return
        if self._waiting.get(key) is delivery:
            del self._waiting[key]
        if delivery.watch is not None:
            delivery.watch.cancel()

    async def _append(
        self, info: SessionInfo, version: OcppVersion, call: Call, key: str, delivery: Delivery
    ) -> str | None:
        """Append `call` once. None: its answer comes in `delivery.future` (or never, when the
        backend does not answer); else the reason the fallback answers."""
        now = time.time()
        envelope = message_envelope(
            "call",
            info.identity,
            version.subprotocol,
            call.action,
            call.message_id,
            call.payload,
            now,
            self._node,
            self._reply_to,
            now + self._timeout,
        )
        try:
            appended = await asyncio.wait_for(
                self._stream.append(key, envelope, self._wait_ms, self._reply_to), self._timeout
            )
        except NotReplicated as exc:
            event(log, "broker_not_replicated", logging.WARNING, error=str(exc), id=key)
            return "not_replicated"
        except Exception as exc:
            self._unavailable(exc, info, call)
            return "redis_unavailable"
        self._available()
        if appended.new:
            return None
        # Re-sent: the remembered answer, else the first delivery's, wherever it arrives.
        remembered = parse_answer(appended.remembered) if appended.remembered else None
        known = isinstance(remembered, Answer)
        event(
            log,
            "broker_duplicate",
            identity=info.identity,
            message_id=call.message_id,
            answer="remembered" if known else "awaited",
        )
        if known:
            if not delivery.future.done():  # re-sends joined meanwhile get it too
                delivery.future.set_result(remembered)  # type: ignore[arg-type]
        else:
            watching = self._watch(key, appended.first, delivery.future)
            delivery.watch = asyncio.get_running_loop().create_task(watching)
        return None

    async def _watch(
        self, key: str, first: FirstDelivery | None, future: asyncio.Future[Answer | Malformed]
    ) -> None:
        """Look for the answer to a duplicate's first delivery every WATCH_SECONDS until it is
        there (or the last caller leaves): remembered under the seen key (by the node that reads
        its reply stream), or in the first delivery's reply stream when that is another node's
        (which may be gone, e.g. restarted under a new node id)."""
        if first is not None and first.reply_to == self._reply_to:
            first = None  # our own reply stream: the reply reader delivers it as well
        after = first.scan_from if first is not None else None
        while not future.done():
            await asyncio.sleep(WATCH_SECONDS)
            try:
                raw, after = await self._stream.find_answer(key, first, after)
            except Exception as exc:  # Redis away: the caller's timeout still holds
                event(log, "broker_watch_failed", logging.DEBUG, id=key, error=str(exc)[:200])
                continue
            if raw is not None and not future.done():
                event(log, "broker_answer_found", id=key, reply_to=first and first.reply_to)
                future.set_result(parse_answer(raw))

    async def _wait(
        self,
        info: SessionInfo,
        version: OcppVersion,
        call: Call,
        future: asyncio.Future[Answer | Malformed],
        started: float,
    ) -> Any:
        """Wait for the shared `future` through a shield: a caller that is cancelled, or stops
        waiting, leaves the answer to the others."""
        remaining = self._timeout - (asyncio.get_running_loop().time() - started)
        try:
            answer = await asyncio.wait_for(asyncio.shield(future), max(0.0, remaining))
        except TimeoutError:
            event(
                log,
                "broker_answer_timeout",
                logging.WARNING,
                identity=info.identity,
                action=call.action,
                message_id=call.message_id,
                timeout=self._timeout,
            )
            return await self._fall_back(info, version, call, "timeout")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not future.cancelled() or (task is not None and task.cancelling()):
                raise  # this caller is cancelled: nothing to answer
            event(
                log,
                "broker_answer_interrupted",
                logging.WARNING,
                identity=info.identity,
                action=call.action,
                message_id=call.message_id,
            )
            return await self._fall_back(info, version, call, "interrupted")
        return await self._apply(info, version, call, answer)

    async def _apply(
        self, info: SessionInfo, version: OcppVersion, call: Call, answer: Answer | Malformed
    ) -> Any:
        verdict = (
            Invalid(answer.reason)
            if isinstance(answer, Malformed)
            else judge_answer(answer, version, call.action)
        )
        if isinstance(verdict, Invalid):
            event(
                log,
                "broker_answer_invalid",
                logging.WARNING,
                identity=info.identity,
                action=call.action,
                message_id=call.message_id,
                reason=verdict.reason,
            )
            return await self._fall_back(info, version, call, "invalid_answer")
        if isinstance(verdict, Refusal):
            if verdict.kind is RpcErrorKind.NOT_SUPPORTED:
                raise ActionNotHandled(verdict.description)
            raise CallRefused(verdict.kind, verdict.description, verdict.details)
        return verdict

    async def _fall_back(
        self, info: SessionInfo, version: OcppVersion, call: Call, reason: str
    ) -> Payload | FollowUp:
        if self._error_fallback:
            description = FALLBACK_REASONS[reason].format(action=call.action, timeout=self._timeout)
            raise CallRefused(RpcErrorKind.INTERNAL, description)
        result = self._fallback.handle(info, version, call)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _append_send(self, info: SessionInfo, version: OcppVersion, send: Send) -> None:
        now = time.time()
        envelope = message_envelope(
            "send",
            info.identity,
            version.subprotocol,
            send.action,
            send.message_id,
            send.payload,
            now,
            self._node,
            None,
            None,
        )
        key = message_key(info.identity, send.message_id)
        try:
            append = self._stream.append(key, envelope, self._wait_ms, None)
            await asyncio.wait_for(append, self._timeout)
        except Exception as exc:
            self._unavailable(exc, info, send)
            event(
                log,
                "broker_send_lost",
                logging.WARNING,
                identity=info.identity,
                action=send.action,
                message_id=send.message_id,
            )
        else:
            self._available()

    # -- Redis health ------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException, info: SessionInfo, message: Call | Send) -> None:
        self.failed_appends += 1
        if self.healthy:
            self.healthy = False
            event(
                log,
                "broker_redis_unavailable",
                logging.ERROR,
                error=str(exc)[:200] or type(exc).__name__,
                identity=info.identity,
                action=message.action,
            )
        else:
            event(
                log,
                "broker_fallback",
                logging.DEBUG,
                identity=info.identity,
                action=message.action,
                message_id=message.message_id,
                reason="redis_unavailable",
            )

    def _available(self) -> None:
        if not self.healthy:
            self.healthy = True
            event(log, "broker_redis_available", failed_appends=self.failed_appends)
            self.failed_appends = 0
