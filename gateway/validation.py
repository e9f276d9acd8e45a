"""JSON-schema validation of OCPP payloads with the `ocpp` library's schemas, compiled once.

The library validates with `jsonschema` at every message; here each schema is compiled by
`fastjsonschema` into a Python function the first time an action is seen, then reused by every
session of the process. Failures map to the OCPP-J error kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp
import orjson

from .ocppj.errors import RpcErrorKind

SCHEMA_ROOT = Path(ocpp.__file__).parent

# fastjsonschema's failing rule -> the OCPP-J error kind (OCPP-J 2.x 4.3 / 1.6 4.2.3).
_RULE_KINDS: dict[str, RpcErrorKind] = {
    "required": RpcErrorKind.OCCURRENCE,
    "minItems": RpcErrorKind.OCCURRENCE,
    "maxItems": RpcErrorKind.OCCURRENCE,
    "type": RpcErrorKind.TYPE,
    "additionalProperties": RpcErrorKind.FORMAT,
}

Validator = Callable[[Any], Any]
_compiled: dict[Path, Validator] = {}


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """A payload that fails its schema: the error kind and a readable reason."""

    kind: RpcErrorKind
    reason: str


def _compile(path: Path) -> Validator:
    validator = _compiled.get(path)
    if validator is None:
        schema = orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
        validator = fastjsonschema.compile(schema, use_formats=False)
        _compiled[path] = validator
    return validator


class SchemaSet:
    """The request, response and SEND schemas of one OCPP version."""

    def __init__(self, folder: str, request_suffix: str) -> None:
        self._dir = SCHEMA_ROOT / folder / "schemas"
        self._request_suffix = request_suffix
        self._request_paths: dict[str, Path | None] = {}
        self._response_paths: dict[str, Path | None] = {}
        self._send_paths: dict[str, Path | None] = {}

    def _path(self, cache: dict[str, Path | None], name: str) -> Path | None:
        try:
            return cache[name]
        except KeyError:
            path = self._dir / f"{name}.json"
            # Only names of plain identifiers may reach the filesystem.
            found = path if name.isidentifier() and path.is_file() else None
            if len(cache) < 4096:
                cache[name] = found
            return found

    def request_actions(self) -> frozenset[str]:
        """Every action with a request schema in this version."""
        suffix = self._request_suffix
        names = (p.stem for p in self._dir.glob("*.json"))
        if suffix:
            return frozenset(n.removesuffix(suffix) for n in names if n.endswith(suffix))
        return frozenset(n for n in names if not n.endswith("Response"))

    def validate_request(self, action: str, payload: dict[str, Any]) -> SchemaViolation | None:
        """Check a CALL payload; None when valid."""
        return self._validate(
            self._path(self._request_paths, action + self._request_suffix), payload
        )

    def validate_response(self, action: str, payload: dict[str, Any]) -> SchemaViolation | None:
        """Check a CALLRESULT payload of `action`; None when valid."""
        return self._validate(self._path(self._response_paths, action + "Response"), payload)

    def validate_send(self, action: str, payload: dict[str, Any]) -> SchemaViolation | None:
        """Check a 2.1 SEND payload; None when valid."""
        return self._validate(self._path(self._send_paths, action), payload)

    def warm(self) -> None:
        """Compile every schema of this version now (start-up), not at first use."""
        for path in sorted(self._dir.glob("*.json")):
            _compile(path)

    @staticmethod
    def _validate(path: Path | None, payload: dict[str, Any]) -> SchemaViolation | None:
        if path is None:
            return SchemaViolation(RpcErrorKind.NOT_IMPLEMENTED, "no schema for this action")
        try:
            _compile(path)(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            kind = _RULE_KINDS.get(exc.rule or "", RpcErrorKind.PROPERTY)
            return SchemaViolation(kind, exc.message)
        return None
