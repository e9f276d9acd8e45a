"""The parent process: starts the client processes, drives the phases, reads the server's cost.

Phases are commands sent to every worker at once and finished when every worker answered. Times
are time.monotonic() (one clock for all processes on Linux): the coordinator picks the measured
window and reads the server's process tree (RSS, CPU) exactly at its edges, samples it during the
run for the plot, and feeds the progress bar. A worker that dies, or the deadline, aborts the run
with an error; the workers are stopped in any case.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from . import procfs
from .result import connect_cpu
from .spec import LoadSpec
from .tally import MAX_EXAMPLES, Tally
from .worker import WorkerPlan, worker_main

PHASE_GRACE = 0.2  # seconds between sending a timed command and the time it names
CLOSE_ALLOWANCE = 10.0  # seconds of the deadline kept for closing after a storm
MAX_SERIES = 3000


class RunAborted(Exception):
    """The run cannot go on: `kind` is the error counted."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


@dataclass
class WorkerHandle:
    process: BaseProcess
    conn: Connection
    plan: WorkerPlan
    pid: int = 0
    loop: str = ""
    fd_limit: int = 0
    tally: Tally = field(default_factory=Tally)
    progress: tuple[int, int, int] = (0, 0, 0)  # opened, calls, booted
    alive: bool = True


@dataclass(frozen=True)
class Reading:
    """The server tree (None without server pids) and the clients' CPU time at one instant."""

    at: float
    server: procfs.TreeSample | None
    client_cpu_seconds: float


class Coordinator:
    """One load run."""

    def __init__(
        self, spec: LoadSpec, on_window: Callable[[float, float], None] | None = None
    ) -> None:
        self.spec = spec
        self.on_window = on_window  # told the measured window of heartbeat and session runs
        self.begin = time.monotonic()
        self.deadline = self.begin + spec.deadline
        self.workers: list[WorkerHandle] = []
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.figures: dict[str, Any] = {}
        self.timeline: dict[str, float] = {}
        self.samples: list[list[Any]] = []  # [t, rss_kib, cpu_seconds, opened, booted]
        self.sample_every: float | None = None
        self.next_sample = 0.0
        self.marks: dict[str, float] = {}
        self.readings: dict[str, Reading] = {}
        self.bar: Any = None
        self.bar_field = 0
        self.storm_start = 0.0

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Tally:
        """Run every phase; the merged tally (coordinator errors included)."""
        try:
            self._start_workers()
            {"idle": self._idle, "storm": self._storm}.get(self.spec.scenario, self._calls)()
            self._bar(None)
            self.sample_every = None  # the plot shows the load, not the tear-down
            self._mark_now("closing")
            self._phase("close")
        except RunAborted as exc:
            self.error(exc.kind, exc.detail)
        finally:
            self._bar(None)
            self._stop_workers()
        tally = Tally.merged([worker.tally for worker in self.workers])
        tally.errors.update(self.errors)
        tally.examples = (self.examples + tally.examples)[:MAX_EXAMPLES]
        return tally

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        self.examples.append(f"{kind}: {detail}")

    def _warmup_and_connect(self) -> None:
        self._mark_now("warmup")
        self._phase("warmup", targets=self.workers[:1])
        if self.spec.scenario == "idle":
            self._sleep(self.spec.settle)
            self.readings["rss_before"] = self.read()
            self._sample_every(0.25)
        self._bar("connect", total=self.spec.connections, unit="conn", field_index=0)
        self._mark_now("connect")
        self.readings["connect_start"] = self.read()
        started = time.monotonic()
        self._phase("connect")
        seconds = time.monotonic() - started
        self.readings["connect_end"] = self.read()
        if self.sample_every is not None:
            self._sample()
        opened = sum(worker.tally.opened for worker in self.workers)
        self.figures.update(
            opened=opened,
            failures=self.spec.connections - opened,
            connect_seconds=round(seconds, 3),
            connect_rate=round(opened / seconds, 1) if seconds > 0 else None,
            **connect_cpu(self, opened),
        )

    def _idle(self) -> None:
        self._warmup_and_connect()
        self._bar(None)
        self._mark_now("hold")
        self._sleep(self.spec.duration)
        self.readings["rss_after"] = self._sample()
        if self.spec.heartbeat_check:
            self._mark_now("check")
            self._phase("check")

    def _calls(self) -> None:
        spec = self.spec
        self._warmup_and_connect()
        begin = time.monotonic() + PHASE_GRACE
        start = begin + spec.warmup
        end = start + spec.duration
        self.marks.update(window_start=start, window_end=end)
        if self.on_window is not None:
            self.on_window(start, end)
        for name, at in (("load", begin), ("window_start", start), ("window_end", end)):
            self.timeline[name] = round(at - self.begin, 3)
        self.next_sample = begin
        self._sample_every(min(1.0, max(0.1, (end - begin) / 20)))
        self._bar("calls", total=None, unit="call", field_index=1)
        self._phase("run", begin, start, end)
        self._sleep_until(end + 0.01)  # a worker that failed early answers before the end

    def _storm(self) -> None:
        self._warmup_and_connect()
        self._bar(None)
        self._sample_every(0.1)
        self.readings["rss_before_storm"] = self.read()
        self._mark_now("storm_close")
        started = time.monotonic()
        self._phase("storm_close")
        self.figures["close_seconds"] = round(time.monotonic() - started, 3)
        start = time.monotonic() + PHASE_GRACE
        boot_deadline = max(start + 1.0, self.deadline - CLOSE_ALLOWANCE)
        self.timeline["storm_reconnect"] = round(start - self.begin, 3)
        self.storm_start = start
        self._bar("booted", total=self.spec.connections, unit="cp", field_index=2)
        self._phase("storm_reconnect", start, boot_deadline)
        self.readings["storm_end"] = self._sample()

    # -- workers -------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        spec = self.spec
        context = multiprocessing.get_context("spawn")
        for index in range(spec.processes):
            first = index * spec.connections // spec.processes
            last = (index + 1) * spec.connections // spec.processes
            plan = WorkerPlan(spec, index, first, last - first)
            parent, child = context.Pipe(duplex=True)
            process = context.Process(
                target=worker_main, args=(child, plan), name=f"bench-load-{index}", daemon=True
            )
            process.start()
            child.close()
            self.workers.append(WorkerHandle(process, parent, plan))
        self._pump(pending={id(worker) for worker in self.workers}, done="ready")
        needed = max(worker.plan.count for worker in self.workers) + 32
        short = [worker for worker in self.workers if worker.fd_limit < needed]
        if short:
            raise RunAborted(
                "worker:fd_limit",
                f"a client process may open {short[0].fd_limit} files, {needed} are needed: "
                "raise the hard limit (ulimit -Hn) or use more processes",
            )
        self.figures["client_loop"] = self.workers[0].loop

    def _stop_workers(self) -> None:
        for worker in self.workers:
            if worker.alive:
                try:
                    worker.conn.send(("stop",))
                except OSError:
                    worker.alive = False
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                self.error("worker:stuck", f"client process {worker.plan.index} killed")
                worker.process.kill()
                worker.process.join(timeout=5)
            worker.conn.close()

    # -- phases and the message pump -----------------------------------------------------------

    def _phase(self, command: str, *args: Any, targets: list[WorkerHandle] | None = None) -> None:
        """Send `command` to the workers (all by default) and wait until each has done it."""
        targets = self.workers if targets is None else targets
        for worker in targets:
            worker.conn.send((command, *args))
        self._pump(pending={id(worker) for worker in targets}, done=command)

    def _sleep(self, seconds: float) -> None:
        self._sleep_until(time.monotonic() + seconds)

    def _sleep_until(self, until: float) -> None:
        self._pump(until=until)

    def _pump(
        self, pending: set[int] | None = None, done: str = "", until: float | None = None
    ) -> None:
        """Handle worker messages, readings and samples until `pending` is empty or `until`."""
        while True:
            now = time.monotonic()
            self._tick(now)
            if pending is not None and not pending:
                return
            if until is not None and now >= until:
                return
            if now >= self.deadline:
                raise RunAborted("deadline", f"{self.spec.deadline} s passed during '{done}'")
            timeout = min(0.1, self.deadline - now, *(t - now for t in self._next_times()))
            if until is not None:
                timeout = min(timeout, until - now)
            live = {worker.conn: worker for worker in self.workers if worker.alive}
            for conn in wait(list(live), max(0.0, timeout)):
                worker = live[conn]  # type: ignore[index]
                try:
                    message = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    worker.alive = False
                    worker.process.join(timeout=1)
                    raise RunAborted(
                        "worker:died",
                        f"client process {worker.plan.index} exited "
                        f"(code {worker.process.exitcode}) during '{done}'",
                    ) from None
                self._handle(worker, message, pending, done)

    def _handle(
        self, worker: WorkerHandle, message: tuple[Any, ...], pending: set[int] | None, done: str
    ) -> None:
        kind = message[0]
        if kind == "progress":
            worker.progress = message[1:]
            self._update_bar()
        elif kind == "ready":
            worker.pid, worker.loop, worker.fd_limit = message[1:]
            if pending is not None and done == "ready":
                pending.discard(id(worker))
        elif kind == "done":
            worker.tally = tally = message[2]
            worker.progress = (tally.opened, tally.calls_total, tally.booted)
            self._update_bar()
            if pending is not None and message[1] == done:
                pending.discard(id(worker))

    def _update_bar(self) -> None:
        if self.bar is not None:
            total = sum(worker.progress[self.bar_field] for worker in self.workers)
            self.bar.update(total - self.bar.n)

    def _next_times(self) -> list[float]:
        times = [at for name, at in self.marks.items() if name not in self.readings]
        if self.sample_every is not None:
            times.append(self.next_sample)
        return times

    def _tick(self, now: float) -> None:
        for name, at in self.marks.items():
            if name not in self.readings and now >= at:
                self.readings[name] = self.read()
        if self.sample_every is not None and now >= self.next_sample:
            self.next_sample = max(self.next_sample + self.sample_every, now)
            self._sample()

    def _sample(self) -> Reading:
        """Read the server and keep the sample for the plot."""
        reading = self.read()
        server = reading.server
        progress = [sum(w.progress[i] for w in self.workers) for i in (0, 2)]
        self.samples.append(
            [
                round(reading.at - self.begin, 3),
                server.rss_kib if server else None,
                round(server.cpu_seconds, 3) if server else None,
                *progress,
            ]
        )
        if len(self.samples) > MAX_SERIES and self.sample_every is not None:
            self.samples = self.samples[::2]  # keep every other sample, sample half as often
            self.sample_every *= 2
        return reading

    # -- readings, progress --------------------------------------------------------------------

    def read(self) -> Reading:
        server = procfs.sample_tree(self.spec.server_pids) if self.spec.server_pids else None
        client = procfs.cpu_seconds(w.pid for w in self.workers if w.pid)
        return Reading(time.monotonic(), server, client)

    def _mark_now(self, name: str) -> None:
        self.timeline[name] = round(time.monotonic() - self.begin, 3)

    def _sample_every(self, seconds: float) -> None:
        self.sample_every = seconds

    def _bar(
        self, desc: str | None, total: int | None = None, unit: str = "", field_index: int = 0
    ) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if desc is None or self.spec.no_progress or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:  # the bench extra is not installed: no bar
            return
        self.bar_field = field_index
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
