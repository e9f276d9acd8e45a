"""The benchmarks run end to end (small N) so CI proves they still work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_idle_connections_benchmark_runs(scheme: str) -> None:
    """`python -m bench.idle_connections --connections 20`: no failure, a positive KiB figure."""
    command = ["-m", "bench.idle_connections", "--connections", "20", "--scheme", scheme]
    completed = subprocess.run(
        [sys.executable, *command, "--settle", "0.5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["connections"] == 20
    assert result["scheme"] == scheme
    assert result["failures"] == 0, result["errors"]
    assert result["open_after_settle"] == 20
    assert result["worker_loop"] in {"uvloop", "asyncio"}
    assert result["rss_after_kib"] > result["rss_before_kib"] > 0
    assert result["kib_per_connection"] > 0
    assert result["server_exit_code"] == 0
    assert result["server_log_counts"].get("connected") == 21  # the warm-up connection and 20
    assert result["command"].startswith("python -m bench.idle_connections")


def test_metrics_overhead_benchmark_runs() -> None:
    """`python -m bench.metrics_overhead --count 2000`: both modes measured, metrics counted."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.metrics_overhead", "--count", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert [result["multiprocess"] for result in report["results"]] == [False, True]
    for result in report["results"]:
        assert result["heartbeat_with_metrics_us"] > 0 and result["cached_counter_inc_us"] > 0


def test_claim_refresh_benchmark_runs(redis_server) -> None:
    """`python -m bench.claim_refresh --claims 1200` on the session's Redis: three batches."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.claim_refresh",
            "--claims",
            "1200",
            "--redis-url",
            redis_server.url,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["claims"] == 1200 and result["batch"] == 500
    assert result["one_by_one_seconds"] > 0 and result["pipelined_seconds"] > 0
