"""The server's cost read from /proc (Linux): memory and CPU time of whole process trees.

A gateway may be a supervisor with worker processes: each given pid stands for itself and all its
descendants (parents read from the ppid field of /proc/*/stat at every reading, so workers that
start or restart are counted). RSS is the sum of VmRSS (/proc/PID/status; shared pages of forked
workers count once per process, as `ps` would show them); CPU is the sum of utime + stime
(/proc/PID/stat, clock ticks of os.sysconf('SC_CLK_TCK')).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat the benchmark reads."""

    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime


def parse_stat(text: str) -> ProcStat:
    """Parse one /proc/PID/stat line (the command name may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    # After "pid (comm)": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime ... (proc(5), fields 3 onwards).
    return ProcStat(int(head.split("(", 1)[0]), int(fields[1]), int(fields[11]) + int(fields[12]))


def read_stat(pid: int) -> ProcStat | None:
    """The stat of `pid`, or None when it does not exist (any more)."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def all_stats() -> dict[int, ProcStat]:
    """The stat of every process visible in /proc."""
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def process_tree(roots: Iterable[int], stats: dict[int, ProcStat] | None = None) -> set[int]:
    """The live pids among `roots` and all their descendants."""
    stats = all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: set[int] = set()
    pending = [pid for pid in roots if pid in stats]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, ()))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 when it is gone or has no memory: a zombie)."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One reading of a process tree."""

    pids: frozenset[int]
    rss_kib: int
    cpu_seconds: float


def sample_tree(roots: Iterable[int]) -> TreeSample:
    """RSS and CPU time summed over the trees under `roots`."""
    stats = all_stats()
    pids = process_tree(roots, stats)
    ticks = sum(stats[pid].cpu_ticks for pid in pids)
    return TreeSample(frozenset(pids), sum(rss_kib(pid) for pid in pids), ticks / CLOCK_TICKS)


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) of exactly these pids, without their children."""
    ticks = 0
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None:
            ticks += stat.cpu_ticks
    return ticks / CLOCK_TICKS
