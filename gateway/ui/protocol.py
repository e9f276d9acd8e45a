"""The UI API's messages as pure functions: validate client messages, build server messages.

The contract is `ui-api.schema.json` (also published as docs/ui-api.schema.json); each client
message is checked against the definition its `type` names, compiled once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import fastjsonschema
import orjson

SCHEMA: dict[str, Any] = json.loads(
    files("gateway.ui").joinpath("ui-api.schema.json").read_text(encoding="utf-8")
)
CLIENT_MESSAGES: tuple[str, ...] = tuple(SCHEMA["client_messages"])
_VALIDATORS = {
    name: fastjsonschema.compile(
        {**SCHEMA["definitions"][name], "definitions": SCHEMA["definitions"]}
    )
    for name in CLIENT_MESSAGES
}


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A client message that is not valid: the request id (if readable) and why."""

    request_id: str | None
    reason: str


def parse_client_message(frame: str | bytes) -> dict[str, Any] | BadRequest:
    """The validated message, or why it is refused."""
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return BadRequest(None, "message is not valid JSON")
    if type(message) is not dict:
        return BadRequest(None, "message must be a JSON object")
    request_id = message.get("id") if isinstance(message.get("id"), str) else None
    kind = message.get("type")
    validator = _VALIDATORS.get(kind) if isinstance(kind, str) else None
    if validator is None:
        return BadRequest(
            request_id, f"unknown message type; use one of {', '.join(CLIENT_MESSAGES)}"
        )
    try:
        validator(message)
    except fastjsonschema.JsonSchemaValueException as exc:
        return BadRequest(request_id, f"{kind}: {exc.message}")
    return message


def encode(message: dict[str, Any]) -> str:
    """A server message as compact JSON text."""
    return orjson.dumps(message).decode()


def error(request_id: str | None, code: str, reason: str) -> str:
    """An `error` message."""
    return encode({"type": "error", "id": request_id, "code": code, "reason": reason})
