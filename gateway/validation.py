"""JSON-schema validation of OCPP payloads with the `ocpp` library's schemas, compiled once.

The library validates with `jsonschema` at every message; here each schema is compiled once per
process, the first time an action is seen, and reused by every session:

- `jsonschema-rs` (compiled Rust) answers whether a payload is valid: about 1.6 us per message
  of the 1.6 session mix and 1.9 us for 2.0.1, against 11 and 24 us for `fastjsonschema`'s
  generated Python (`python -m bench.validation`);
- only for an invalid payload (rare, and answered with a CALLERROR anyway) `fastjsonschema` names
  the failing rule, which maps to the OCPP-J error kind and a readable reason.

Formats are not checked by either (the `ocpp` library does not check them either).
`tests/unit/test_validation.py` checks that both agree with the library's own validator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema_rs
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
_compiled: dict[Path, Validator] = {}  # fastjsonschema: the failing rule of invalid payloads
_checkers: dict[Path, Any] = {}  # jsonschema-rs validators: is it valid at all, and why not


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """A payload that fails its schema: the error kind and a readable reason."""

    kind: RpcErrorKind
    reason: str


def _schema(path: Path) -> Any:
    return orjson.loads(path.read_bytes().removeprefix(b"\xef\xbb\xbf"))


def _compile(path: Path) -> Validator:
    validator = _compiled.get(path)
    if validator is None:
        validator = fastjsonschema.compile(_schema(path), use_formats=False)
        _compiled[path] = validator
    return validator


def _checker(path: Path) -> Any:
    """The compiled jsonschema-rs validator of `path` (`is_valid`, and `iter_errors` for why)."""
    checker = _checkers.get(path)
    if checker is None:
        checker = jsonschema_rs.validator_for(_schema(path), validate_formats=False)
        _checkers[path] = checker
    return checker


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

    @staticmethod
    def _validate(path: Path | None, payload: dict[str, Any]) -> SchemaViolation | None:
        if path is None:
            return SchemaViolation(RpcErrorKind.NOT_IMPLEMENTED, "no schema for this action")
        checker = _checkers.get(path) or _checker(path)
        try:
            if checker.is_valid(payload):
                return None
        except (ValueError, TypeError, OverflowError):  # not convertible: the detailed check says
            pass
        try:
            _compile(path)(payload)
        except fastjsonschema.JsonSchemaValueException as exc:
            kind = _RULE_KINDS.get(exc.rule or "", RpcErrorKind.PROPERTY)
            return SchemaViolation(kind, exc.message)
        # jsonschema-rs refused what fastjsonschema accepts: refuse (the stricter answer), with
        # what jsonschema-rs says (tests/unit/test_validation.py keeps the two in agreement)
        return SchemaViolation(RpcErrorKind.PROPERTY, _first_error(path, payload))


def _first_error(path: Path, payload: Any) -> str:
    for error in _checker(path).iter_errors(payload):
        return str(error.message)[:200]
    return "payload does not match its schema"
