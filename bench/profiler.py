"""py-spy on a server for the measured window of one load run (`bench.compare --profile`).

The load generator announces its window (`run_load(..., on_window=...)`, called from its thread
once the connections are open and the warm-up is scheduled); the recording starts when the
window starts and lasts until it ends, so connects and warm-up stay out of the profile. Two
samplers run side by side, neither pausing the server (`--nonblocking`): a flame graph
(`PATH.svg`) and the collapsed stacks (`PATH.txt`, for `python -m bench.profiles`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path

FORMATS = (("flamegraph", "svg"), ("raw", "txt"))


class WindowProfiler:
    """Records `pid` (and its children) with py-spy over the window `on_window` announces."""

    def __init__(self, pid: int, path: Path, rate: int = 100) -> None:
        self.pid = pid
        self.path = path
        self.rate = rate
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task[None] | None = None
        self.samplers: list[asyncio.subprocess.Process] = []

    def on_window(self, start: float, end: float) -> None:
        """The window in `time.monotonic()` seconds; callable from any thread."""
        self.loop.call_soon_threadsafe(self._schedule, start, end)

    def _schedule(self, start: float, end: float) -> None:
        self.task = self.loop.create_task(self._record(start, end))

    async def _record(self, start: float, end: float) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        seconds = max(1, round(end - time.monotonic()))
        command = ["py-spy", "record", "--subprocesses", "--nonblocking", "--rate", str(self.rate)]
        command += ["--duration", str(seconds), "--pid", str(self.pid)]
        for kind, suffix in FORMATS:
            self.samplers.append(
                await asyncio.create_subprocess_exec(
                    *command,
                    *("--format", kind, "--output", f"{self.path}.{suffix}"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        for sampler in self.samplers:
            _, error = await sampler.communicate()
            if sampler.returncode:
                print(
                    f"bench: py-spy failed ({sampler.returncode}): {error.decode()[-500:]}",
                    file=sys.stderr,
                )

    async def finish(self, timeout: float = 30.0) -> None:
        """Wait for the recording (it ends with the window). After `timeout` the samplers are
        killed and the run goes on without the profile (said on stderr); on cancellation they
        are killed too."""
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except TimeoutError:
            self._kill()
            print(f"bench: py-spy still running after {timeout:g} s: no profile", file=sys.stderr)
        except asyncio.CancelledError:
            self._kill()
            raise

    def _kill(self) -> None:
        if self.task is not None:
            self.task.cancel()
        for sampler in self.samplers:
            with contextlib.suppress(ProcessLookupError):
                sampler.kill()
