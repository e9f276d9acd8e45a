"""What the broker writes to the call stream and reads back from the backend, as pure functions.

Envelopes (charge point CALLs and SENDs, session events) are built to JSON bytes; the backend's
answers are parsed into typed values and judged against the charge point's OCPP version. No IO: the
forwarding handler and the reply reader call these. The formats are documented in docs/broker.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..clock import iso_utc
from ..ocppj.errors import RpcErrorKind
from ..versions.base import OcppVersion

ENVELOPE_VERSION = 1
ENVELOPE_FIELD = "envelope"  # the stream entry field holding an envelope
ANSWER_FIELD = b"answer"  # the reply stream entry field holding an answer

Kind = Literal["call", "send"]


def message_key(identity: str, message_id: str) -> str:
    """The idempotency key of a charge point message: `identity:message_id`.

    Unambiguous because identities never contain `:` (OCPP-J 3.1.1 and the gateway's rules).
    """
    return f"{identity}:{message_id}"


def message_envelope(
    kind: Kind,
    identity: str,
    version: str,
    action: str,
    message_id: str,
    payload: dict[str, Any],
    received_at: float,
    node: str,
    reply_to: str | None,
    deadline: float | None,
) -> bytes:
    """The envelope of a charge point CALL (`reply_to`, `deadline` set) or SEND (both None)."""
    return orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "kind": kind,
            "id": message_key(identity, message_id),
            "identity": identity,
            "version": version,
            "action": action,
            "message_id": message_id,
            "payload": payload,
            "received_at": iso_utc(received_at),
            "node": node,
            "reply_to": reply_to,
            "deadline": None if deadline is None else round(deadline, 3),
        }
    )


def event_envelope(
    event_id: str,
    event: str,
    identity: str,
    version: str,
    at: float,
    node: str,
    session: str,
    close_code: int | None = None,
) -> bytes:
    """The envelope of a session event (`connected`, `disconnected`) of the session `session`.

    `event_id` has no `:`, so it never equals a message's idempotency key.
    """
    body: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "kind": "event",
        "id": event_id,
        "event": event,
        "identity": identity,
        "version": version,
        "at": iso_utc(at),
        "node": node,
        "session": session,
    }
    if close_code is not None:
        body["close_code"] = close_code
    return orjson.dumps(body)


# -- answers from the backend --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerError:
    """The backend refuses the CALL: an OCPP-J error code of the charge point's version."""

    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Answer:
    """The backend's answer to the forwarded message `id`: a payload or an error."""

    id: str
    payload: dict[str, Any] | None = None
    error: AnswerError | None = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """Something read from a stream that does not follow the documented format, and why."""

    reason: str
    id: str | None = None


def parse_answer(raw: bytes | str) -> Answer | Malformed:
    """`{"id": ..., "payload": {...}}` or `{"id": ..., "error": {"code": ..., ...}}`."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Malformed("the answer is not JSON")
    if type(data) is not dict:
        return Malformed("the answer is not a JSON object")
    answer_id = data.get("id")
    if type(answer_id) is not str or not answer_id:
        return Malformed("the answer has no string 'id'")
    payload, error = data.get("payload"), data.get("error")
    if (payload is None) == (error is None):
        return Malformed("the answer needs exactly one of 'payload' and 'error'", answer_id)
    if payload is not None:
        if type(payload) is not dict:
            return Malformed("'payload' must be a JSON object", answer_id)
        return Answer(answer_id, payload)
    if type(error) is not dict or type(error.get("code")) is not str:
        return Malformed("'error' must be an object with a string 'code'", answer_id)
    description, details = error.get("description", ""), error.get("details", {})
    if type(description) is not str or type(details) is not dict:
        return Malformed("'error.description' must be a string, 'error.details' an object")
    return Answer(answer_id, error=AnswerError(error["code"], description, details))


@dataclass(frozen=True, slots=True)
class Refusal:
    """A valid error answer: the CALLERROR the charge point gets."""

    kind: RpcErrorKind
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Invalid:
    """An answer the charge point must not get (the fallback applies), and why."""

    reason: str


_KINDS: dict[str, dict[str, RpcErrorKind]] = {}


def error_kind(version: OcppVersion, code: str) -> RpcErrorKind | None:
    """The error kind `version` names `code` (None: not an error code of that version)."""
    kinds = _KINDS.get(version.subprotocol)
    if kinds is None:  # once per version; the first kind wins where 1.6 shares a name
        names = reversed(version.error_codes.items())
        kinds = _KINDS[version.subprotocol] = {name: kind for kind, name in names}
    return kinds.get(code)


def judge_answer(
    answer: Answer, version: OcppVersion, action: str
) -> dict[str, Any] | Refusal | Invalid:
    """The response payload for the charge point, the CALLERROR to send, or why neither."""
    if answer.error is None:
        assert answer.payload is not None
        violation = version.schemas.validate_response(action, answer.payload)
        if violation is not None:
            return Invalid(
                f"the {action} response does not match the {version.subprotocol} schema: "
                f"{violation.reason}"
            )
        return answer.payload
    error = answer.error
    kind = error_kind(version, error.code)
    if kind is None:
        return Invalid(f"'{error.code[:40]}' is not an OCPP-J error code of {version.subprotocol}")
    description = error.description or f"the backend CSMS refused {action}"
    return Refusal(kind, error.code, description, error.details)
