"""A PNG figure of one run, drawn from its result record alone (so old JSON lines can be redrawn).

heartbeat/session: latency p50/p99 and calls per second over the run (the warm-up shaded), and the
server's CPU use. idle: server RSS against open connections, and over time. storm: charge points
booted and server RSS over time since the reconnect.

Redraw a stored run: `python -m bench.load.plot results.jsonl run.png [--line N]` (N: 0-based, -1
the last line, the default).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import orjson

Record = dict[str, Any]


def _title(record: Record) -> str:
    verdict = "ok" if record.get("ok") else f"FAILED: {record.get('error_count', '?')} errors"
    return (
        f"{record['scenario']}: {record['connections']:,} charge points over "
        f"{record['url_scheme']}, {record['subprotocol']}, {record['processes']} client "
        f"processes ({verdict})\n{record.get('started_at', '')}"
    )


def _server(record: Record) -> list[list[Any]]:
    return record.get("series", {}).get("server", [])


def _draw_calls(record: Record, figure: Any) -> None:
    rows = record["series"]["per_second"]
    server = [row for row in _server(record) if row[2] is not None]
    axes = figure.subplots(3 if len(server) > 1 else 2, 1, sharex=True)
    seconds = [row[0] + 0.5 for row in rows]  # the middle of each second
    latency, rate = axes[0], axes[1]
    latency.plot(seconds, [row[2] for row in rows], marker=".", label="p50")
    latency.plot(seconds, [row[3] for row in rows], marker=".", label="p99")
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(bottom=0)
    summary = record.get("latency_ms") or {}
    latency.set_title(
        f"round-trip latency per second: window p50 {summary.get('p50')} ms, "
        f"p99 {summary.get('p99')} ms, max {summary.get('max')} ms"
    )
    latency.legend(loc="upper right")
    rate.plot(seconds, [row[1] / row[4] for row in rows], marker=".", color="tab:green")
    rate.set_ylabel("calls answered / s")
    rate.set_ylim(bottom=0)
    rate.set_title(
        f"throughput: {record.get('calls_per_second')} calls/s in the window, server CPU "
        f"{record.get('server_cpu_us_per_call')} us/call"
    )
    timeline = record.get("timeline", {})
    offset = timeline.get("window_start")
    if server and offset is not None:
        cpu = axes[2]
        times, percent = [], []
        for before, after in itertools.pairwise(server):
            elapsed = after[0] - before[0]
            if elapsed > 0:
                times.append((before[0] + after[0]) / 2 - offset)
                percent.append(100.0 * (after[2] - before[2]) / elapsed)
        cpu.plot(times, percent, marker=".", color="tab:red")
        cpu.set_ylabel("server CPU (% of one core)")
        cpu.set_ylim(bottom=0)
        cpu.set_title("server process tree CPU (utime + stime from /proc)")
    for axis in axes:
        axis.axvspan(-record.get("warmup", 0.0), 0, color="0.9", label="_warm-up")
        axis.axvline(record.get("duration", 0), color="0.5", linestyle=":")
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("seconds from the start of the measured window (shaded: warm-up)")


def _draw_idle(record: Record, figure: Any) -> None:
    server = [row for row in _server(record) if row[1] is not None]
    against, over = figure.subplots(2, 1)
    against.plot([row[3] for row in server], [row[1] / 1024 for row in server], marker=".")
    against.set_xlabel("open connections")
    against.set_ylabel("server RSS (MiB)")
    against.set_title(
        f"server RSS against open connections: {record.get('kib_per_connection')} KiB per "
        f"connection, connect rate {record.get('connect_rate')} /s"
    )
    over.plot([row[0] for row in server], [row[1] / 1024 for row in server], color="tab:red")
    over.set_xlabel("seconds since the start of the run")
    over.set_ylabel("server RSS (MiB)", color="tab:red")
    twin = over.twinx()
    twin.plot([row[0] for row in server], [row[3] for row in server], color="tab:blue")
    twin.set_ylabel("open connections", color="tab:blue")
    over.set_title("server RSS and open connections over time")
    for axis in (against, over):
        axis.grid(True, alpha=0.3)


def _draw_storm(record: Record, figure: Any) -> None:
    start = record.get("timeline", {}).get("storm_reconnect", 0.0)
    server = [row for row in _server(record) if row[0] >= start - 1]
    booted, memory = figure.subplots(2, 1, sharex=True)
    times = [row[0] - start for row in server]
    booted.plot(times, [row[4] for row in server], color="tab:green")
    booted.axhline(record["connections"], color="0.5", linestyle=":")
    booted.set_ylabel("charge points booted")
    booted.set_title(
        f"reconnect storm: all booted after {record.get('boot_all_seconds')} s, "
        f"{record.get('refusals')} refusals, {record.get('retries')} retries"
    )
    rss = [(t, row[1] / 1024) for t, row in zip(times, server, strict=True) if row[1] is not None]
    if rss:
        memory.plot([t for t, _ in rss], [m for _, m in rss], color="tab:red")
    peak = record.get("peak_rss_kib")
    memory.set_title(f"server RSS (peak {peak / 1024:.1f} MiB)" if peak else "server RSS")
    memory.set_ylabel("server RSS (MiB)")
    memory.set_xlabel("seconds since the reconnect started")
    for axis in (booted, memory):
        axis.grid(True, alpha=0.3)


def plot_record(record: Record, path: str | Path) -> Path:
    """Draw the run's figure into `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure(figsize=(11, 9), layout="constrained")
    figure.suptitle(_title(record))
    drawers = {"idle": _draw_idle, "storm": _draw_storm}
    drawers.get(record["scenario"], _draw_calls)(record, figure)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
    pyplot.close(figure)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load.plot", description=__doc__)
    parser.add_argument("results", help="JSON lines file written by --out")
    parser.add_argument("png", help="figure to write")
    parser.add_argument("--line", type=int, default=-1, help="which run (0-based; -1: the last)")
    args = parser.parse_args(argv)
    lines = [line for line in Path(args.results).read_bytes().splitlines() if line.strip()]
    print(plot_record(orjson.loads(lines[args.line]), args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
