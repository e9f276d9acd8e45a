"""The OCPP-J session of one charge point connection, as a pure state machine (no IO).

`receive()` turns one WebSocket message into what the IO layer must do (dispatch a CALL, answer
with a CALLERROR, resolve a pending gateway CALL, or drop and log). `begin_call()`/`answer()` build
outgoing frames. Rules applied here: OCPP-J framing and error answers, action direction, schema
validation (strict or lenient), one outstanding CALL per direction, and boot gating.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .ocppj.codec import (
    Call,
    CallError,
    CallResult,
    FrameError,
    Send,
    format_call,
    format_call_error,
    format_call_result,
    parse_frame,
)
from .ocppj.errors import RpcErrorKind
from .validation import SchemaViolation
from .versions.base import OcppVersion

ValidationMode = Literal["strict", "lenient"]
BOOT_ACTION = "BootNotification"
_NONE: frozenset[str] = frozenset()  # shared by every session with nothing in a set


@dataclass(slots=True)
class BootRecord:
    """The last BootNotification status answered to one identity (None: not seen since start)."""

    status: str | None = None


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A valid charge point CALL for the handler; `violation` is set in lenient mode only."""

    call: Call
    violation: SchemaViolation | None = None


@dataclass(frozen=True, slots=True)
class Notify:
    """A valid 2.1 SEND for the handler (never answered)."""

    send: Send
    violation: SchemaViolation | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer at once with `frame` (a CALLERROR) and log `reason`."""

    frame: str
    message_id: str
    error_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """The answer to the gateway's outstanding CALL.

    `violation` is a CALLRESULT that failed its schema (strict mode: the caller gets an error);
    `frame` is a CALLRESULTERROR to send back (2.1) in that case.
    """

    message_id: str
    action: str
    result: CallResult | CallError
    violation: SchemaViolation | None = None
    frame: str | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing to answer (late or unknown result, a broken result or SEND); log `reason`."""

    reason: str
    message_id: str


Inbound = Dispatch | Notify | Reply | Resolve | Drop


@dataclass(slots=True)
class OcppSession:
    """Protocol state of one charge point connection."""

    identity: str
    version: OcppVersion
    boot: BootRecord
    validation: ValidationMode = "strict"
    max_bad_messages: int = 20
    gate_unknown_boot: bool = False
    on_boot_status: Callable[[str | None], None] | None = None  # e.g. share it with other nodes
    bad_messages: int = 0
    pending_id: str | None = None
    pending_action: str | None = None
    # Mostly empty on thousands of idle sessions: the shared `_NONE` until something is added.
    _handling: set[str] | frozenset[str] = _NONE  # message ids of CALLs not answered yet
    _invited: frozenset[str] = _NONE  # CALLs our requests invite while the boot is Pending

    @property
    def exhausted(self) -> bool:
        """True once the charge point has sent more bad messages than allowed."""
        return 0 < self.max_bad_messages < self.bad_messages

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, frame: str | bytes) -> Inbound:
        """Interpret one WebSocket message from the charge point."""
        message = parse_frame(frame, self.version.message_types)
        if type(message) is Call:
            return self._receive_call(message)
        if type(message) is CallResult or type(message) is CallError:
            return self._receive_result(message)
        if type(message) is Send:
            return self._receive_send(message)
        assert isinstance(message, FrameError)
        self.bad_messages += 1
        if not message.answerable:
            return Drop(f"invalid message: {message.description}", message.message_id)
        return self._refuse(message.message_id, message.kind, message.description)

    def _receive_call(self, call: Call) -> Inbound:
        action = call.action
        if action not in self.version.charge_point_actions:
            self.bad_messages += 1
            if action in self.version.csms_actions:
                reason = f"{action} is sent by the CSMS, not by a charge point"
                return self._refuse(call.message_id, RpcErrorKind.NOT_SUPPORTED, reason)
            reason = f"unknown action '{action[:40]}' in {self.version.subprotocol}"
            return self._refuse(call.message_id, RpcErrorKind.NOT_IMPLEMENTED, reason)
        if call.message_id in self._handling:
            self.bad_messages += 1
            reason = "a CALL with this MessageId is already being handled"
            return self._refuse(call.message_id, RpcErrorKind.RPC_FRAMEWORK, reason)
        if action != BOOT_ACTION and self._gated(action):
            reason = (
                f"charge point is not accepted (boot status {self.boot.status or 'unknown'}): "
                "send BootNotification first"
            )
            return self._refuse(call.message_id, RpcErrorKind.SECURITY, reason)
        violation = self.version.schemas.validate_request(action, call.payload)
        if violation is not None and self.validation == "strict":
            self.bad_messages += 1
            return self._refuse(call.message_id, violation.kind, violation.reason)
        if self._handling:
            self._handling.add(call.message_id)  # type: ignore[union-attr]
        else:
            self._handling = {call.message_id}
        return Dispatch(call, violation)

    def _gated(self, action: str) -> bool:
        status = self.boot.status
        if status == "Accepted" or (status is None and not self.gate_unknown_boot):
            return False
        return not (status == "Pending" and action in self._invited)

    def _receive_result(self, result: CallResult | CallError) -> Inbound:
        if type(result) is CallError and result.result_error:  # 2.1: answers our CALLRESULT
            return Drop(
                f"charge point could not process our CALLRESULT: {result.error_code}",
                result.message_id,
            )
        if result.message_id != self.pending_id or self.pending_action is None:
            return Drop(
                "late or unknown CALLRESULT/CALLERROR: no such CALL is outstanding",
                result.message_id,
            )
        action = self.pending_action
        if type(result) is CallError:
            return Resolve(result.message_id, action, result)
        violation = self.version.schemas.validate_response(action, result.payload)
        if violation is None or self.validation == "lenient":
            return Resolve(result.message_id, action, result, violation)
        self.bad_messages += 1
        frame = None
        if 5 in self.version.message_types:  # 2.1: tell the charge point (CALLRESULTERROR)
            frame = format_call_error(
                result.message_id,
                self.version.error_code(violation.kind),
                violation.reason,
                result_error=True,
            )
        return Resolve(result.message_id, action, result, violation, frame)

    def _receive_send(self, send: Send) -> Inbound:
        if send.action not in self.version.send_actions:
            self.bad_messages += 1
            return Drop(f"unknown SEND action '{send.action[:40]}'", send.message_id)
        violation = self.version.schemas.validate_send(send.action, send.payload)
        if violation is not None and self.validation == "strict":
            self.bad_messages += 1
            return Drop(f"SEND payload invalid: {violation.reason}", send.message_id)
        return Notify(send, violation)

    def _refuse(self, message_id: str, kind: RpcErrorKind, reason: str) -> Reply:
        code = self.version.error_code(kind)
        return Reply(format_call_error(message_id, code, reason), message_id, code, reason)

    # -- answers to the charge point's CALLs -----------------------------------------------------

    def answer(self, call: Call, payload: dict[str, Any]) -> tuple[str, SchemaViolation | None]:
        """The CALLRESULT frame for `call`; an invalid response becomes InternalError (strict)."""
        self._answered(call.message_id)
        violation = self.version.schemas.validate_response(call.action, payload)
        if violation is not None and self.validation == "strict":
            reason = f"the CSMS produced an invalid {call.action} response: {violation.reason}"
            return self.answer_error(call, RpcErrorKind.INTERNAL, reason), violation
        if call.action == BOOT_ACTION:
            status = payload.get("status")
            status = status if isinstance(status, str) else None
            if self.on_boot_status is not None:  # every answer: another node may differ
                self.on_boot_status(status)
            self.boot.status = status
            if status == "Accepted":
                self._invited = _NONE
        return format_call_result(call.message_id, payload), violation

    def answer_error(self, call: Call, kind: RpcErrorKind, reason: str) -> str:
        """A CALLERROR frame for `call`."""
        self._answered(call.message_id)
        return format_call_error(call.message_id, self.version.error_code(kind), reason)

    def _answered(self, message_id: str) -> None:
        handling = self._handling
        if message_id in handling:
            handling.discard(message_id)  # type: ignore[union-attr]
            if not handling:
                self._handling = _NONE

    # -- the gateway's CALLs to the charge point --------------------------------------------------

    def begin_call(self, action: str, payload: dict[str, Any]) -> tuple[str, str] | SchemaViolation:
        """Start the (single) outstanding gateway CALL: (message id, frame) or why it is invalid."""
        if self.pending_id is not None:
            raise RuntimeError("a gateway CALL is already outstanding on this session")
        if action not in self.version.csms_actions:
            return SchemaViolation(
                RpcErrorKind.NOT_SUPPORTED,
                f"{action} is not a CSMS-initiated action of {self.version.subprotocol}",
            )
        violation = self.version.schemas.validate_request(action, payload)
        if violation is not None and self.validation == "strict":
            return violation
        if self.boot.status == "Pending":
            self._invited |= self.version.triggered_actions(action, payload)
        message_id = str(uuid.uuid4())
        self.pending_id, self.pending_action = message_id, action
        return message_id, format_call(message_id, action, payload)

    def end_call(self, message_id: str) -> None:
        """Forget the outstanding CALL (answered, timed out or abandoned)."""
        if self.pending_id == message_id:
            self.pending_id = self.pending_action = None
