"""Brute-force protection (security/throttle.py): failures per key within a window, then lockout.

Guards the Basic-auth passwords of profiles 1 and 2 (A00.FR.202/301) against guessing; pure, the
caller passes the time.
"""

from __future__ import annotations

import pytest

from security.throttle import FailureLimiter

KEY = "id:CP-1"


def limiter(
    max_failures: int = 3, window_s: float = 60, lockout_s: float = 300, **kw: int
) -> FailureLimiter:
    return FailureLimiter(max_failures, window_s, lockout_s, **kw)


def test_unknown_key_is_not_locked() -> None:
    assert limiter().locked_for(KEY, 0.0) == 0.0


@pytest.mark.parametrize("max_failures", [1, 2, 3, 5])
def test_locks_on_the_max_th_failure_within_the_window_not_before(max_failures: int) -> None:
    lim = limiter(max_failures)
    for attempt in range(1, max_failures):
        assert lim.failure(KEY, float(attempt)) is False
        assert lim.locked_for(KEY, float(attempt)) == 0.0
    assert lim.failure(KEY, float(max_failures)) is True
    assert lim.locked_for(KEY, float(max_failures)) == 300.0


@pytest.mark.parametrize(
    ("times", "locked"),
    [
        ((0.0, 30.0, 59.9), True),  # all within 60 s
        ((0.0, 30.0, 60.0), False),  # the first one is exactly 60 s old: expired
        ((0.0, 61.0, 62.0), False),  # the first one fell out of the window
        ((0.0, 100.0, 200.0), False),
        ((0.0, 100.0, 130.0, 140.0), True),  # the last three are within 60 s
    ],
)
def test_failures_outside_the_window_do_not_count(times: tuple[float, ...], locked: bool) -> None:
    lim = limiter()
    results = [lim.failure(KEY, t) for t in times]
    assert results[-1] is locked
    assert (lim.locked_for(KEY, times[-1]) > 0) is locked


def test_lock_reports_the_remaining_time_and_expires_after_lockout() -> None:
    lim = limiter(max_failures=1, lockout_s=300)
    assert lim.failure(KEY, 1000.0) is True
    assert lim.locked_for(KEY, 1000.0) == 300.0
    assert lim.locked_for(KEY, 1100.0) == 200.0
    assert lim.locked_for(KEY, 1299.5) == 0.5
    assert lim.locked_for(KEY, 1300.0) == 0.0
    assert lim.locked_for(KEY, 5000.0) == 0.0


def test_counting_starts_afresh_after_a_lockout() -> None:
    lim = limiter(max_failures=2, lockout_s=10)
    lim.failure(KEY, 0.0)
    assert lim.failure(KEY, 1.0) is True
    assert lim.failure(KEY, 12.0) is False  # first failure after the lock expired
    assert lim.locked_for(KEY, 12.0) == 0.0
    assert lim.failure(KEY, 13.0) is True


def test_success_clears_the_failures() -> None:
    lim = limiter(max_failures=3)
    lim.failure(KEY, 0.0)
    lim.failure(KEY, 1.0)
    lim.success(KEY)
    assert lim.failure(KEY, 2.0) is False
    assert lim.failure(KEY, 3.0) is False
    assert lim.failure(KEY, 4.0) is True


def test_success_of_an_unknown_key_is_harmless() -> None:
    lim = limiter()
    lim.success("never-seen")
    assert lim.locked_for("never-seen", 0.0) == 0.0


def test_keys_are_counted_separately() -> None:
    lim = limiter(max_failures=2)
    lim.failure("id:CP-1", 0.0)
    assert lim.failure("ip:192.0.2.1", 0.0) is False
    assert lim.failure("id:CP-1", 1.0) is True
    assert lim.locked_for("ip:192.0.2.1", 1.0) == 0.0


@pytest.mark.parametrize("max_failures", [0, -1])
def test_max_failures_zero_or_less_disables_locking(max_failures: int) -> None:
    lim = limiter(max_failures)
    for t in range(100):
        assert lim.failure(KEY, float(t)) is False
    assert lim.locked_for(KEY, 100.0) == 0.0


def test_key_map_is_bounded_forgetting_the_oldest_keys_first() -> None:
    lim = limiter(max_failures=2, max_keys=3)
    for index in range(10):
        lim.failure(f"ip:10.0.0.{index}", 0.0)
    assert len(lim._entries) == 3
    assert list(lim._entries) == ["ip:10.0.0.7", "ip:10.0.0.8", "ip:10.0.0.9"]
    # The forgotten key starts from zero; a kept one locks on its second failure.
    assert lim.failure("ip:10.0.0.0", 1.0) is False
    assert lim.failure("ip:10.0.0.9", 1.0) is True


def test_a_new_failure_makes_a_key_the_most_recent() -> None:
    lim = limiter(max_failures=5, max_keys=2)
    lim.failure("a", 0.0)
    lim.failure("b", 0.0)
    lim.failure("a", 1.0)  # "a" is now the most recent: "b" is the oldest
    lim.failure("c", 2.0)
    assert list(lim._entries) == ["a", "c"]
