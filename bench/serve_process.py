"""The gateway as a real child process, for the benchmarks and the tests: start, wait, stop.

`start_serve(config)` runs `python -m gateway serve --config FILE` with this interpreter (any other
command line with `GatewayProcess.start`) in a new session: its own process group, so a supervisor
and its workers are killed as a whole. stderr is merged into stdout, and that is read in the
background from the start (a full pipe would stall the gateway): one JSON log line a line, anything
else kept as event "non-json" with its text. Every wait is bounded. `stop()` sends SIGTERM (the
gateway drains) and SIGKILLs the process group when that takes too long; `close()` SIGKILLs it at
once. Lives here, not under tests/, because the benchmarks use it too (the tests import `bench`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import orjson

LISTENER_KINDS = ("ws", "wss", "status")  # the address lists of the `listening` log line


class MissingLogLine(AssertionError):
    """An awaited log line did not come: the time ran out, or the process's output ended."""


def serve_command(config: Path) -> list[str]:
    """`python -m gateway serve --config FILE` with this interpreter."""
    return [sys.executable, "-m", "gateway", "serve", "--config", str(config)]


def port_of(address: str) -> int:
    """The port of a logged listener address (`127.0.0.1:8080`, `[::1]:8080`)."""
    return int(address.rsplit(":", 1)[1])


def _summary(line: dict[str, Any]) -> Any:
    """A log line in a failure message: its event, or the text of a line that is not JSON."""
    return line.get("text") if line.get("event") == "non-json" else line.get("event")


class GatewayProcess:
    """A running gateway process and the log lines it has written so far (`lines`)."""

    def __init__(self, process: asyncio.subprocess.Process, name: str = "gateway") -> None:
        self.process = process
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.ports: dict[str, int] = {}  # first port per listener kind, from `wait_listening`
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(
        cls,
        command: Sequence[str],
        *,
        name: str = "gateway",
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Self:
        """Run `command` in a new session, stdout piped and stderr merged into it. `env` is the
        whole environment (None: this process's); `options` go to `create_subprocess_exec`
        (`cwd`, `stdin`, `preexec_fn`...)."""
        process = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as a whole
            env=env,
            **options,
        )
        return cls(process, name)

    # -- the log ----------------------------------------------------------------------------------

    def keep(self, line: dict[str, Any]) -> bool:
        """Whether to keep `line` in `lines` (every line is read; a subclass may count or drop)."""
        return True

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                line = None
            if not isinstance(line, dict):
                line = {"event": "non-json", "text": raw.decode(errors="replace").rstrip()}
            if self.keep(line):
                self.lines.append(line)
            self._changed.set()
        self._changed.set()  # end of output: waiters look once more, then fail

    def found(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The kept log lines of `event` whose fields have the given values."""
        return [
            line
            for line in self.lines
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, event: str, *, count: int = 1, timeout: float = 10.0, **fields: Any
    ) -> dict[str, Any]:
        """The `count`-th log line of `event` (with `fields`), waiting at most `timeout` seconds;
        `MissingLogLine` when it does not come (also as soon as the output ends)."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            found = self.found(event, **fields)
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._reader.done():
                why = "output ended" if self._reader.done() else f"not within {timeout} s"
                seen = [_summary(line) for line in self.lines[-40:]]
                raise MissingLogLine(
                    f"{self.name}: no {count}x '{event}' {fields} ({why}); saw {seen}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def wait_listening(self, timeout: float = 10.0) -> dict[str, Any]:
        """The `listening` line (sockets bound, before any worker runs); fills `ports`."""
        listening = await self.wait_for("listening", timeout=timeout)
        for kind in LISTENER_KINDS:
            if listening.get(kind):
                self.ports[kind] = port_of(listening[kind][0])
        return listening

    async def wait_serving(self, workers: int = 1, timeout: float = 10.0) -> dict[str, Any]:
        """Until each of the `workers` has started and serves (each wait bounded by `timeout`);
        the `listening` line."""
        listening = await self.wait_listening(timeout)
        await self.wait_for("worker_started", count=workers, timeout=timeout)
        await self.wait_for("serving", count=workers, timeout=timeout)
        return listening

    async def drain_output(self) -> None:
        """Until the process's output ends (every line read into `lines`)."""
        await asyncio.shield(self._reader)

    @property
    def port(self) -> int:
        """The first ws listener's port (0 before `wait_listening`)."""
        return self.ports.get("ws", 0)

    @property
    def wss_port(self) -> int:
        """The first wss listener's port (0 before `wait_listening` or without wss)."""
        return self.ports.get("wss", 0)

    @property
    def worker_pids(self) -> list[int]:
        return [line["pid"] for line in self.found("worker_started")]

    # -- stopping ---------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the whole process group (a supervisor and its workers)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the gateway drains), SIGKILL to the group after `timeout` s; the exit code,
        once the output is read (at most 2 s more)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self.kill()
                await self.process.wait()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 2)
        return self.process.returncode

    async def close(self) -> None:
        """SIGKILL the group, wait for it (at most 5 s) and stop reading."""
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


P = TypeVar("P", bound=GatewayProcess)


async def start_serve(
    config: Path,
    env: Mapping[str, str] | None = None,
    *,
    process_class: type[P] = GatewayProcess,  # type: ignore[assignment]
    name: str = "gateway",
    **options: Any,
) -> P:
    """`python -m gateway serve --config FILE`, started (not yet waited for). `env` adds variables
    to this process's environment; `options` as for `GatewayProcess.start`."""
    return await process_class.start(
        serve_command(config), name=name, env={**os.environ, **(env or {})}, **options
    )
