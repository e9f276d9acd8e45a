"""`tune_garbage_collector`: what a worker process does to Python's collector at start."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import gc, json, sys
from gateway.server import tune_garbage_collector
before = gc.get_threshold()
tune_garbage_collector(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize(("setting", "young"), [(7000, 7000), (0, 700)])
def test_young_threshold_is_set_and_start_up_objects_are_frozen(setting: int, young: int) -> None:
    """Run in a fresh interpreter: frozen objects are never collected, so not in pytest's."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(setting)], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result["after"] == [young, *result["before"][1:]]
    assert result["frozen"] > 10_000, "modules and classes loaded at start leave the collections"
