"""OCPP-J frames of the load generator: CALLs out, replies judged (pure, no IO).

A CALL is `[2, id, action, payload]` serialised with orjson (Heartbeat from a byte template: its
payload never changes). A reply is judged against the CALL it answers: with `expect="ocpp"` only
`[3, id, {...}]` passes; `[4, id, code, ...]` is a CALLERROR with its code; a CALL from the server
is told apart (the charge point answers it, the run goes on); a frame for another message id is
stale (the answer to a call that timed out) or unexpected. With `expect="echo"` (a raw echo
server) the reply must be the very bytes sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import orjson

Expect = Literal["ocpp", "echo"]
EXPECTS: tuple[Expect, ...] = ("ocpp", "echo")

CALL, CALLRESULT, CALLERROR = 2, 3, 4
_HEARTBEAT = b'[2,"%d","Heartbeat",{}]'


def call_frame(message_id: int, action: str, payload: dict[str, Any]) -> bytes:
    """The CALL frame; the message id is the decimal text of `message_id`."""
    if action == "Heartbeat" and not payload:
        return _HEARTBEAT % message_id
    return orjson.dumps([CALL, str(message_id), action, payload])


def not_implemented_frame(message_id: str) -> bytes:
    """The charge point's answer to a server CALL it does not simulate."""
    return orjson.dumps(
        [CALLERROR, message_id, "NotImplemented", "not simulated by the load generator", {}]
    )


class ReplyKind(Enum):
    """What a received frame is, relative to the CALL awaiting its answer."""

    RESULT = "result"  # the expected answer
    CALLERROR = "callerror"  # a CALLERROR for our call: `detail` is its code
    SERVER_CALL = "server_call"  # a CALL from the server: `detail` is its action
    OTHER_ID = "other_id"  # a reply for another message id: `detail` is that id
    BAD = "bad"  # not an acceptable reply: `detail` says why


@dataclass(frozen=True, slots=True)
class Reply:
    """A received frame, judged."""

    kind: ReplyKind
    detail: str = ""
    payload: Any = None
    message_id: str = ""


def judge_reply(raw: bytes | str, message_id: int, sent: bytes, expect: Expect) -> Reply:
    """Judge frame `raw`, received while CALL `sent` (id `message_id`) awaits its answer."""
    data = raw.encode() if isinstance(raw, str) else raw
    if expect == "echo":
        if data == sent:
            return Reply(ReplyKind.RESULT, message_id=str(message_id))
        return Reply(ReplyKind.BAD, "echo_mismatch")
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Reply(ReplyKind.BAD, "not_json")
    if not isinstance(message, list) or len(message) < 3 or not isinstance(message[1], str):
        return Reply(ReplyKind.BAD, "not_ocppj")
    kind, reply_id = message[0], message[1]
    if kind == CALL:
        action = message[2] if isinstance(message[2], str) else "?"
        return Reply(ReplyKind.SERVER_CALL, action, message_id=reply_id)
    if kind not in (CALLRESULT, CALLERROR):
        return Reply(ReplyKind.BAD, "message_type")
    if reply_id != str(message_id):
        return Reply(ReplyKind.OTHER_ID, reply_id, message_id=reply_id)
    if kind == CALLERROR:
        code = message[2] if isinstance(message[2], str) else "?"
        return Reply(ReplyKind.CALLERROR, code, message_id=reply_id)
    if len(message) != 3 or not isinstance(message[2], dict):
        return Reply(ReplyKind.BAD, "callresult_shape")
    return Reply(ReplyKind.RESULT, payload=message[2], message_id=reply_id)
