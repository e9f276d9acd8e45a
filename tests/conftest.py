"""Shared fixtures: a real gateway on loopback (in-process Hypercorn, real sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypercorn.asyncio.run import worker_serve
from hypercorn.utils import wrap_app

from gateway.app import create_app, gateway_of
from gateway.config import GatewayConfig
from gateway.hypercorn_compat import set_permessage_deflate
from gateway.runtime import Gateway
from gateway.server import hypercorn_config


@dataclass
class RunningGateway:
    """A gateway serving on loopback inside the test's event loop."""

    base_url: str
    port: int
    gateway: Gateway

    def url(self, identity: str) -> str:
        return f"{self.base_url}/{identity}"


def make_config(**sections: dict[str, Any]) -> GatewayConfig:
    """A GatewayConfig with loopback defaults; `sections` override fields per section."""
    base = GatewayConfig()
    overrides = {"server": {"ws_bind": ["127.0.0.1:0"]}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return dataclasses.replace(
        base,
        **{
            name: dataclasses.replace(getattr(base, name), **values)
            for name, values in overrides.items()
        },
    )


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable[..., Any]]:
    """Factory: `await start_gateway(limits={...})` starts a gateway; all stop at teardown."""
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(**sections: dict[str, Any]) -> RunningGateway:
        config = make_config(**sections)
        set_permessage_deflate(config.server.permessage_deflate)
        hc = hypercorn_config(config)
        # Hypercorn's ping task sleeps a full interval after a close: don't wait for it here.
        hc.graceful_timeout = 0.2
        sockets = hc.create_sockets()
        port = sockets.insecure_sockets[0].getsockname()[1]
        app = create_app(config)
        gateway = gateway_of(app)
        stop = asyncio.Event()

        async def trigger() -> None:
            await stop.wait()
            await gateway.drain(config.server.drain_seconds)

        task = asyncio.create_task(
            worker_serve(wrap_app(app, 0, "asgi"), hc, sockets=sockets, shutdown_trigger=trigger)
        )
        stops.append((stop, task))
        await asyncio.sleep(0.05)
        return RunningGateway(f"ws://127.0.0.1:{port}{config.server.path_prefix}", port, gateway)

    yield start
    for stop, _ in stops:
        stop.set()
    for _, task in stops:
        await asyncio.wait_for(task, 15)
    set_permessage_deflate(False)


@pytest.fixture
async def gateway_server(start_gateway: Callable[..., Any]) -> RunningGateway:
    """A gateway with the default configuration."""
    return await start_gateway()
