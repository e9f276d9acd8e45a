"""The audit log: one JSON line per CA or charge point record operation, never a secret.

Each line is ``{"ts", "action", "result", "identity", "serial", "actor", ...fields}`` with `ts` in
RFC 3339 UTC. The file is created 0600 and opened with O_APPEND (and an exclusive `flock`) for every
line, so CLI calls and gateways writing at the same time interleave whole lines, never parts.

Secrets are refused by construction: a field whose name looks like a password, passphrase, key,
token or secret raises ValueError, and so does any value carrying PEM private key material.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIXED_FIELDS = frozenset({"ts", "action", "result", "identity", "serial", "actor"})
_SECRET_NAME = re.compile(r"pass(word|phrase|wd)|key|token|secret", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"PRIVATE KEY|BEGIN ENCRYPTED")


def current_actor() -> str:
    """Who runs this process: the login name, or the numeric uid when there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def rfc3339_now() -> str:
    """The current UTC time as RFC 3339 with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_fields(fields: dict[str, Any], where: str = "") -> None:
    """ValueError when a field name looks secret or a value holds private key material."""
    for name, value in fields.items():
        if _SECRET_NAME.search(name.replace("-", "_")):
            raise ValueError(f"audit field {where}{name!r} looks like a secret: never log it")
        if isinstance(value, dict):
            check_fields(value, f"{where}{name}.")
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, dict):
                    check_fields(item, f"{where}{name}[].")
                elif isinstance(item, str) and _SECRET_VALUE.search(item):
                    raise ValueError(f"audit field {where}{name!r} holds private key material")
        elif isinstance(value, str) and _SECRET_VALUE.search(value):
            raise ValueError(f"audit field {where}{name!r} holds private key material")


class AuditLog:
    """Appends audit lines to `path`; an empty path (or None) disables the log."""

    def __init__(self, path: str | os.PathLike[str] | None, actor: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.actor = actor if actor is not None else current_actor()

    @property
    def enabled(self) -> bool:
        """False when no path is configured."""
        return self.path is not None

    def check_writable(self) -> None:
        """Create the file (0600) if needed and make sure it can be appended to; OSError if not.

        Call it before an operation so that an operation is never done without its audit line.
        """
        if self.path is not None:
            os.close(self._open())

    def record(
        self,
        action: str,
        *,
        result: str = "ok",
        identity: str | None = None,
        serial: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Append one line and return it as a dict; ValueError for secret-looking fields."""
        if not action or not isinstance(action, str):
            raise ValueError("an audit line needs an action")
        reserved = FIXED_FIELDS & fields.keys()
        if reserved:
            raise ValueError(f"audit fields {sorted(reserved)} are set by the log itself")
        check_fields(fields)
        check_fields({"action": action, "result": result, "identity": identity, "serial": serial})
        entry: dict[str, Any] = {
            "ts": rfc3339_now(),
            "action": action,
            "result": result,
            "identity": identity,
            "serial": serial,
            "actor": self.actor,
            **fields,
        }
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
        if self.path is not None:
            self._append(line.encode("utf-8"))
        return entry

    def _open(self) -> int:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # an existing file made by hand: tighten it
        return fd

    def _append(self, data: bytes) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # whole lines even where O_APPEND alone is not enough
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)  # also releases the lock


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every line of an audit log as dicts ([] when the file does not exist).

    ValueError names the first line that is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        entries.append(entry)
    return entries
