"""`ocpp-gateway serve` as a real process: start, serve, SIGTERM drain, several workers."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from bench.serve_process import GatewayProcess, serve_command, start_serve

from .clients import running_station


@pytest.fixture
async def serve_process(tmp_path: Path) -> AsyncIterator:
    started: list[GatewayProcess] = []

    async def start(extra_toml: str = "", wss: str = "[]") -> GatewayProcess:
        config = tmp_path / "gateway.toml"
        config.write_text(
            '[server]\nws_bind = ["127.0.0.1:0"]\ndrain_seconds = 3\n'
            + extra_toml
            + f'\n[tls]\nwss_bind = {wss}\ncerts_dir = "{tmp_path / "certs"}"\n'
            + "reload_interval_seconds = 0.2\n"
            + f'\n[security]\nrecords_file = "{tmp_path / "records.json"}"\n'
            + "dev_auto_register = true\n"
            + f'audit_log = "{tmp_path / "audit.log"}"\n'
            + '\n[log]\nformat = "json"\n'
        )
        serving = await start_serve(config)
        started.append(serving)
        await serving.wait_listening()
        return serving

    yield start
    for serving in started:
        await serving.close()


async def test_sigterm_closes_sessions_with_1012_and_exits_in_bounded_time(serve_process):
    # 1012 Service Restart (IANA WebSocket close code registry, RFC 6455 section 11.7): reconnect,
    # after a randomized delay (OCPP-J 2.0.1 part 4, 5.3), to another node.
    server = await serve_process()
    await server.wait_for("worker_started")
    url = f"ws://127.0.0.1:{server.port}/ocpp/TERM1"
    async with websockets.connect(url, subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        assert (await asyncio.wait_for(ws.recv(), 5)).startswith('[3,"1"')
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 1012
    code = await asyncio.wait_for(server.process.wait(), 10)
    assert code == 0
    assert time.monotonic() - started < 6, "drain bounded by drain_seconds + graceful timeout"
    await server.drain_output()
    events = [line.get("event") for line in server.lines]
    assert "drain_started" in events and "drain_finished" in events


async def test_two_workers_serve_the_same_port(serve_process):
    server = await serve_process("workers = 2\n")
    await server.wait_for("worker_started", count=2, timeout=20)
    url = f"ws://127.0.0.1:{server.port}/ocpp/"
    for index in range(6):
        subprotocol = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")[index % 3]
        async with running_station(url + f"W{index}", subprotocol, f"W{index}") as station:
            from ocpp.v16 import call as call16

            if subprotocol == "ocpp1.6":
                result = await station.call(call16.Heartbeat())
                assert result.current_time
    workers = {line["pid"] for line in server.lines if line.get("event") == "worker_started"}
    assert len(workers) == 2
    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), 15) == 0


@pytest.mark.parametrize(("setting", "threshold"), [("", 7000), ("gc_threshold = 0\n", 700)])
async def test_each_worker_collects_garbage_as_configured(serve_process, setting, threshold):
    """server.gc_threshold: a young-generation collection every 7,000 net allocations by default
    (Python's 700 costs about 6% of the CPU of a message), 0 keeps Python's own."""
    server = await serve_process(setting)
    await server.wait_for("worker_started")
    started = next(line for line in server.lines if line.get("event") == "worker_started")
    assert started["gc_threshold"] == threshold


async def test_invalid_configuration_refuses_to_start_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[limits]\ncall_timeout_seconds = -1\n")
    process = await asyncio.create_subprocess_exec(
        *serve_command(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"limits.call_timeout_seconds" in stderr
