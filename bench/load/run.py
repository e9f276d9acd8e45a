"""`run_load`: one run of the load generator, from spec to result record (and files)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .coordinator import Coordinator
from .result import append_line, build_record
from .spec import LoadSpec


def run_load(
    spec: LoadSpec, on_window: Callable[[float, float], None] | None = None
) -> dict[str, Any]:
    """Run the load described by `spec`; the result record (also appended to `spec.out`).

    `on_window(start, end)` (`time.monotonic()` seconds) is told when the measured window of a
    heartbeat or session run will be, once the connections are open (e.g. to profile the server).

    Never raises for what the server did: every failure is counted in `errors` and makes `ok`
    False. Raises ValueError for a spec that makes no sense.
    """
    spec.check()
    started_at = datetime.now(UTC)
    coordinator = Coordinator(spec, on_window)
    tally = coordinator.run()
    record = build_record(spec, coordinator, tally, started_at)
    if spec.plot:
        try:
            from .plot import plot_record

            record["plot"] = str(plot_record(record, spec.plot))
        except Exception as exc:  # the figures stand without the picture
            record["plot_error"] = f"{type(exc).__name__}: {exc}"
            print(f"bench.load: no plot: {record['plot_error']}", file=sys.stderr)
    if spec.out:
        append_line(spec.out, record)
    return record
