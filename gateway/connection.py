"""The IO edge of one charge point: moves ASGI WebSocket messages through its `OcppSession`.

Reads frames, hands valid CALLs to the handler (in order; an asynchronous handler never blocks the
reading of results), sends answers, runs the gateway's own CALLs one at a time (FIFO, with a
timeout), and closes with a code and reason. Nothing here raises into the server: a handler failure
is an InternalError answer, a closed socket ends the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from .events import GatewayEvent
from .handler import ActionNotHandled, CallHandler, CallRefused, FollowUp
from .logs import event
from .metrics import GatewayMetrics
from .ocppj.codec import CallError, CallResult
from .ocppj.errors import RpcErrorKind
from .redaction import redacted_call
from .registry import SessionInfo
from .router import CallFailed, Router
from .session import Dispatch, Drop, Notify, OcppSession, Reply, Resolve

log = logging.getLogger("gateway.connection")
DEBUG = logging.DEBUG

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001  # the gateway shuts down
CLOSE_PROTOCOL_ERROR = 1002  # no common OCPP version
CLOSE_POLICY_VIOLATION = 1008  # too many invalid messages
CLOSE_SERVICE_RESTART = 1012  # the worker drains: reconnect (to another node) after a delay
CLOSE_REPLACED = 4000  # a newer connection for the same identity took over


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Per-connection limits taken from the configuration."""

    call_timeout: float = 30.0
    close_timeout: float = 5.0  # how long a peer may take to answer our close frame


class ChargePointConnection:
    """One accepted charge point WebSocket.

    Thousands are held at once, mostly idle: slots instead of a `__dict__`, and the containers
    only some connections need (`_inbox`, `_follow_ups`, `_background`, `_call_lock`) are made
    on first use.
    """

    __slots__ = (
        "_background",
        "_call_lock",
        "_follow_ups",
        "_force_timer",
        "_forced",
        "_handler",
        "_inbox",
        "_metrics",
        "_pending",
        "_router",
        "_send",
        "_settings",
        "_task",
        "_worker",
        "claim_epoch",
        "client_chain",
        "close_code",
        "closed",
        "info",
        "last_message_at",
        "on_security_notice",
        "queued_calls",
        "session",
    )

    def __init__(
        self,
        info: SessionInfo,
        session: OcppSession,
        send: Any,
        handler: CallHandler,
        router: Router,
        settings: ConnectionSettings,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.info = info
        self.session = session
        self._send = send
        self._handler = handler
        self._router = router
        self._settings = settings
        self._metrics = metrics if metrics is not None else GatewayMetrics()
        self.queued_calls = 0  # gateway CALLs waiting (queued or outstanding): a sampled gauge
        self._call_lock: asyncio.Lock | None = None  # made by the first gateway CALL
        self._pending: asyncio.Future[CallResult | CallError] | None = None
        self._inbox: deque[Dispatch] | None = None  # CALLs behind an asynchronous answer
        self._worker: asyncio.Task[None] | None = None
        self._follow_ups: list[Any] | None = None  # started once the answer carrying them is sent
        self._background: set[asyncio.Task[None]] | None = None  # running follow-ups
        self._task: asyncio.Task[Any] | None = None
        self._forced = False
        self._force_timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.close_code: int | None = None
        self.claim_epoch: int | None = None  # the cluster-wide claim of this session
        self.client_chain: tuple[bytes, ...] = ()  # profile 3: re-checked on CA store changes
        # called with the charge point's own SecurityEventNotification payloads
        self.on_security_notice: Any = None
        self.last_message_at = info.connected_at

    # -- reading ---------------------------------------------------------------------------------

    async def run(self, receive: Any) -> int:
        """Serve the connection until the peer disconnects; return the close code."""
        self._task = asyncio.current_task()
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    await self._on_frame(text if text is not None else message.get("bytes") or b"")
                elif kind == "websocket.disconnect":
                    return int(message.get("code", 1005))
        except asyncio.CancelledError:
            if not self._forced:
                raise
            if self._task is not None:
                self._task.uncancel()  # our own cancellation: end the session normally
            event(log, "close_timeout", logging.WARNING, identity=self.info.identity)
            return 1006
        finally:
            self.closed = True
            if self._force_timer is not None:  # the peer answered our close in time
                self._force_timer.cancel()
            self._fail_pending(CallFailed("offline", "the charge point disconnected"))
            if self._worker is not None:
                self._worker.cancel()

    async def _on_frame(self, frame: str | bytes) -> None:
        if self.closed:  # closing: what the peer still sends is not acted upon
            return
        self.last_message_at = time.time()
        if self._router.wants_messages:
            self._publish(frame if isinstance(frame, str) else repr(frame)[:200], "in")
        outcome = self.session.receive(frame)
        kind = type(outcome)
        if kind is Dispatch:
            self._metrics.in_call[outcome.call.action].inc()
            if outcome.call.action == "SecurityEventNotification" and self.on_security_notice:
                self.on_security_notice(self.info, outcome.call.payload)
            if log.isEnabledFor(DEBUG):
                self._debug("in", outcome.call.action, outcome.call.message_id)
            if outcome.violation is not None:
                self._violation("in", outcome.call.action, outcome.violation.reason)
            await self._dispatch(outcome)
        elif kind is Reply:
            metrics = self._metrics
            metrics.in_refused.inc()
            metrics.out_error[""].inc()
            metrics.callerrors_sent[outcome.error_code].inc()
            event(
                log,
                "message_refused",
                logging.WARNING,
                identity=self.info.identity,
                message_id=outcome.message_id,
                error_code=outcome.error_code,
                reason=outcome.reason,
            )
            await self._send_text(outcome.frame)
        elif kind is Resolve:
            await self._resolve(outcome)
        elif kind is Notify:
            self._metrics.in_send[outcome.send.action].inc()
            if outcome.violation is not None:
                self._violation("in", outcome.send.action, outcome.violation.reason)
            try:
                self._handler.notify(self.info, self.session.version, outcome.send)
            except Exception:
                log.exception("SEND handler failed", extra={"fields": self._fields()})
        else:
            assert isinstance(outcome, Drop)
            self._metrics.in_dropped.inc()
            event(
                log,
                "message_dropped",
                logging.WARNING,
                identity=self.info.identity,
                message_id=outcome.message_id,
                reason=outcome.reason,
            )
        if self.session.bad_messages and self.session.exhausted and not self.closed:
            event(
                log,
                "bad_message_cap_reached",
                logging.WARNING,
                identity=self.info.identity,
                bad_messages=self.session.bad_messages,
            )
            await self.close(CLOSE_POLICY_VIOLATION, "too many invalid OCPP messages")

    async def _dispatch(self, dispatch: Dispatch) -> None:
        if self._worker is not None:  # an asynchronous answer is under way: keep the order
            if self._inbox is None:
                self._inbox = deque()
            self._inbox.append(dispatch)
            return
        result = self._invoke(dispatch)
        # answer from a worker (the read loop goes on); a payload (a dict) is the common case
        if type(result) is not dict and inspect.isawaitable(result):
            self._worker = asyncio.create_task(self._work(dispatch, result))
            return
        await self._send_text(self._answer(dispatch, result))
        self._start_follow_ups()

    def _start_follow_ups(self) -> None:
        follow_ups = self._follow_ups
        if follow_ups is None:
            return
        while follow_ups:
            task = asyncio.get_running_loop().create_task(follow_ups.pop(0)())
            if self._background is None:
                self._background = set()
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._follow_ups = None

    def _invoke(self, dispatch: Dispatch) -> Any:
        try:
            return self._handler.handle(self.info, self.session.version, dispatch.call)
        except Exception as exc:
            return exc

    async def _work(self, dispatch: Dispatch, result: Any) -> None:
        try:
            while True:
                if inspect.isawaitable(result):
                    try:
                        result = await result
                    except asyncio.CancelledError:
                        if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                            raise  # this worker is cancelled: the session ends
                        # Something the handler awaited was cancelled, not the handler: answer.
                        event(
                            log,
                            "call_handler_cancelled",
                            logging.ERROR,
                            identity=self.info.identity,
                            action=dispatch.call.action,
                            message_id=dispatch.call.message_id,
                        )
                        reason = "the CSMS failed to process the request"
                        result = CallRefused(RpcErrorKind.INTERNAL, reason)
                    except Exception as exc:
                        result = exc
                await self._send_text(self._answer(dispatch, result))
                self._start_follow_ups()
                inbox = self._inbox
                if not inbox:
                    self._inbox = None
                    return
                dispatch = inbox.popleft()
                result = self._invoke(dispatch)
        finally:
            self._worker = None

    def _answer(self, dispatch: Dispatch, result: Any) -> str:
        """The frame answering `dispatch`, counted as a message out."""
        frame = self._answer_frame(dispatch, result)
        if frame.startswith("[3,"):
            self._metrics.out_result[dispatch.call.action].inc()
        else:  # a CALLERROR (rare): its code from the frame we just made
            self._metrics.out_error[dispatch.call.action].inc()
            self._metrics.callerrors_sent[orjson.loads(frame)[2]].inc()
        return frame

    def _answer_frame(self, dispatch: Dispatch, result: Any) -> str:
        """The frame answering `dispatch`: the handler's payload, or the error it raised."""
        call = dispatch.call
        if isinstance(result, ActionNotHandled):
            reason = f"{call.action} is not handled by this gateway"
            return self.session.answer_error(call, RpcErrorKind.NOT_SUPPORTED, reason)
        follow_up = None
        if isinstance(result, FollowUp):
            follow_up, result = result.after, result.payload
        if isinstance(result, CallRefused):
            return self.session.answer_error(call, result.kind, result.description)
        if isinstance(result, Exception):
            log.error(
                "call handler failed", exc_info=result, extra={"fields": self._fields(call.action)}
            )
            reason = "the CSMS failed to process the request"
            return self.session.answer_error(call, RpcErrorKind.INTERNAL, reason)
        frame, violation = self.session.answer(call, result)
        if violation is not None:
            self._violation("out", call.action + "Response", violation.reason)
        if follow_up is not None and frame.startswith("[3,") and not self.closed:
            if self._follow_ups is None:  # only after an answer that is really sent
                self._follow_ups = []
            self._follow_ups.append(follow_up)
        return frame

    async def _resolve(self, outcome: Resolve) -> None:
        if log.isEnabledFor(DEBUG):
            self._debug("in", outcome.action, outcome.message_id)
        pending = self._pending
        self.session.end_call(outcome.message_id)
        self._count_resolve(outcome)
        if outcome.violation is not None:
            self._violation("in", outcome.action + "Response", outcome.violation.reason)
        if outcome.frame is not None:
            await self._send_text(outcome.frame)
        if pending is None or pending.done():
            return
        if outcome.frame is not None or (
            outcome.violation is not None and self.session.validation == "strict"
        ):
            pending.set_exception(
                CallFailed(
                    "invalid",
                    f"charge point answered an invalid response: "
                    f"{outcome.violation.reason if outcome.violation else ''}",
                )
            )
        else:
            pending.set_result(outcome.result)

    def _count_resolve(self, outcome: Resolve) -> None:
        metrics, result = self._metrics, outcome.result
        if type(result) is CallError:
            metrics.in_error[outcome.action].inc()
            metrics.callerror_received(result.error_code)
        else:
            metrics.in_result[outcome.action].inc()
        if outcome.frame is not None and outcome.violation is not None:  # 2.1 CALLRESULTERROR
            metrics.out_error[outcome.action].inc()
            code = self.session.version.error_code(outcome.violation.kind)
            metrics.callerrors_sent[code].inc()

    # -- the gateway's own CALLs -------------------------------------------------------------------

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> CallResult | CallError:
        """Send a CALL and wait for the charge point's answer; calls queue FIFO, one at a time.

        The timeout covers the wait in the queue too: a CALL that could not even be sent in
        time fails as `timeout` and is never sent later.
        """
        budget = timeout or self._settings.call_timeout
        deadline = asyncio.get_running_loop().time() + budget
        lock = self._call_lock
        if lock is None:
            lock = self._call_lock = asyncio.Lock()
        self.queued_calls += 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), budget)
            except TimeoutError:
                raise CallFailed(
                    "timeout", f"{action} waited {budget:g} s behind other calls"
                ) from None
            try:
                return await self._call_locked(action, payload, deadline)
            finally:
                lock.release()
        except CallFailed as failed:
            known = action in self.session.version.csms_actions
            self._metrics.call_failed(action if known else "unknown", failed.reason)
            raise
        finally:
            self.queued_calls -= 1

    async def _call_locked(
        self, action: str, payload: dict[str, Any], deadline: float
    ) -> CallResult | CallError:
        if self.closed:
            raise CallFailed("offline", f"charge point {self.info.identity} is not connected")
        started = self.session.begin_call(action, payload)
        if not isinstance(started, tuple):
            raise CallFailed("invalid", started.reason)
        message_id, frame = started
        future: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
        self._pending = future
        try:
            if log.isEnabledFor(DEBUG):
                self._debug("out", action, message_id)
            watched = self._router.wants_messages  # the copy for watchers, secrets redacted
            await self._send_text(
                frame, redacted_call(message_id, action, payload) if watched else None
            )
            self._metrics.out_call[action].inc()
            sent_at = asyncio.get_running_loop().time()
            remaining = max(0.0, deadline - sent_at)
            answer = await asyncio.wait_for(future, remaining)
            self._metrics.call_seconds[action].observe(asyncio.get_running_loop().time() - sent_at)
            return answer
        except TimeoutError:
            event(
                log,
                "call_timeout",
                logging.WARNING,
                identity=self.info.identity,
                action=action,
                message_id=message_id,
            )
            raise CallFailed("timeout", f"no answer to {action} within the timeout") from None
        finally:
            self._pending = None
            self.session.end_call(message_id)

    def _fail_pending(self, error: CallFailed) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(error)

    # -- writing and closing -----------------------------------------------------------------------

    async def _send_text(self, frame: str, published: str | None = None) -> None:
        """Send `frame`; watchers see `published` instead when given (secrets redacted)."""
        if self.closed:
            return
        if self._router.wants_messages:
            self._publish(published or frame, "out")
        try:
            await self._send({"type": "websocket.send", "text": frame})
        except Exception:  # the transport is gone: the read loop will see the disconnect
            self.closed = True

    async def close(self, code: int, reason: str) -> None:
        """Close with `code` and `reason`; the session ends even if the peer never answers."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._fail_pending(CallFailed("closed", reason))
        with contextlib.suppress(Exception):  # already gone: nothing to close
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        self._force_timer = asyncio.get_running_loop().call_later(
            self._settings.close_timeout, self._force_end
        )

    def _force_end(self) -> None:
        task = self._task
        if task is not None and not task.done():
            self._forced = True
            task.cancel()

    # -- observability -----------------------------------------------------------------------------

    def _publish(self, frame: str, direction: str) -> None:
        self._router.publish(
            GatewayEvent(
                "message",
                self.info.identity,
                self.info.subprotocol,
                time.time(),
                direction=direction,
                frame=frame,  # type: ignore[arg-type]
            )
        )

    def _fields(self, action: str | None = None) -> dict[str, Any]:
        return {"identity": self.info.identity, "action": action}

    def _debug(self, direction: str, action: str, message_id: str) -> None:
        event(
            log,
            "message",
            DEBUG,
            identity=self.info.identity,
            direction=direction,
            action=action,
            message_id=message_id,
        )

    def _violation(self, direction: str, action: str, reason: str) -> None:
        event(
            log,
            "schema_violation_passed",
            logging.WARNING,
            identity=self.info.identity,
            direction=direction,
            action=action,
            reason=reason,
            validation="lenient",
        )
