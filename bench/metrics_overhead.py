"""Cost of the Prometheus metrics on the per-message hot path.

Run: `python -m bench.metrics_overhead`. Prints one JSON object: microseconds per charge point
Heartbeat handled by a real `ChargePointConnection` (parse, validate, answer with the embedded
central system's payload, format, "send" to a sink) with the gateway's metrics and with no-op
metrics, measured in the same run, once with plain in-process values (one worker) and once in
prometheus-client's multiprocess mode (several workers: values in mmap files), plus the cost of one
cached counter increment.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

FRAME = '[2,"1","Heartbeat",{}]'
ROUNDS = 5


class _Noop:
    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


class _NoopCache(dict[str, Any]):
    def __missing__(self, key: str) -> _Noop:
        return _Noop()


def _connection(metrics: Any) -> Any:
    from gateway.connection import ChargePointConnection, ConnectionSettings
    from gateway.registry import InMemoryRegistry, SessionInfo
    from gateway.router import Router
    from gateway.session import BootRecord, OcppSession
    from gateway.versions import VERSIONS

    class Handler:
        def handle(self, info: Any, version: Any, call: Any) -> dict[str, Any]:
            return {"currentTime": "2025-01-01T00:00:00Z"}

        def notify(self, info: Any, version: Any, send: Any) -> None:
            pass

    async def sink(message: dict[str, Any]) -> None:
        pass

    version = VERSIONS["ocpp1.6"]
    info = SessionInfo("BENCH", version.subprotocol, time.time(), "127.0.0.1:1")
    session = OcppSession("BENCH", version, BootRecord("Accepted"))
    router = Router(InMemoryRegistry())
    return ChargePointConnection(
        info, session, sink, Handler(), router, ConnectionSettings(), metrics
    )


def _noop_metrics() -> Any:
    from gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    for name in ("in_call", "in_result", "in_error", "in_send", "out_call", "out_result"):
        setattr(metrics, name, _NoopCache())
    return metrics


async def _per_message_us(connection: Any, count: int) -> float:
    on_frame = connection._on_frame
    for _ in range(1000):  # warm-up
        await on_frame(FRAME)
    started = time.perf_counter()
    for _ in range(count):
        await on_frame(FRAME)
    return (time.perf_counter() - started) / count * 1e6


def measure(count: int) -> dict[str, float]:
    """Best of ROUNDS, alternating with and without metrics."""
    from gateway.metrics import GatewayMetrics, multiprocess

    with_metrics, without = [], []
    for _ in range(ROUNDS):
        with_metrics.append(asyncio.run(_per_message_us(_connection(GatewayMetrics()), count)))
        without.append(asyncio.run(_per_message_us(_connection(_noop_metrics()), count)))
    metrics = GatewayMetrics()
    child = metrics.in_call["Heartbeat"]
    started = time.perf_counter()
    for _ in range(count):
        metrics.in_call["Heartbeat"].inc()
    increment = (time.perf_counter() - started) / count * 1e6
    assert child._value.get() >= count
    best_with, best_without = min(with_metrics), min(without)
    return {
        "multiprocess": multiprocess(),
        "heartbeat_with_metrics_us": round(best_with, 3),
        "heartbeat_without_metrics_us": round(best_without, 3),
        "overhead_us": round(best_with - best_without, 3),
        "overhead_percent": round((best_with - best_without) / best_without * 100, 1),
        "cached_counter_inc_us": round(increment, 3),
    }


def main() -> None:
    count = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--count" else 50_000
    if os.environ.get("BENCH_METRICS_CHILD"):
        json.dump(measure(count), sys.stdout)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as directory:
        for multiproc in (False, True):
            env = {**os.environ, "BENCH_METRICS_CHILD": "1"}
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            if multiproc:  # must be set before prometheus-client is imported
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            completed = subprocess.run(
                [sys.executable, "-m", "bench.metrics_overhead", "--count", str(count)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(completed.stdout))
    report = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "messages": count,
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
