"""A real `redis-server` for the tests: started on a free loopback port in a temp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass


@dataclass
class RedisServer:
    """A running redis-server process."""

    process: subprocess.Popen
    port: int
    directory: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(
    port: int | None = None,
    *,
    appendonly: bool = False,
    directory: str | None = None,
    unix_socket: bool = False,
) -> RedisServer:
    """Start redis-server and wait until it answers PING.

    No persistence by default; `appendonly` turns the AOF on with `appendfsync always` (every
    acknowledged write is on disk). `directory` reuses a data directory (a restart that keeps
    the AOF: kill the process without `stop()`, which deletes the directory). `unix_socket`:
    also listen on `<directory>/redis.sock`.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (.ci/run installs Debian's redis-server)")
    directory = directory or tempfile.mkdtemp(prefix="ocppgw-redis-")
    port = port or _free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else []
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *(persistence or ["--appendonly", "no"]),
            "--dir",
            directory,
            "--protected-mode",
            "yes",
            *(["--unixsocket", f"{directory}/redis.sock"] if unix_socket else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(process, port, directory)
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start within 10 s")
