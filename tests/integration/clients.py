"""Real OCPP charge point clients (the `ocpp` library over `websockets`) used by the tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v21.enums import Action as Action21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201


class Station16(ChargePoint16):
    """A 1.6 charge point that accepts configuration changes."""

    @on(Action16.change_configuration)
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.changed = (key, value)
        return result16.ChangeConfiguration(status="Accepted")


def _variables_result(result_module: Any, get_variable_data: list[dict[str, Any]]) -> Any:
    return result_module.GetVariables(
        get_variable_result=[
            {
                "attribute_status": "Accepted",
                "attribute_value": "42",
                "component": item["component"],
                "variable": item["variable"],
            }
            for item in get_variable_data
        ]
    )


class Station201(ChargePoint201):
    """A 2.0.1 charging station that answers GetVariables."""

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        return _variables_result(result201, get_variable_data)


class Station21(ChargePoint21):
    """A 2.1 charging station that answers GetVariables."""

    @on(Action21.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        return _variables_result(result21, get_variable_data)


STATIONS = {"ocpp1.6": Station16, "ocpp2.0.1": Station201, "ocpp2.1": Station21}


@contextlib.asynccontextmanager
async def running_station(url: str, subprotocol: str, identity: str) -> AsyncIterator[Any]:
    """Connect a library charge point of `subprotocol` and run its message loop."""
    async with websockets.connect(url, subprotocols=[subprotocol]) as ws:
        assert ws.subprotocol == subprotocol
        station = STATIONS[subprotocol](identity, ws, response_timeout=5)
        task = asyncio.create_task(station.start())
        try:
            yield station
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task
