"""`gateway.clock`: ISO-8601 UTC timestamps with milliseconds, each second formatted once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gateway.clock import iso_utc, utc_now


def test_milliseconds_within_a_second_and_across_seconds_minutes_and_days():
    assert iso_utc(1741944413.589) == "2025-03-14T09:26:53.589Z"
    assert iso_utc(1741944413.001) == "2025-03-14T09:26:53.001Z"  # the cached second
    assert iso_utc(1741944414.0) == "2025-03-14T09:26:54.000Z"  # the next one
    assert iso_utc(1741996799.999) == "2025-03-14T23:59:59.999Z"
    assert iso_utc(1741996800.5) == "2025-03-15T00:00:00.500Z"
    assert iso_utc(1741944413.25) == "2025-03-14T09:26:53.250Z"  # an earlier second again
    assert iso_utc(1.9996) == "1970-01-01T00:00:01.999Z"  # truncated, never rounded up
    assert iso_utc(1.9999999999) == "1970-01-01T00:00:01.999Z"


def test_now_is_the_current_utc_time():
    before = time.time()
    stamp = utc_now()
    after = time.time()
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert int(before * 1000) / 1000 <= parsed <= after
