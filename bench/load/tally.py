"""What a client process counted: calls, latencies, boots, refusals and every error by kind.

A worker keeps one `Tally` for its whole life and sends a copy to the coordinator after each phase;
the coordinator merges the last copy of every worker. Error kinds are short stable strings:
`callerror:<code>`, `close:<code>` (the connection closed under a charge point), `timeout:<action>`,
`connect:<http status or exception>`, `bad_reply:<why>`, `boot:<status>`, `unbooted` (storm: not
booted by the deadline), `worker:<why>`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .histogram import Histogram

MAX_EXAMPLES = 10


@dataclass
class Window:
    """The measured window [start, end) in time.monotonic() seconds (shared by all processes)."""

    start: float = math.inf
    end: float = math.inf


@dataclass
class Tally:
    """Counters of one client process (or, merged, of all)."""

    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    server_calls: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    connect_failures: int = 0
    calls_total: int = 0  # every answered call, warm-up included (progress)
    calls: int = 0  # answered within the measured window
    by_action: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)
    latency_by_action: dict[str, Histogram] = field(default_factory=dict)
    per_second: dict[int, Histogram] = field(default_factory=dict)  # second from window start
    checked: int = 0  # idle --heartbeat-check: connections that answered
    booted: int = 0
    boot_latency: Histogram = field(default_factory=Histogram)  # reconnect start -> booted
    last_boot_at: float = 0.0
    refusals: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    boot_statuses: Counter[str] = field(default_factory=Counter)
    window: Window = field(default_factory=Window)

    def error(self, kind: str, detail: str = "") -> None:
        """Count one error (and keep the first of each kind, with its detail)."""
        self.errors[kind] += 1
        if self.errors[kind] == 1 and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{kind}: {detail}"[:300] if detail else kind)

    def record_call(self, action: str, seconds: float, done: float) -> None:
        """An answered call: latency `seconds`, answered at monotonic time `done`."""
        self.calls_total += 1
        window = self.window
        if window.start == math.inf:  # no measured window: idle check, storm boots
            return
        second = math.floor(done - window.start)
        histogram = self.per_second.get(second)
        if histogram is None:
            histogram = self.per_second[second] = Histogram()
        histogram.add(seconds)
        if window.start <= done < window.end:
            self.calls += 1
            self.by_action[action] += 1
            self.latency.add(seconds)
            by_action = self.latency_by_action.get(action)
            if by_action is None:
                by_action = self.latency_by_action[action] = Histogram()
            by_action.add(seconds)

    @classmethod
    def merged(cls, tallies: list[Tally]) -> Tally:
        """One tally adding up all of them."""
        total = cls()
        for tally in tallies:
            total.errors.update(tally.errors)
            seen = {example.split(": ", 1)[0] for example in total.examples}
            for example in tally.examples:
                if example.split(": ", 1)[0] not in seen and len(total.examples) < MAX_EXAMPLES:
                    total.examples.append(example)
            total.server_calls.update(tally.server_calls)
            total.opened += tally.opened
            total.connect_failures += tally.connect_failures
            total.calls_total += tally.calls_total
            total.calls += tally.calls
            total.by_action.update(tally.by_action)
            total.latency.merge(tally.latency)
            for action, histogram in tally.latency_by_action.items():
                total.latency_by_action.setdefault(action, Histogram()).merge(histogram)
            for second, histogram in tally.per_second.items():
                total.per_second.setdefault(second, Histogram()).merge(histogram)
            total.checked += tally.checked
            total.booted += tally.booted
            total.boot_latency.merge(tally.boot_latency)
            total.last_boot_at = max(total.last_boot_at, tally.last_boot_at)
            total.refusals.update(tally.refusals)
            total.retries += tally.retries
            total.boot_statuses.update(tally.boot_statuses)
        return total
