"""Small JSON files shared between the CLI and running gateways: atomic writes, change stamps."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Stamp = tuple[int, int, int] | None
LOCK_TIMEOUT = 2.0  # seconds a writer waits for another process's write to finish


def file_stamp(path: Path) -> Stamp:
    """What identifies one version of the file (writers replace it: a new inode every time)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def write_json_atomic(path: Path, payload: Any, mode: int = 0o600) -> Stamp:
    """Write `payload` to `path` atomically with `mode`; return the new stamp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return file_stamp(path)


def read_json(path: Path) -> Any:
    """The file's JSON content (None when it does not exist)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


class WatchedJsonFile:
    """A JSON file that other processes may replace: `changed()` returns its new content once."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: Stamp = None

    def changed(self) -> tuple[bool, Any]:
        """(True, content or None) when the file changed since last seen, else (False, None)."""
        stamp = file_stamp(self.path)
        if stamp == self._stamp:
            return False, None
        self._stamp = stamp
        return True, read_json(self.path)

    def write(self, payload: Any) -> None:
        """Replace the file atomically (0600) and remember the version written."""
        self._stamp = write_json_atomic(self.path, payload)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock (a sidecar `.lock` file) for a read-modify-write, so that
        processes sharing the file (CLI, nodes on a shared volume) never lose each other's
        changes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:  # bounded: a stuck holder (a stopped CLI) must not freeze a node forever
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.path} is locked by another process") from None
                    time.sleep(0.01)
            yield
        finally:
            os.close(fd)  # releases the lock
