"""Latency histogram with fixed logarithmic buckets (HDR-like): compact, mergeable, exact enough.

A value v (seconds) falls in bucket i = floor(log(v / LOWEST) / log(RATIO)); the bucket spans
[LOWEST * RATIO**i, LOWEST * RATIO**(i+1)). A percentile is read as the geometric middle of its
bucket, so it is within sqrt(RATIO) - 1 (0.5 %) of the exact nearest-rank value; the minimum and
maximum are kept exactly. Only non-empty buckets are stored (a dict), so one second of samples costs
a few hundred entries however many calls it held, and histograms of several processes and seconds
merge by adding counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

RATIO = 1.01
LOWEST = 1e-6  # 1 us: anything faster lands in bucket 0
HIGHEST = 1e4  # seconds: anything slower lands in the last bucket
_SCALE = 1.0 / math.log(RATIO)
_OFFSET = math.log(LOWEST) * _SCALE
LAST_BUCKET = int(math.log(HIGHEST / LOWEST) * _SCALE)
_HALF_BUCKET = math.sqrt(RATIO)


def bucket_of(seconds: float) -> int:
    """The bucket index of a value in seconds (clamped to the histogram's range)."""
    if seconds <= LOWEST:
        return 0
    index = int(math.log(seconds) * _SCALE - _OFFSET)
    return index if index < LAST_BUCKET else LAST_BUCKET


def bucket_value(index: int) -> float:
    """The value a bucket stands for: the geometric middle of its bounds."""
    return LOWEST * RATIO**index * _HALF_BUCKET


class Histogram:
    """Counts of latencies (seconds) per logarithmic bucket, with exact count, sum, min and max."""

    __slots__ = ("counts", "maximum", "minimum", "total", "total_seconds")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.total_seconds = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    def add(self, seconds: float) -> None:
        """Record one value."""
        index = bucket_of(seconds)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        self.total += 1
        self.total_seconds += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        if seconds < self.minimum:
            self.minimum = seconds

    def merge(self, other: Histogram) -> Histogram:
        """Add `other`'s counts to this histogram; returns self."""
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count
        self.total += other.total
        self.total_seconds += other.total_seconds
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        return self

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        """One histogram holding the counts of all of them."""
        result = cls()
        for histogram in histograms:
            result.merge(histogram)
        return result

    def percentile(self, fraction: float) -> float | None:
        """The nearest-rank percentile (fraction 0..1) in seconds; None when empty."""
        if not self.total:
            return None
        if fraction >= 1.0:
            return self.maximum
        rank = max(1, math.ceil(fraction * self.total))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(max(bucket_value(index), self.minimum), self.maximum)
        return self.maximum  # pragma: no cover - the counts sum to total

    def summary_ms(self) -> dict[str, float] | None:
        """p50, p90, p99, max and mean in milliseconds (3 decimals); None when empty."""
        if not self.total:
            return None
        figures = {
            name: round(1000.0 * (self.percentile(fraction) or 0.0), 3)
            for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        }
        figures["max"] = round(1000.0 * self.maximum, 3)
        figures["mean"] = round(1000.0 * self.total_seconds / self.total, 3)
        return figures

    def __getstate__(self) -> tuple[dict[int, int], int, float, float, float]:
        return self.counts, self.total, self.total_seconds, self.minimum, self.maximum

    def __setstate__(self, state: tuple[dict[int, int], int, float, float, float]) -> None:
        self.counts, self.total, self.total_seconds, self.minimum, self.maximum = state
