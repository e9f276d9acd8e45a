"""OCPP version modules: data (schemas, action sets, error names) and small rules per version."""

from __future__ import annotations

from .base import OcppVersion
from .v1_6 import VERSION as V1_6
from .v2_0_1 import VERSION as V2_0_1
from .v2_1 import VERSION as V2_1

VERSIONS: dict[str, OcppVersion] = {v.subprotocol: v for v in (V2_1, V2_0_1, V1_6)}

__all__ = ["VERSIONS", "OcppVersion"]
