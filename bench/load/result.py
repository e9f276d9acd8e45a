"""The result record of a run: one JSON object (one line in the results file) with every figure.

Common fields: scenario, url_scheme, subprotocol, connections, processes, duration, started_at,
command, python, machine, client_loop, connect figures (connect_seconds, connect_rate,
server_cpu_ms_per_connection), errors {kind: count}, error_examples, ok.
Scenario figures: idle (rss_before_kib, rss_after_kib, kib_per_connection, heartbeat_check),
heartbeat/session (calls, calls_per_second, latency_ms, server_cpu_seconds,
server_cpu_us_per_call, client_cpu_seconds, calls_by_action, latency_ms_by_action), storm
(boot_all_seconds, booted, refusals, refusals_by_reason, retries, peak_rss_kib). `series` holds
the per-second latencies and the server samples the plot is drawn from.
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .tally import Tally

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .spec import LoadSpec


def machine() -> dict[str, Any]:
    """What the run ran on (the figures only compare within one run on one machine)."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _delta(coordinator: Coordinator, first: str, last: str) -> tuple[float, float] | None:
    """(server CPU seconds, client CPU seconds) between two readings, None if either is missing."""
    a, b = coordinator.readings.get(first), coordinator.readings.get(last)
    if a is None or b is None:
        return None
    server = b.server.cpu_seconds - a.server.cpu_seconds if a.server and b.server else None
    return (server if server is not None else -1.0), b.client_cpu_seconds - a.client_cpu_seconds


def connect_cpu(coordinator: Coordinator, opened: int) -> dict[str, Any]:
    """Server CPU per connection opened in the connect phase: accept, TLS handshake, HTTP
    upgrade, authentication, session set-up (the upgrade cost of a reconnecting fleet)."""
    cpu = _delta(coordinator, "connect_start", "connect_end")
    if cpu is None or cpu[0] < 0 or not opened:
        return {}
    return {"server_cpu_ms_per_connection": round(cpu[0] * 1e3 / opened, 3)}


def _rss(coordinator: Coordinator, name: str) -> int | None:
    reading = coordinator.readings.get(name)
    return reading.server.rss_kib if reading is not None and reading.server else None


def call_figures(spec: LoadSpec, coordinator: Coordinator, tally: Tally) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "warmup": spec.warmup,
        "rate_target": spec.rate,
        "calls": tally.calls,
        "calls_per_second": round(tally.calls / spec.duration, 1) if spec.duration else None,
        "latency_ms": tally.latency.summary_ms(),
        "calls_by_action": dict(sorted(tally.by_action.items())),
    }
    if spec.scenario == "session":
        figures["latency_ms_by_action"] = {
            action: histogram.summary_ms()
            for action, histogram in sorted(tally.latency_by_action.items())
        }
    cpu = _delta(coordinator, "window_start", "window_end")
    if cpu is not None:
        server, client = cpu
        if server >= 0:
            figures["server_cpu_seconds"] = round(server, 3)
            figures["server_cpu_us_per_call"] = (
                round(server * 1e6 / tally.calls, 1) if tally.calls else None
            )
        figures["client_cpu_seconds"] = round(client, 3)
    return figures


def idle_figures(spec: LoadSpec, coordinator: Coordinator, tally: Tally) -> dict[str, Any]:
    before, after = _rss(coordinator, "rss_before"), _rss(coordinator, "rss_after")
    figures: dict[str, Any] = {"rss_before_kib": before, "rss_after_kib": after}
    if before is not None and after is not None and tally.opened:
        figures["kib_per_connection"] = round((after - before) / tally.opened, 2)
    if spec.heartbeat_check:
        figures["heartbeat_check_answered"] = tally.checked
    return figures


def storm_figures(spec: LoadSpec, coordinator: Coordinator, tally: Tally) -> dict[str, Any]:
    start = coordinator.storm_start
    all_booted = tally.booted == spec.connections and start > 0
    since = start - coordinator.begin
    rss = [s[1] for s in coordinator.samples if s[0] >= since and s[1] is not None]
    return {
        "booted": tally.booted,
        "boot_all_seconds": round(tally.last_boot_at - start, 3) if all_booted else None,
        "boot_latency_ms": tally.boot_latency.summary_ms(),
        "refusals": sum(tally.refusals.values()),
        "refusals_by_reason": dict(sorted(tally.refusals.items())),
        "retries": tally.retries,
        "boot_statuses": dict(sorted(tally.boot_statuses.items())),
        "rss_before_storm_kib": _rss(coordinator, "rss_before_storm"),
        "peak_rss_kib": max(rss) if rss else None,
    }


def per_second(spec: LoadSpec, tally: Tally) -> list[list[Any]]:
    """[second from the window start, calls, p50 ms, p99 ms, seconds of load in it] per second.

    The first (warm-up) and last seconds may be partly covered by the load: calls / covered
    seconds is the rate. Answers after the window (the last calls in flight) are left out.
    """
    rows = []
    for second in sorted(tally.per_second):
        covered = min(second + 1.0, spec.duration) - max(float(second), -spec.warmup)
        if covered <= 0:
            continue
        histogram = tally.per_second[second]
        p50, p99 = histogram.percentile(0.5), histogram.percentile(0.99)
        rows.append(
            [
                second,
                histogram.total,
                round((p50 or 0) * 1e3, 3),
                round((p99 or 0) * 1e3, 3),
                round(covered, 3),
            ]
        )
    return rows


def build_record(
    spec: LoadSpec, coordinator: Coordinator, tally: Tally, started_at: datetime
) -> dict[str, Any]:
    """The result record of a finished run; `ok` is False when any error was counted."""
    record: dict[str, Any] = {
        "scenario": spec.scenario,
        "url_scheme": spec.scheme,
        "subprotocol": spec.subprotocol,
        "connections": spec.connections,
        "processes": spec.processes,
        "duration": spec.duration,
        "expect": spec.expect,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": spec.command_line(),
        "python": sys.version.split()[0],
        "machine": machine(),
        **coordinator.figures,
        "server_pids": spec.server_pids,
    }
    if spec.payload_version:
        record["payload_version"] = spec.payload_version
    if spec.server_pids:
        final = coordinator.read().server
        record["server_processes"] = len(final.pids) if final else 0
        if final is not None and not final.pids:
            tally.error("server_gone", "no process left under the server pids")
    scenario_figures = {
        "idle": idle_figures,
        "heartbeat": call_figures,
        "session": call_figures,
        "storm": storm_figures,
    }[spec.scenario]
    record.update(scenario_figures(spec, coordinator, tally))
    if spec.scenario in ("heartbeat", "session") and not tally.calls and not tally.errors:
        tally.error("no_calls", "no call was answered in the measured window")
    if tally.server_calls:
        record["server_calls"] = dict(tally.server_calls)
    record["errors"] = dict(sorted(tally.errors.items()))
    record["error_count"] = sum(tally.errors.values())
    record["error_examples"] = tally.examples
    record["ok"] = not tally.errors
    record["timeline"] = coordinator.timeline
    record["series"] = {
        "per_second": per_second(spec, tally),
        "per_second_columns": ["second", "calls", "p50_ms", "p99_ms", "covered_seconds"],
        "server": coordinator.samples,
        "server_columns": ["t", "rss_kib", "cpu_seconds", "opened", "booted"],
    }
    return record


def append_line(path: str | Path, record: dict[str, Any]) -> None:
    """Append the record as one JSON line."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("ab") as handle:
        handle.write(orjson.dumps(record) + b"\n")
