"""Shared by the `ConnectionPipe` tests: a throwaway TLS chain and listeners of pipes."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from gateway.transport import ConnectionPipe
from security import ca


def make_tls_files(directory: Path) -> dict[str, Path]:
    """A root and a `localhost` server certificate: files `root`, `cert` and `key`."""
    root = ca.create_root_ca("Transport Test Root", "Test CPO")
    server = ca.issue_server_certificate(root, "localhost", ["localhost", "127.0.0.1"])
    files = {name: directory / f"{name}.pem" for name in ("root", "cert", "key")}
    ca.write_certificates(files["root"], [root.certificate])
    ca.write_certificates(files["cert"], [server.certificate])
    ca.write_private_key(files["key"], server.key)
    return files


def client_context(files: dict[str, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(files["root"]))


class Listeners:
    """Listeners whose accepted connections are `ConnectionPipe`s; `start` gives (port, pipes)."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []

    async def start(self, context: ssl.SSLContext | None = None) -> tuple[int, asyncio.Queue]:
        loop = asyncio.get_running_loop()
        pipes: asyncio.Queue[ConnectionPipe] = asyncio.Queue()

        def factory() -> ConnectionPipe:
            pipe = ConnectionPipe(loop, context)
            pipes.put_nowait(pipe)
            return pipe

        server = await loop.create_server(factory, "127.0.0.1", 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1], pipes

    async def __aenter__(self) -> Listeners:
        return self

    async def __aexit__(self, *_: object) -> None:
        for server in self.servers:
            server.close()


async def tls_client(
    port: int, pipes: asyncio.Queue, tls_files: dict[str, Path]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ConnectionPipe]:
    """An asyncio TLS client and the server's pipe of it, handshake done."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(tls_files), server_hostname="localhost"
    )
    pipe = await asyncio.wait_for(pipes.get(), 2)
    await pipe.handshake(2)
    return reader, writer, pipe
