"""One UI client: requests in, answers and live events out, never slowing charge point traffic.

Events reach the client through a bounded queue filled by the router's (synchronous) listener: when
the client reads too slowly the oldest events are dropped and counted (or the client is
disconnected, as configured). Answers to the client's own requests go through their own queue and
are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from typing import Any

from security.tokens import ApiToken

from ..cluster.presence import session_facts
from ..events import GatewayEvent
from ..logs import event
from ..ocppj.codec import CallError
from ..router import CallFailed, Router
from ..security_actions import ActionFailed, SecurityActions
from .protocol import BadRequest, encode, error, parse_client_message
from .service import UiService

log = logging.getLogger("gateway.ui")
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
REVOKED = "the token was revoked or has expired"
CLOSE_GOING_AWAY = 1001
MAX_SUBSCRIPTIONS = 32
LIST_TIMEOUT = 2.0  # other nodes' sessions, read from Redis

EVENT_KINDS = {
    "connected": "connection",
    "disconnected": "connection",
    "message": "message",
    "security": "security",
}
_subscription_ids = itertools.count(1)


class UiConnection:
    """The session of one authenticated UI client."""

    def __init__(
        self,
        token: ApiToken,
        service: UiService,
        router: Router,
        send_text: Callable[[str], Awaitable[None]],
        close: Callable[[int, str], Awaitable[None]],
        last_message_at: Callable[[str], float],
        security_actions: SecurityActions | None = None,
    ) -> None:
        self._security_actions = security_actions
        self.token = token
        self._service = service
        self._router = router
        self._send_text = send_text
        self._close = close
        self._last_message_at = last_message_at
        settings = service.settings
        self._events: deque[str] = deque()
        self._replies: deque[str] = deque()
        self._capacity = settings.queue_size
        self._disconnect_on_overflow = settings.overflow == "disconnect"
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._subscriptions: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing: str | None = None
        self._listing = False
        self._close_code = CLOSE_TRY_AGAIN_LATER

    @property
    def queued_events(self) -> int:
        """Events waiting to be sent to this client (a metric)."""
        return len(self._events)

    # -- events from the router (synchronous, must never block) -----------------------------------

    def on_event(self, gateway_event: GatewayEvent) -> None:
        """Router listener: queue the event for every matching subscription."""
        kind = EVENT_KINDS[gateway_event.kind]
        identity = gateway_event.identity
        if not self.token.sees(identity):
            return
        for subscription, (patterns, kinds) in self._subscriptions.items():
            if kind in kinds and _matches(identity, patterns):
                self._queue_event(_event_message(subscription, gateway_event))

    def _queue_event(self, text: str) -> None:
        if len(self._events) >= self._capacity:
            if self._disconnect_on_overflow:
                self.closing = "too slow: the event queue overflowed"
                self._wakeup.set()
                return
            self._events.popleft()
            self._dropped += 1
        self._events.append(text)
        self._wakeup.set()

    def _reply(self, text: str) -> None:
        if len(self._replies) >= self._capacity:  # a client that sends but never reads
            self.closing = "too many unread answers"
        self._replies.append(text)
        self._wakeup.set()

    def shutdown(self) -> None:
        """Close this client with 1001 (the gateway drains)."""
        self.closing, self._close_code = "the gateway is shutting down", CLOSE_GOING_AWAY
        self._wakeup.set()

    # -- the writer ------------------------------------------------------------------------------

    async def write(self) -> None:
        """Send replies first, then events (with a `dropped` notice after drops), until closed.

        The token is re-checked at least every `token_check_seconds`, so a revoked or expired
        token stops receiving events even when its client never sends anything.
        """
        interval = self._service.settings.token_check_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), interval)
            self._wakeup.clear()
            if not self._service.still_valid(self.token):
                self.closing, self._close_code = REVOKED, CLOSE_POLICY_VIOLATION
            while self._replies or self._events or self._dropped:
                if self.closing:
                    await self._close(self._close_code, self.closing)
                    return
                if self._replies:
                    await self._send_text(self._replies.popleft())
                elif self._dropped:
                    count, self._dropped = self._dropped, 0
                    await self._send_text(encode({"type": "dropped", "count": count}))
                else:
                    await self._send_text(self._events.popleft())
            if self.closing:
                await self._close(self._close_code, self.closing)
                return

    # -- requests ---------------------------------------------------------------------------------

    async def handle(self, frame: str | bytes) -> None:
        """Answer one client message."""
        if len(frame) > self._service.settings.max_message_bytes:
            self._reply(error(None, "too_large", "message exceeds ui.max_message_bytes"))
            return
        if not self._service.still_valid(self.token):
            self.closing, self._close_code = REVOKED, CLOSE_POLICY_VIOLATION
            self._wakeup.set()
            return
        message = parse_client_message(frame)
        if isinstance(message, BadRequest):
            event(
                log,
                "ui_bad_request",
                logging.WARNING,
                token=self.token.token_id,
                reason=message.reason,
            )
            self._reply(error(message.request_id, "bad_request", message.reason))
            return
        kind, request_id = message["type"], message.get("id")
        if kind == "list":
            if self._listing:  # one at a time: each one reads every node's sessions
                self._reply(error(request_id, "rate_limited", "a list is already in progress"))
                return
            self._listing = True
            task = asyncio.get_running_loop().create_task(self._list(request_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "subscribe":
            self._subscribe(message)
        elif kind == "unsubscribe":
            found = self._subscriptions.pop(message["subscription"], None)
            self._reply(
                encode({"type": "unsubscribed", "id": request_id})
                if found
                else error(request_id, "bad_request", "no such subscription")
            )
        elif kind == "command":
            self._command(message)
        elif kind == "security_action":
            self._security_action(message)
        else:  # auth after authentication
            self._reply(error(request_id, "bad_request", "already authenticated"))

    async def _list(self, request_id: str) -> None:
        """The charge points this token may see, on this node and (with Redis) every other."""
        try:
            await self._list_now(request_id)
        finally:
            self._listing = False

    async def _list_now(self, request_id: str) -> None:
        found: dict[str, dict[str, Any]] = {}
        partial = False
        presence = self._router.presence
        if presence is not None:
            try:
                for item in await asyncio.wait_for(presence.others(), LIST_TIMEOUT):
                    known = found.get(item["identity"])  # a takeover in flight: the newest wins
                    if known is None or item["connected_at"] > known["connected_at"]:
                        found[item["identity"]] = {**item, "last_message_at": None}
            except Exception as exc:
                partial = True
                event(log, "ui_list_partial", logging.WARNING, error=str(exc)[:200])
        for info in self._router.registry.sessions():  # local sessions are authoritative
            found[info.identity] = {
                **session_facts(info, self._router.node_id),
                "last_message_at": self._last_message_at(info.identity),
            }
        visible = sorted(
            (item for identity, item in found.items() if self.token.sees(identity)),
            key=lambda item: item["identity"],
        )
        answer = {"type": "charge_points", "id": request_id, "charge_points": visible}
        self._reply(encode({**answer, "partial": True} if partial else answer))

    def _subscribe(self, message: dict[str, Any]) -> None:
        kinds = frozenset(message["events"])
        if "security" in kinds and not self.token.allows("admin"):
            self._reply(error(message["id"], "forbidden", "security events need an admin token"))
            return
        if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
            self._reply(
                error(
                    message["id"],
                    "bad_request",
                    f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                )
            )
            return
        subscription = f"s{next(_subscription_ids)}"
        self._subscriptions[subscription] = (tuple(message["identities"]), kinds)
        self._reply(
            encode({"type": "subscribed", "id": message["id"], "subscription": subscription})
        )

    def _command(self, message: dict[str, Any]) -> None:
        request_id = message["id"]
        if not self.token.allows("operator"):
            self._reply(error(request_id, "forbidden", "commands need an operator token"))
            return
        if is_security_sensitive(message["action"], message["payload"]) and not self.token.allows(
            "admin"
        ):
            self._reply(error(request_id, "forbidden", "security-sensitive commands need admin"))
            return
        if not self._service.allow_command(self.token):
            self._reply(error(request_id, "rate_limited", "too many commands: slow down"))
            return
        task = asyncio.get_running_loop().create_task(self._run_command(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, message: dict[str, Any]) -> None:
        request_id, identity, action = message["id"], message["identity"], message["action"]
        key = message.get("idempotency_key")
        future = None
        if key is not None:
            future, fresh = self._service.idempotent(self.token, key)
            if not fresh:
                answer = await asyncio.shield(future)
                self._reply(encode({**answer, "id": request_id}))
                return
        try:
            answer = await self._call(identity, action, message["payload"], message.get("timeout"))
        except BaseException:
            if future is not None and not future.done():  # waiters must not hang: retry later
                self._service.forget(self.token, key)  # type: ignore[arg-type]
                future.set_result(_failure("offline", "the first attempt was interrupted: retry"))
            raise
        event(
            log,
            "ui_command",
            token=self.token.token_id,
            identity=identity,
            action=action,
            outcome=answer.get("outcome") or answer.get("code"),
        )
        if future is not None and not future.done():
            future.set_result(answer)
        self._reply(encode({**answer, "id": request_id}))

    async def _call(
        self, identity: str, action: str, payload: dict[str, Any], timeout: float | None
    ) -> dict[str, Any]:
        if not self.token.sees(identity):  # indistinguishable from an unknown charge point
            return _failure("offline", f"charge point {identity} is not connected")
        try:
            result = await self._router.call(identity, action, payload, timeout)
        except CallFailed as failed:
            code = "offline" if failed.reason == "closed" else failed.reason
            return _failure(code, failed.detail)
        base = {"type": "result", "identity": identity, "action": action}
        if isinstance(result, CallError):
            return {
                **base,
                "outcome": "callerror",
                "error_code": result.error_code,
                "description": result.description,
                "details": result.details,
            }
        return {**base, "outcome": "callresult", "payload": result.payload}

    def _security_action(self, message: dict[str, Any]) -> None:
        if not self.token.allows("admin"):
            self._reply(error(message["id"], "forbidden", "security actions need an admin token"))
            return
        if not self._service.allow_command(self.token):
            self._reply(error(message["id"], "rate_limited", "too many commands: slow down"))
            return
        task = asyncio.get_running_loop().create_task(self._run_security_action(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_security_action(self, message: dict[str, Any]) -> None:
        request_id, identity, action = message["id"], message["identity"], message["action"]
        actions = self._security_actions
        try:
            if not self.token.sees(identity) or actions is None:
                raise ActionFailed("offline", f"charge point {identity} is not connected")
            if action == "rotate_password":
                outcome = await actions.rotate_password(identity)
            elif action == "upgrade_profile":
                if "profile" not in message:
                    raise ActionFailed("invalid", "upgrade_profile needs 'profile'")
                outcome = await actions.upgrade_profile(identity, message["profile"])
            else:
                if "serial_number" not in message:
                    raise ActionFailed("invalid", "delete_certificate needs 'serial_number'")
                outcome = await actions.delete_certificate(identity, message["serial_number"])
        except ActionFailed as failed:
            self._reply(error(request_id, failed.code, failed.reason))
            return
        except CallFailed as failed:
            code = "offline" if failed.reason == "closed" else failed.reason
            self._reply(error(request_id, code, failed.detail))
            return
        event(
            log,
            "ui_security_action",
            token=self.token.token_id,
            identity=identity,
            action=action,
            status=outcome.get("status"),
        )
        self._reply(
            encode(
                {
                    "type": "security_result",
                    "id": request_id,
                    "identity": identity,
                    "action": action,
                    **outcome,
                }
            )
        )

    async def stop(self) -> None:
        """Cancel the commands still running for this client."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _failure(code: str, reason: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "reason": reason}


def _matches(identity: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(identity, pattern) for pattern in patterns)


def _event_message(subscription: str, gateway_event: GatewayEvent) -> str:
    message: dict[str, Any] = {
        "type": "event",
        "subscription": subscription,
        "event": gateway_event.kind,
        "identity": gateway_event.identity,
        "at": gateway_event.at,
    }
    for name in ("subprotocol", "direction", "frame", "close_code", "reason", "detail", "remote"):
        value = getattr(gateway_event, name)
        if value:
            message[name] = value
    return encode(message)


# Commands that change a charge point's security: admin tokens only.
SECURITY_SENSITIVE_ACTIONS = frozenset(
    {
        "CertificateSigned",
        "InstallCertificate",
        "DeleteCertificate",
        "SetNetworkProfile",
        "SignedUpdateFirmware",
        "UpdateFirmware",
        "Reset",
    }
)
SECURITY_CONFIGURATION_KEYS = frozenset({"authorizationkey", "securityprofile", "cponame"})
SECURITY_COMPONENTS = frozenset({"securityctrlr"})
SECURITY_VARIABLES = frozenset({"networkconfigurationpriority", "basicauthpassword"})


def is_security_sensitive(action: str, payload: dict[str, Any]) -> bool:
    """True for commands that change credentials, certificates, network profiles or firmware."""
    if action in SECURITY_SENSITIVE_ACTIONS:
        return True
    if action == "ChangeConfiguration":
        return str(payload.get("key", "")).lower() in SECURITY_CONFIGURATION_KEYS
    if action == "SetVariables":
        for item in payload.get("setVariableData") or []:
            if not isinstance(item, dict):
                continue
            component = str((item.get("component") or {}).get("name", "")).lower()
            variable = str((item.get("variable") or {}).get("name", "")).lower()
            if component in SECURITY_COMPONENTS or variable in SECURITY_VARIABLES:
                return True
    return False
