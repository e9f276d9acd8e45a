"""The sampled gauges keep working when one sample fails (gateway/metrics.py).

`sample()` runs in the sampler task, in every scrape and when the worker starts serving: an
exception there must neither end the sampler (the gauges, `ocpp_gateway_ready` among them, would
freeze at their last value with nothing in the log) nor fail a scrape or the start.
"""

from __future__ import annotations

import asyncio
import logging

from gateway import metrics as metrics_module
from gateway.registry import InMemoryRegistry
from gateway.runtime import Gateway

from ..conftest import make_config


class FlakyRegistry(InMemoryRegistry):
    """Its session list fails `failures` times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def local_sessions(self) -> list:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("registry unavailable")
        return super().local_sessions()

    def __bool__(self) -> bool:  # empty, yet given: Gateway takes `registry or InMemoryRegistry()`
        return True


def gateway(tmp_path, failures: int) -> Gateway:
    config = make_config(tls={"wss_bind": [], "certs_dir": str(tmp_path / "certs")})
    return Gateway(config, registry=FlakyRegistry(failures))


def ready(gw: Gateway) -> float | None:
    return gw.metrics.registry.get_sample_value("ocpp_gateway_ready")


def failure_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.metrics"]


async def test_a_failing_sample_is_logged_once_and_the_sampler_goes_on(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(metrics_module, "SAMPLE_SECONDS", 0.01)
    caplog.set_level(logging.INFO, logger="gateway.metrics")
    gw = gateway(tmp_path, failures=3)
    gw.listening = True
    sampler = asyncio.create_task(gw.metrics.sample_forever(gw))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if ready(gw) == 1:
                break
        assert not sampler.done(), "the sampler ended"
        assert ready(gw) == 1, "sampling resumed after the failures"
    finally:
        sampler.cancel()
    assert failure_lines(caplog) == ["metrics_sample_failed", "metrics_sample_recovered"]


def test_a_failing_sample_never_raises_into_a_scrape_or_the_start(tmp_path, caplog):
    gw = gateway(tmp_path, failures=1)
    caplog.set_level(logging.INFO, logger="gateway.metrics")
    gw.metrics.sample(gw)  # what a scrape and the start of serving call
    assert failure_lines(caplog) == ["metrics_sample_failed"]
