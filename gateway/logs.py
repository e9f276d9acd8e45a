"""Structured logs: one event per line, as JSON or key=value, never a secret.

Use `event(logger, "name", key=value, ...)`; the fields become top-level keys of the line.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event named `name` with `fields`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": record.getMessage(),
    }
    data.update(getattr(record, "fields", {}))
    if record.exc_info:
        data["exception"] = logging.Formatter().formatException(record.exc_info)
    return data


class JsonFormatter(logging.Formatter):
    """JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(_fields(record), default=str).decode()


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=info event=connected identity=CP1` lines."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
            if not text or any(c in text for c in ' "=\n'):
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        return " ".join(parts)


def configure_logging(fmt: str, level: str) -> None:
    """Send every logger's records to stdout in the chosen format and level."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's own access log duplicates our handshake events; keep its errors.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
