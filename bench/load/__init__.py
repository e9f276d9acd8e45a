"""Load generator: N simulated OCPP charge points against any OCPP-J server (see __main__)."""

from .run import run_load
from .spec import SCENARIOS, LoadSpec

__all__ = ["SCENARIOS", "LoadSpec", "run_load"]
