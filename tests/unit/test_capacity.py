"""Admission control and the drain schedule as plain values: limits, jitter, boots, batches."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from ocpp.messages import get_validator

from gateway.capacity import AdmissionControl, CapacitySettings
from gateway.config import GatewayConfig
from gateway.drain import DrainPlan, close_in_batches
from gateway.embedded import v1_6
from gateway.embedded.base import EmbeddedContext, EmbeddedSettings, EmbeddedState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def control(clock: Clock | None = None, **settings: Any) -> AdmissionControl:
    return AdmissionControl(
        CapacitySettings(**settings), clock=clock or Clock(), rng=random.Random(7)
    )


# -- connections and Retry-After ---------------------------------------------------------------


def test_connections_above_the_limit_are_not_counted_and_get_503_with_retry_after():
    admission = control(max_connections=2, retry_after_s=10, retry_after_jitter_s=20)
    assert admission.open_connection() and admission.open_connection()
    assert not admission.open_connection()
    assert admission.connections == 2
    refusal = admission.full()
    assert (refusal.status, refusal.reason) == (503, "max_connections")
    (name, value), *_ = refusal.headers
    assert name == b"retry-after" and 10 <= int(value) <= 30
    admission.close_connection()
    assert admission.open_connection()


def test_retry_after_is_spread_over_the_jitter_range():
    admission = control(retry_after_s=10, retry_after_jitter_s=20)
    values = {admission.retry_after() for _ in range(500)}
    assert min(values) >= 10 and max(values) <= 30 and len(values) > 15


def test_zero_max_connections_is_unlimited():
    admission = control(max_connections=0)
    assert all(admission.open_connection() for _ in range(1000))


def test_handshake_counts_keep_the_peak():
    admission = control()
    for _ in range(3):
        admission.handshake_started()
    admission.handshake_ended()
    assert (admission.handshakes, admission.handshakes_peak) == (2, 3)


def test_a_storm_is_logged_once_a_second_with_the_count_since_the_last_line():
    clock = Clock()
    admission = control(clock)
    assert admission.log_due("max_connections") == 1  # the first at once
    assert [admission.log_due("max_connections") for _ in range(9)] == [0] * 9
    clock.now += 1.0
    assert admission.log_due("max_connections") == 10
    assert admission.log_due("max_tls_handshakes") == 1  # each reason on its own


# -- boots -------------------------------------------------------------------------------------


def test_at_most_n_boots_per_second_are_accepted_the_rest_pending_with_jittered_interval():
    clock = Clock()
    admission = control(
        clock, boots_per_second=3, boot_pending_interval_s=60, boot_pending_jitter_s=60
    )
    answers = [admission.pace_boot() for _ in range(10)]
    assert answers[:3] == [None, None, None]
    assert all(60 <= wait <= 120 for wait in answers[3:])  # type: ignore[operator]
    assert len(set(answers[3:])) > 1, "the intervals are spread"
    assert (admission.boots_accepted, admission.boots_pending) == (3, 7)
    clock.now += 0.5
    assert admission.pace_boot() is not None, "still within the same second"
    clock.now += 0.6  # the first three are older than a second now
    assert [admission.pace_boot() for _ in range(4)][:3] == [None, None, None]


def test_boot_pacing_off_accepts_everything():
    admission = control(boots_per_second=0)
    assert all(admission.pace_boot() is None for _ in range(1000))


@pytest.mark.parametrize("version", ["1.6", "2.0.1", "2.1"])
def test_paced_boot_answer_is_a_schema_valid_pending_with_the_interval(version: str):
    ctx = EmbeddedContext(
        "CP1", EmbeddedSettings(heartbeat_interval_s=300), EmbeddedState(pace_boot=lambda: 75)
    )
    answer = v1_6.boot_notification({}, ctx)
    get_validator(3, "BootNotification", version).validate(answer)
    assert (answer["status"], answer["interval"]) == ("Pending", 75)


def test_pacing_never_overrides_a_configured_rejected_or_pending():
    for status in ("Rejected", "Pending"):
        ctx = EmbeddedContext(
            "CP1",
            EmbeddedSettings(boot_status=status, heartbeat_interval_s=300),  # type: ignore[arg-type]
            EmbeddedState(pace_boot=lambda: 75),
        )
        assert v1_6.boot_notification({}, ctx)["interval"] == 300


def test_settings_come_from_limits_and_embedded():
    settings = CapacitySettings.of(GatewayConfig())
    assert settings.max_tls_handshakes == 256 and settings.max_connections == 20000
    assert settings.boots_per_second == 0  # boot pacing is opt-in


# -- the drain schedule ------------------------------------------------------------------------


def test_drain_plan_spreads_batches_and_leaves_the_close_timeout_for_the_last_one():
    plan = DrainPlan.of(20000, 500, drain_seconds=10, close_timeout=5)
    assert plan.spread == 5 and plan.pause == pytest.approx(5 / 39)
    small = DrainPlan.of(30, 10, drain_seconds=3, close_timeout=5)  # at most half the drain
    assert small.spread == 1.5 and small.pause == pytest.approx(0.75)
    assert DrainPlan.of(400, 500, 10, 5).pause == 0  # one batch
    assert DrainPlan.of(400, 0, 10, 5).batch_size == 0  # all at once


class FakeSession:
    def __init__(self, name: str, live: list[FakeSession]) -> None:
        self.name, self.closed, self._live = name, False, live

    def close(self) -> None:
        self.closed = True
        asyncio.get_running_loop().call_later(0.01, self._live.remove, self)


async def test_sessions_that_appear_during_the_drain_are_closed_too():
    live: list[FakeSession] = []
    live.extend(FakeSession(f"s{i}", live) for i in range(4))
    order: list[str] = []

    def close(session: FakeSession) -> None:
        order.append(session.name)
        session.close()

    plan = DrainPlan(batch_size=2, pause=0.2, spread=0.4)
    drain = asyncio.create_task(close_in_batches(lambda: list(live), close, plan, timeout=2))
    await asyncio.sleep(0.1)  # accepted just before the drain: registered after it began
    live.append(FakeSession("late", live))
    await asyncio.wait_for(drain, 3)
    assert order[:2] == ["s0", "s1"] and sorted(order) == ["late", "s0", "s1", "s2", "s3"]
    assert live == []


async def test_the_drain_stops_at_its_timeout_even_if_sessions_never_end():
    stuck = [type("Stuck", (), {"closed": False})()]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await close_in_batches(lambda: stuck, lambda s: None, DrainPlan(1, 0.1, 0.2), timeout=0.3)
    assert loop.time() - started < 0.5
