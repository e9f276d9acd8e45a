"""`python -m bench.compare` end to end with a tiny fleet: every server, no error, a summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers.setup import installed_version

ROOT = Path(__file__).resolve().parents[2]


def bench(module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m bench.<module> ARGUMENTS` from the repository, which must succeed."""
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def compare(out: Path, case: str, servers: list[str], duration: float, rounds: int = 1) -> dict:
    """`python -m bench.compare` with 6 connections; its summary.json."""
    bench(
        "compare",
        *("--connections", "6", "--processes", "1", "--duration", str(duration)),
        *("--warmup", "0.2", "--cases", case, "--servers", ",".join(servers)),
        *("--out", str(out), "--no-plots", "--no-progress", "--rounds", str(rounds)),
    )
    return json.loads((out / "summary.json").read_text())


def test_compare_runs_the_mix_against_every_server_without_errors(tmp_path):
    servers = ["gateway", "ocpp-lib", "echo"]
    if installed_version() is not None:  # `python -m bench.peers.setup` ran (CI runs it)
        servers.append("ocpp-rpc")
    out = tmp_path / "compare"
    summary = compare(out, "session201-ws", servers, 0.5)
    assert [case["case"] for case in summary["cases"]] == ["session201-ws"]
    for case in summary["cases"]:
        assert all(case["ok"].values()) and set(case["ok"]) == set(servers)
        assert all(value and value > 0 for value in case["values"].values()), case
        assert set(case["gateway_ratio"]) == set(servers) - {"gateway"}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == len(servers) and all(r["errors"] == {} for r in records)
    assert "| session201-ws | CPU us/call |" in (out / "summary.md").read_text()


def test_an_idle_case_reports_memory_and_the_cpu_of_a_connect(tmp_path):
    out = tmp_path / "compare"
    summary = compare(out, "idle-ws", ["gateway", "echo"], 0.3, rounds=2)
    figures = [(case["case"], case["figure"]) for case in summary["cases"]]
    assert figures == [
        ("idle-ws", "kib_per_connection"),
        ("idle-ws", "server_cpu_ms_per_connection"),
    ]
    connect = summary["cases"][1]["values"]  # /proc counts CPU in 10 ms ticks: 0 is possible
    assert set(connect) == {"gateway", "echo"} and all(value >= 0 for value in connect.values())
    assert "| idle-ws | CPU ms/connect |" in (out / "summary.md").read_text()
    memory = summary["cases"][0]
    assert [len(memory["rounds"][server]) for server in ("gateway", "echo")] == [2, 2]
    for server, series in memory["rounds"].items():  # the median of two: their mean
        assert memory["values"][server] == pytest.approx(sum(series) / 2, abs=0.001)


def test_ab_runs_a_revision_against_this_checkout_alternately(tmp_path):
    out = tmp_path / "ab.json"
    completed = bench(
        "ab",
        *("--base", "HEAD", "--case", "heartbeat-ws", "--rounds", "2", "--connections", "4"),
        *("--processes", "1", "--duration", "0.3", "--warmup", "0.1", "--out", str(out)),
    )
    result = json.loads(out.read_text())
    assert result["figure"] == "server_cpu_us_per_call" and result["base"] == "HEAD"
    assert [len(result["values"][name]) for name in ("base", "head")] == [2, 2]
    assert all(value > 0 for series in result["values"].values() for value in series)
    median = result["median"]
    assert result["head_over_base"] == round(median["head"] / median["base"], 3)
    assert (out.with_suffix("") / "results.jsonl").read_text().count("\n") == 4
    rounds = [line for line in completed.stderr.splitlines() if line.startswith("round ")]
    assert [line.split()[2] for line in rounds] == ["base", "head", "head", "base"]
