"""A client process: a share of the charge points on its own event loop, driven by the coordinator.

The coordinator sends commands over a Pipe (`warmup`, `connect`, `run`, `check`, `storm_close`,
`storm_reconnect`, `close`, `stop`); the worker answers each with `("done", command, tally)` and
sends `("progress", opened, calls, booted)` every PROGRESS_SECONDS while something changes. The
loop is uvloop when importable; RLIMIT_NOFILE is raised to its hard limit first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from . import scenarios
from .client import CallSettings, ChargePoint, Target, connect_error_kind
from .spec import LoadSpec
from .tally import Tally

PROGRESS_SECONDS = 0.25
CLOSE_CONCURRENCY = 500


@dataclass(frozen=True)
class WorkerPlan:
    """What one client process simulates: charge points first .. first + count - 1."""

    spec: LoadSpec
    index: int
    first: int
    count: int


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_main(conn: Connection, plan: WorkerPlan) -> None:
    """The process entry point (Ctrl-C is the coordinator's to handle: it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd_limit = raise_fd_limit()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    loop_name = "asyncio"
    try:
        import uvloop

        loop_factory, loop_name = uvloop.new_event_loop, "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(Worker(conn, plan).serve(loop_name, fd_limit))


async def bounded(count: int, jobs: Iterable[Awaitable[None]]) -> None:
    """Run the awaitables with at most `count` at a time (a fixed pool of tasks)."""
    iterator = iter(jobs)

    async def drain() -> None:
        for job in iterator:
            await job

    await asyncio.gather(*(drain() for _ in range(count)))


class Worker:
    """The charge points of one process and the commands that drive them."""

    def __init__(self, conn: Connection, plan: WorkerPlan) -> None:
        self.conn = conn
        self.spec = plan.spec
        self.plan = plan
        self.tally = Tally()
        self.target = Target(plan.spec)
        self.settings = CallSettings(self.tally, plan.spec.call_timeout, plan.spec.expect)
        self.points = [
            ChargePoint(self.spec.identity(number), number, self.settings)
            for number in range(plan.first, plan.first + plan.count)
        ]
        self.commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.handlers: dict[str, Callable[..., Awaitable[None]]] = {
            "warmup": self.warmup,
            "connect": self.connect,
            "run": self.run,
            "check": self.check,
            "storm_close": self.storm_close,
            "storm_reconnect": self.storm_reconnect,
            "close": self.close,
        }

    def send(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):  # the coordinator is gone: the reader stops us
            self.conn.send(message)

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self.commands.put_nowait(self.conn.recv())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            self.commands.put_nowait(("stop",))

    async def serve(self, loop_name: str, fd_limit: int) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._readable)
        progress = loop.create_task(self._progress())
        self.send(("ready", os.getpid(), loop_name, fd_limit))
        try:
            while True:
                command = await self.commands.get()
                name = command[0]
                if name == "stop":
                    break
                try:
                    await self.handlers[name](*command[1:])
                except Exception as exc:  # counted: a broken client must fail the run
                    detail = traceback.format_exception_only(exc)[-1].strip()
                    self.tally.error(f"worker:{type(exc).__name__}", f"{name}: {detail}")
                self.send(("done", name, self.tally))
        finally:
            progress.cancel()
            await asyncio.gather(*(point.close() for point in self.points if point.ws))

    async def _progress(self) -> None:
        last: tuple[int, int, int] | None = None
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            now = (self.tally.opened, self.tally.calls_total, self.tally.booted)
            if now != last:
                self.send(("progress", *now))
                last = now

    # -- phases --------------------------------------------------------------------------------

    async def warmup(self) -> None:
        """Open and close one connection (the first identity), so that one-time costs are paid."""
        point = ChargePoint(self.points[0].identity, self.points[0].number, self.settings)
        if await self._open(point, self.spec.connect_timeout):
            await point.close()

    async def _open(self, point: ChargePoint, timeout: float) -> bool:
        try:
            point.connected(await self.target.open(point, timeout))
        except Exception as exc:  # every failure is counted by kind
            self.tally.connect_failures += 1
            self.tally.error(f"connect:{connect_error_kind(exc)}", f"{point.identity}: {exc}")
            return False
        return True

    async def connect(self) -> None:
        """Open every charge point's connection, `connect_concurrency` handshakes at a time."""

        async def one(point: ChargePoint) -> None:
            if await self._open(point, self.spec.connect_timeout):
                self.tally.opened += 1

        await bounded(self.spec.connect_concurrency, (one(p) for p in self.points))

    def open_points(self) -> list[ChargePoint]:
        return [point for point in self.points if point.ws is not None and not point.lost]

    async def run(self, begin: float, start: float, end: float) -> None:
        """heartbeat/session: load from `begin`, measured in [start, end)."""
        await scenarios.run_calls(self, begin, start, end)

    async def check(self) -> None:
        """idle --heartbeat-check: one Heartbeat from every open connection."""
        await scenarios.heartbeat_check(self)

    async def storm_close(self) -> None:
        """storm: close every connection at once."""
        self._count_server_closes()
        await asyncio.gather(*(point.close() for point in self.points if point.ws))

    async def storm_reconnect(self, start: float, deadline: float) -> None:
        """storm: from `start`, every charge point reconnects and boots, until `deadline`."""
        await scenarios.storm_reconnect(self, start, deadline)

    async def close(self) -> None:
        """Count connections the server closed, then close the rest."""
        self._count_server_closes()
        await bounded(CLOSE_CONCURRENCY, (p.close() for p in self.points if p.ws is not None))

    def _count_server_closes(self) -> None:
        for point in self.points:
            code = point.closed_by_server()
            if code is not None:
                point.lost = True
                self.tally.error(f"close:{code}", f"{point.identity} while held open")
