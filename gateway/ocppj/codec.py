"""Parse and format OCPP-J frames: CALL, CALLRESULT, CALLERROR, CALLRESULTERROR and SEND.

Pure functions over `str`/`bytes`; the caller owns the socket. A frame that cannot be parsed
yields a `FrameError` carrying what the spec requires for the answer (error kind, the message id
or "-1" when it cannot be read, and whether an answer may be sent at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import orjson

from .errors import RpcErrorKind

MAX_MESSAGE_ID_LENGTH = 36  # OCPP-J 2.x 4.1.4: messageId is string[36]
MAX_ERROR_DESCRIPTION_LENGTH = 255  # OCPP-J 2.x 4.2.3: ErrorDescription is string[255]
UNREADABLE_MESSAGE_ID = "-1"  # OCPP-J 2.x 4.2.3: used when the MessageId cannot be read


class MessageType(IntEnum):
    """OCPP-J message type numbers (2.1 adds CALLRESULTERROR and SEND)."""

    CALL = 2
    CALLRESULT = 3
    CALLERROR = 4
    CALLRESULTERROR = 5
    SEND = 6


@dataclass(frozen=True, slots=True)
class Call:
    """A request: `[2, id, action, payload]`."""

    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Send:
    """An unconfirmed message (2.1): `[6, id, action, payload]`; never answered."""

    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    """A response: `[3, id, payload]`."""

    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    """An error answer to a CALL (`[4, ...]`) or, in 2.1, to a CALLRESULT (`[5, ...]`)."""

    message_id: str
    error_code: str
    description: str
    details: dict[str, Any]
    result_error: bool = False  # True for a 2.1 CALLRESULTERROR


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that is not a valid OCPP-J message, with what the answer must carry."""

    kind: RpcErrorKind
    description: str
    message_id: str = UNREADABLE_MESSAGE_ID
    message_type: int | None = None

    @property
    def answerable(self) -> bool:
        """Whether a CALLERROR may answer this frame.

        Never a known CALLRESULT, CALLERROR or SEND (OCPP-J 4.2.3, 4.2.4); always an unknown message
        type (2.0.1 4.4: answer MessageTypeNotSupported).
        """
        if self.kind is RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED:
            return True
        return self.message_type is None or self.message_type == MessageType.CALL


Message = Call | Send | CallResult | CallError


def parse_frame(frame: str | bytes, message_types: frozenset[int]) -> Message | FrameError:
    """Parse one WebSocket message into an OCPP-J message, or say precisely why not.

    `message_types` are the type numbers the negotiated version knows (2.1 adds 5 and 6).
    """
    try:
        data = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return FrameError(RpcErrorKind.RPC_FRAMEWORK, "message is not valid UTF-8 JSON")
    if isinstance(frame, bytes):
        # OCPP-J is carried in text frames (UTF-8 JSON); a binary frame is refused but answered.
        mid = _readable_id(data)
        mtype = data[0] if isinstance(data, list) and data and type(data[0]) is int else None
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK,
            "binary WebSocket frames are not OCPP-J: send text",
            mid,
            mtype,
        )
    if type(data) is not list:
        return FrameError(RpcErrorKind.RPC_FRAMEWORK, "message is not a JSON array")
    if not data or type(data[0]) is not int:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK,
            "first element must be the MessageTypeId (an integer)",
            _readable_id(data),
        )
    mtype = data[0]
    if mtype not in message_types:
        return FrameError(
            RpcErrorKind.MESSAGE_TYPE_NOT_SUPPORTED,
            f"MessageTypeId {mtype} is not supported by this OCPP version",
            _readable_id(data),
            mtype,
        )
    if len(data) < 2 or type(data[1]) is not str or not data[1]:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK, "MessageId must be a non-empty string", message_type=mtype
        )
    mid = data[1]
    if len(mid) > MAX_MESSAGE_ID_LENGTH:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK,
            f"MessageId is longer than {MAX_MESSAGE_ID_LENGTH} characters",
            message_type=mtype,
        )
    if mtype == MessageType.CALL or mtype == MessageType.SEND:
        return _parse_call(data, mid, mtype)
    if mtype == MessageType.CALLRESULT:
        if len(data) != 3:
            return FrameError(
                RpcErrorKind.RPC_FRAMEWORK, "a CALLRESULT has exactly 3 elements", mid, mtype
            )
        payload = _payload(data[2])
        if payload is None:
            return FrameError(
                RpcErrorKind.FORMAT, "CALLRESULT payload must be an object", mid, mtype
            )
        return CallResult(mid, payload)
    # CALLERROR or CALLRESULTERROR
    if len(data) != 5:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK, "a CALLERROR has exactly 5 elements", mid, mtype
        )
    _, _, code, description, details = data
    if type(code) is not str or type(description) is not str or type(details) is not dict:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK,
            "CALLERROR fields must be errorCode (string), errorDescription (string), "
            "errorDetails (object)",
            mid,
            mtype,
        )
    return CallError(mid, code, description, details, mtype == MessageType.CALLRESULTERROR)


def _parse_call(data: list[Any], mid: str, mtype: int) -> Call | Send | FrameError:
    name = "CALL" if mtype == MessageType.CALL else "SEND"
    if len(data) != 4:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK, f"a {name} has exactly 4 elements", mid, mtype
        )
    action = data[2]
    if type(action) is not str or not action:
        return FrameError(
            RpcErrorKind.RPC_FRAMEWORK, "Action must be a non-empty string", mid, mtype
        )
    payload = _payload(data[3])
    if payload is None:
        return FrameError(RpcErrorKind.FORMAT, f"{name} payload must be a JSON object", mid, mtype)
    return Call(mid, action, payload) if mtype == MessageType.CALL else Send(mid, action, payload)


def _payload(value: Any) -> dict[str, Any] | None:
    """The payload object; `null` is read as `{}` (OCPP-J 2.x 4.1.5 allows both notations)."""
    if type(value) is dict:
        return value
    if value is None:
        return {}
    return None


def _readable_id(data: Any) -> str:
    if (
        type(data) is list
        and len(data) > 1
        and type(data[1]) is str
        and 0 < len(data[1]) <= MAX_MESSAGE_ID_LENGTH
    ):
        return data[1]
    return UNREADABLE_MESSAGE_ID


def _dumps(value: list[Any]) -> str:
    return orjson.dumps(value).decode()


def format_call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    """`[2,"id","Action",{...}]`, compact."""
    return _dumps([MessageType.CALL, message_id, action, payload])


def format_send(message_id: str, action: str, payload: dict[str, Any]) -> str:
    """`[6,"id","Action",{...}]`, compact (2.1)."""
    return _dumps([MessageType.SEND, message_id, action, payload])


def format_call_result(message_id: str, payload: dict[str, Any]) -> str:
    """`[3,"id",{...}]`, compact."""
    return _dumps([MessageType.CALLRESULT, message_id, payload])


def format_call_error(
    message_id: str,
    error_code: str,
    description: str = "",
    details: dict[str, Any] | None = None,
    *,
    result_error: bool = False,
) -> str:
    """`[4,"id","Code","description",{...}]` (or `[5,...]` for a 2.1 CALLRESULTERROR)."""
    mtype = MessageType.CALLRESULTERROR if result_error else MessageType.CALLERROR
    return _dumps(
        [
            mtype,
            message_id,
            error_code,
            description[:MAX_ERROR_DESCRIPTION_LENGTH],
            details if details is not None else {},
        ]
    )
