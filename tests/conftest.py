"""Shared fixtures: a real gateway on loopback (in-process Hypercorn, real sockets)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.app import create_app, gateway_of
from gateway.config import GatewayConfig
from gateway.hypercorn_compat import set_permessage_deflate
from gateway.runtime import Gateway
from gateway.server import create_listeners, hypercorn_config, prepare_certificates, serve_gateway

from .redis_server import RedisServer, start_redis


@dataclass
class RunningGateway:
    """A gateway serving on loopback inside the test's event loop."""

    base_url: str
    port: int
    gateway: Gateway
    wss_port: int | None = None
    status_port: int | None = None  # the status listener (status.bind), if any

    def url(self, identity: str) -> str:
        return f"{self.base_url}/{identity}"

    def wss_url(self, identity: str) -> str:
        return f"wss://localhost:{self.wss_port}{self.gateway.config.server.path_prefix}/{identity}"


def make_config(**sections: dict[str, Any]) -> GatewayConfig:
    """A GatewayConfig for loopback tests; `sections` override fields per section.

    Defaults: ws only on an ephemeral port, records in memory, and unknown identities
    auto-registered as profile 0 (the core OCPP tests do not exercise security profiles).
    """
    base = GatewayConfig()
    overrides: dict[str, dict[str, Any]] = {
        "server": {"ws_bind": ["127.0.0.1:0"]},
        "tls": {"wss_bind": []},
        "security": {"records_file": "", "dev_auto_register": True},
        "ui": {"tokens_file": ""},
    }
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
    """Factory: `await start_gateway(limits={...})` starts a gateway; all stop at teardown.

    `records=` and `tokens=` pass record and UI token stores (in memory) to the gateway.
    """
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(
        records: Any = None, tokens: Any = None, **sections: dict[str, Any]
    ) -> RunningGateway:
        config = make_config(**sections)
        prepare_certificates(config)
        listeners = create_listeners(config)
        app = create_app(config, Gateway(config, records=records, tokens=tokens))
        hc = hypercorn_config(config)
        # Hypercorn's ping task sleeps a full interval after a close: don't wait for it here.
        hc.graceful_timeout = 0.2
        stop = asyncio.Event()
        task = asyncio.create_task(serve_gateway(config, listeners, stop, app=app, hc=hc))
        stops.append((stop, task))
        gateway = gateway_of(app)
        for _ in range(500):  # until it serves (the cluster's start included), 10 s at most
            if gateway.listening or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done():
            task.result()  # the start failed: its error
        addresses = listeners.addresses()
        port = int(addresses["ws"][0].rsplit(":", 1)[1]) if addresses["ws"] else 0
        wss_port = int(addresses["wss"][0].rsplit(":", 1)[1]) if addresses["wss"] else None
        status = int(addresses["status"][0].rsplit(":", 1)[1]) if addresses["status"] else None
        return RunningGateway(
            f"ws://127.0.0.1:{port}{config.server.path_prefix}",
            port,
            gateway,
            wss_port,
            status,
        )

    yield start
    for stop, _ in stops:
        stop.set()
    for _, task in stops:
        await asyncio.wait_for(task, 15)
    set_permessage_deflate(False)


@pytest.fixture
async def gateway_server(start_gateway: Callable[..., Any]) -> RunningGateway:
    """A gateway with the default test configuration."""
    return await start_gateway()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (started on first use, on a free loopback port)."""
    server = start_redis()
    yield server
    server.stop()
