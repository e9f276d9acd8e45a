"""Helpers of the broker tests: stoppable gateways, the example backend in process, stream reads."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
import websockets

from examples.backend_consumer import BackendConsumer
from gateway.app import create_app, gateway_of
from gateway.hypercorn_compat import set_permessage_deflate
from gateway.runtime import Gateway
from gateway.server import create_listeners, hypercorn_config, prepare_certificates, serve_gateway

from ..conftest import RunningGateway, make_config
from ..redis_server import RedisServer, _free_port

FAST = 2.0  # answer timeout when a backend answers: generous, never reached
BOOT16 = {"chargePointModel": "M1", "chargePointVendor": "Acme"}


class StoppableGateways:
    """Gateways in the test's loop that a test may stop (a restart); the rest stop at teardown."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    async def start(self, **sections: dict[str, Any]) -> RunningGateway:
        config = make_config(**sections)
        prepare_certificates(config)
        listeners = create_listeners(config)
        app = create_app(config, Gateway(config))
        hc = hypercorn_config(config)
        hc.graceful_timeout = 0.2
        stop = asyncio.Event()
        task = asyncio.create_task(serve_gateway(config, listeners, stop, app=app, hc=hc))
        await asyncio.sleep(0.05)
        port = int(listeners.addresses()["ws"][0].rsplit(":", 1)[1])
        self._running[port] = (stop, task)
        return RunningGateway(
            f"ws://127.0.0.1:{port}{config.server.path_prefix}", port, gateway_of(app)
        )

    async def stop(self, running: RunningGateway) -> None:
        stop, task = self._running.pop(running.port)
        stop.set()
        await asyncio.wait_for(task, 10)

    async def stop_all(self) -> None:
        for port in list(self._running):
            stop, task = self._running.pop(port)
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        set_permessage_deflate(False)


@contextlib.asynccontextmanager
async def running_backend(
    redis: aioredis.Redis, prefix: str, **options: Any
) -> AsyncIterator[BackendConsumer]:
    """The example backend consumer, in process."""
    consumer = BackendConsumer(redis, prefix, out=io.StringIO(), **options)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:  # a cancelled blocking redis-py read can hang (redis/redis-py#2579): bounded
        stop.set()
        task.cancel()
        await asyncio.wait([task], timeout=3)


async def envelopes(redis: aioredis.Redis, prefix: str, kind: str | None = None) -> list[dict]:
    """The envelopes in the call stream, oldest first (of one kind, if given)."""
    entries = await redis.xrange(f"{prefix}broker:{{calls}}")
    found = [orjson.loads(fields[b"envelope"]) for _, fields in entries]
    return [e for e in found if kind is None or e["kind"] == kind]


async def exchange(ws: Any, frame: list[Any], timeout: float = 3.0) -> list[Any]:
    """Send one OCPP-J frame on a raw WebSocket and return the parsed answer."""
    await ws.send(orjson.dumps(frame).decode())
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


def connect(gateway: RunningGateway, identity: str, subprotocol: str = "ocpp1.6") -> Any:
    return websockets.connect(gateway.url(identity), subprotocols=[subprotocol])


@contextlib.contextmanager
def replica_of(primary: RedisServer) -> Iterator[None]:
    """A redis-server replicating `primary`, acknowledging writes when the block starts."""
    port = _free_port()
    directory = tempfile.mkdtemp(prefix="ocppgw-replica-")
    options = {"port": port, "bind": "127.0.0.1", "save": "", "appendonly": "no", "dir": directory}
    arguments = [item for key, value in options.items() for item in (f"--{key}", str(value))]
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, *arguments, "--replicaof", "127.0.0.1", str(primary.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=primary.port, socket_timeout=1)
        deadline = time.monotonic() + 10
        acknowledged = 0
        while acknowledged < 5:  # writes the replica acknowledges at once, several in a row
            with contextlib.suppress(redis.RedisError):
                client.set("replica-check", port)
                acknowledged = acknowledged + 1 if client.execute_command("WAIT", 1, 50) else 0
            assert time.monotonic() < deadline, "the replica did not sync within 10 s"
            time.sleep(0.02)
        client.close()
        yield
    finally:
        process.kill()
        process.wait(5)
        shutil.rmtree(directory, ignore_errors=True)
