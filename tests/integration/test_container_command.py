"""The image's command line as a real process, without a container engine.

The Dockerfile's ENTRYPOINT + CMD run with the image's environment and configuration file, their
paths moved under a temporary root (the image's volumes) and its listeners onto loopback ports;
`ocpp-gateway` is the console script installed in this virtualenv, tini is used when installed.
Then what Docker and an operator do: the HEALTHCHECK command, a CLI command next to the server
(`docker exec`), a charge point, and `docker stop` (SIGTERM to PID 1).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from bench.serve_process import GatewayProcess
from gateway.config import load_config
from gateway.server import hypercorn_config

from ..deployment import IMAGE_CONFIG, ROOT, image, image_files, parse_dockerfile

IMAGE = image()
BIN = Path(sys.executable).parent


def _localized(text: str, root: Path) -> str:
    """The image's configuration with its paths under `root` and its listeners on loopback."""
    text = re.sub(r'"0\.0\.0\.0:\d+"', '"127.0.0.1:0"', text)
    return re.sub(r'"/(app|etc)/', lambda m: f'"{root}/{m[1]}/', text)


def _command() -> list[str]:
    """ENTRYPOINT + CMD; the init only when it is installed here (it only passes signals on)."""
    entrypoint = IMAGE.last("ENTRYPOINT").exec_form()
    command = IMAGE.last("CMD").exec_form()
    init = shutil.which(Path(entrypoint[0]).name)
    return [init, *entrypoint[1:], *command] if init else command


def _environment(root: Path) -> dict[str, str]:
    env = {k: _localized(f'"{v}"', root).strip('"') for k, v in IMAGE.env().items()}
    return {**env, "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(root)}


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[tuple[GatewayProcess, Path, dict[str, str]]]:
    """The image's command serving, with its root (volumes and files) and environment."""
    root = tmp_path
    for volume in IMAGE.last("VOLUME").exec_form():
        (root / volume.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, text in image_files(IMAGE).items():
        if path.endswith(".toml"):
            (root / path.lstrip("/")).write_text(_localized(text, root))
    env = _environment(root)
    workdir = root / IMAGE.last("WORKDIR").args.lstrip("/")
    serving = await GatewayProcess.start(_command(), cwd=workdir, env=env)
    try:
        yield serving, root, env
    finally:
        await serving.close()


def _get(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def _healthcheck(ports: dict[int, int], env: dict[str, str]) -> int:
    """The Dockerfile's HEALTHCHECK command, its ports mapped to the ones bound here."""
    kind, _, command = IMAGE.last("HEALTHCHECK").args.partition(" ")
    assert kind == "CMD"
    executable, *urls = json.loads(command)
    script = IMAGE.copied_files()[f"/usr/local/bin/{executable}"]
    urls = [re.sub(r":(\d+)/", lambda m: f":{ports[int(m[1])]}/", url) for url in urls]
    process = await asyncio.create_subprocess_exec(sys.executable, str(script), *urls, env=env)
    return await asyncio.wait_for(process.wait(), 15)


async def test_image_command_serves_passes_its_healthcheck_and_drains_on_sigterm(container):
    server, root, env = container
    listening = await server.wait_for("listening", timeout=30)
    await server.wait_for("worker_started")
    reader = asyncio.create_task(server.drain_output())
    ws_port = int(listening["ws"][0].rpartition(":")[2])
    status_port = int(listening["status"][0].rpartition(":")[2])
    assert listening["wss"], "the image serves wss too"
    assert (root / "app/certs/server/rsa.pem").is_file(), "dev CA on the certs volume"

    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, _get, f"http://127.0.0.1:{status_port}/readyz") == 200
    assert await _healthcheck({9100: status_port, 9000: ws_port}, env) == 0

    # `docker exec CONTAINER ocpp-gateway cp add ...`: the CLI reads the image's configuration.
    workdir = root / IMAGE.last("WORKDIR").args.lstrip("/")
    added = await asyncio.create_subprocess_exec(
        "ocpp-gateway", "cp", "add", "CONTAINER1", "--profile", "0", cwd=workdir, env=env
    )
    assert await asyncio.wait_for(added.wait(), 30) == 0
    assert (root / "app/data/charge-points.json").is_file()

    # The running gateway picks the record up within tls.reload_interval_seconds; a few tries,
    # spaced out, stay under the lockout (security.max_auth_failures).
    config = load_config(root / IMAGE_CONFIG.lstrip("/"), {})
    url = f"ws://127.0.0.1:{ws_port}/ocpp/CONTAINER1"
    for attempt in range(3):
        await asyncio.sleep(config.tls.reload_interval_seconds)
        try:
            ws = await websockets.connect(url, subprotocols=["ocpp1.6"])
            break
        except websockets.InvalidStatus:
            assert attempt < 2, f"the CLI's record is not used: {server.lines}"
    async with ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        assert (await asyncio.wait_for(ws.recv(), 5)).startswith('[3,"1"')
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)  # `docker stop`: SIGTERM to PID 1
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 15)
        assert closed.value.rcvd is not None and closed.value.rcvd.code in (1001, 1012)

    bound = config.server.drain_seconds + hypercorn_config(config).graceful_timeout
    assert await asyncio.wait_for(server.process.wait(), bound + 10) == 0
    assert time.monotonic() - started < bound + 1, "stopped within the drain bound"
    await asyncio.wait_for(reader, 5)
    assert "drain_finished" in [line.get("event") for line in server.lines]
    assert await _healthcheck({9100: status_port, 9000: ws_port}, env) == 1


def test_build_stage_makes_a_wheel_with_every_file_of_the_packages(tmp_path):
    """What the runtime stage installs: the wheel built from exactly what the build stage copies."""
    build = parse_dockerfile((ROOT / "Dockerfile").read_text())[0]
    source = tmp_path / "src"
    for instruction in build.all("COPY"):
        *paths, _ = instruction.args.split()
        for path in paths:
            if (ROOT / path).is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(ROOT / path, source / path, ignore=ignore)
            else:
                source.mkdir(exist_ok=True)
                shutil.copy(ROOT / path, source / path)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path, source],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("ocpp_gateway-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("gateway", "security"):
        for path in (source / package).rglob("*"):
            if path.is_file():
                assert path.relative_to(source).as_posix() in names, f"{path} is not packaged"
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))
    )
    assert b"ocpp-gateway = gateway.cli:main" in entry_points
