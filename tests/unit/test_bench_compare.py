"""`bench.compare`'s cases and summaries, without running servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.compare import CASES, load_spec, parse_args, summarize
from bench.targets import BenchPki, Target


def spec_of(case: str, tmp_path: Path):
    target = Target("gateway", "ws://127.0.0.1:1/ocpp/", [1], "ocpp", None)  # type: ignore[arg-type]
    pki = BenchPki(tmp_path)
    return load_spec(parse_args([]), CASES[case], target, pki, tmp_path, tmp_path)


@pytest.mark.parametrize(("case", "meter_values"), [("session16-ws", 5), ("hour16-ws", 60)])
def test_session_cases_carry_their_transaction_length(tmp_path, case, meter_values):
    spec = spec_of(case, tmp_path)
    assert spec.scenario == "session" and spec.meter_values == meter_values


def test_summary_takes_the_median_of_the_rounds_and_ratios_of_the_medians():
    record = {"ok": True, "calls_per_second": 1.0}
    rounds = [
        {
            "gateway": {**record, "server_cpu_us_per_call": v},
            "echo": {**record, "server_cpu_us_per_call": e},
        }
        for v, e in ((70.0, 80.0), (90.0, 100.0), (71.0, 79.0))
    ]
    summary = summarize(CASES["heartbeat-ws"], rounds)
    assert summary["values"] == {"gateway": 71.0, "echo": 80.0}
    assert summary["rounds"]["gateway"] == [70.0, 90.0, 71.0]
    assert summary["gateway_ratio"] == {"echo": round(71.0 / 80.0, 3)}
    assert summary["ok"] == {"gateway": True, "echo": True}


def test_a_failed_round_marks_the_server_not_ok():
    rounds = [
        {"gateway": {"ok": True, "kib_per_connection": 40.0}},
        {"gateway": {"ok": False, "kib_per_connection": 41.0}},
    ]
    summary = summarize(CASES["idle-wss"], rounds)
    assert summary["ok"] == {"gateway": False}


def test_idle_cases_report_memory_and_the_cpu_of_a_connect() -> None:
    assert CASES["idle-wss"].figures == ("kib_per_connection", "server_cpu_ms_per_connection")
    assert CASES["heartbeat-ws"].figures == ("server_cpu_us_per_call",)
