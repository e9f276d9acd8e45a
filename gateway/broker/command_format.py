"""The backend's commands and their results, as pure functions (see docs/broker.md).

A command entry holds one JSON field `command`: `command_id`, `identity`, `action`, `payload`, and
optionally `timeout` (seconds). A result entry holds one JSON field `result`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ..ocppj.codec import CallError, CallResult
from ..router import CallFailed
from .envelope import ENVELOPE_VERSION, Malformed, iso_utc

COMMAND_FIELD = b"command"
RESULT_FIELD = "result"
MAX_COMMAND_TIMEOUT = 300.0
MAX_COMMAND_ID_LENGTH = 200

Status = Literal["result", "error", "offline", "timeout", "invalid", "closed"]


@dataclass(frozen=True, slots=True)
class Command:
    """A CALL the backend wants sent to a charge point."""

    command_id: str
    identity: str
    action: str
    payload: dict[str, Any]
    timeout: float | None = None  # None: the gateway's limits.call_timeout_seconds


def _text(data: dict[str, Any], name: str, limit: int = 200) -> str | None:
    value = data.get(name)
    return value if type(value) is str and 0 < len(value) <= limit else None


def parse_command(raw: bytes | str) -> Command | Malformed:
    """The command in `raw`, or why it cannot run (`Malformed.id` is its id when readable)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Malformed("the command is not JSON")
    if type(data) is not dict:
        return Malformed("the command is not a JSON object")
    command_id = _text(data, "command_id", MAX_COMMAND_ID_LENGTH)
    if command_id is None:
        return Malformed(f"'command_id' must be a string of 1-{MAX_COMMAND_ID_LENGTH} characters")
    identity, action = _text(data, "identity"), _text(data, "action", 100)
    if identity is None or action is None:
        return Malformed("'identity' and 'action' must be non-empty strings", command_id)
    payload = data.get("payload", {})
    if type(payload) is not dict:
        return Malformed("'payload' must be a JSON object", command_id)
    timeout = data.get("timeout")
    if timeout is not None and (
        type(timeout) not in (int, float) or not 0 < timeout <= MAX_COMMAND_TIMEOUT
    ):
        return Malformed(f"'timeout' must be a number of seconds in (0, {MAX_COMMAND_TIMEOUT:g}]")
    return Command(command_id, identity, action, payload, None if timeout is None else timeout)


def outcome(
    answer: CallResult | CallError | CallFailed,
) -> tuple[Status, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, payload, error) of a command from the charge point's answer or the failure."""
    if isinstance(answer, CallResult):
        return "result", answer.payload, None
    if isinstance(answer, CallError):
        error = {"code": answer.error_code, "description": answer.description}
        return "error", None, {**error, "details": answer.details}
    return answer.reason, None, {"description": answer.detail}  # type: ignore[return-value]


def result_entry(
    command_id: str | None,
    identity: str | None,
    action: str | None,
    status: Status,
    node: str,
    completed_at: float,
    payload: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> bytes:
    """The JSON of a result entry."""
    body: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "command_id": command_id,
        "identity": identity,
        "action": action,
        "status": status,
        "node": node,
        "completed_at": iso_utc(completed_at),
    }
    if payload is not None:
        body["payload"] = payload
    if error is not None:
        body["error"] = error
    return orjson.dumps(body)
