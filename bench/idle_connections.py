"""Memory cost of idle OCPP connections: the gateway's RSS before and after N open sessions.

Run: `python -m bench.idle_connections --connections 1000 --scheme ws` (or `--scheme wss`).

Starts `python -m gateway serve` as a subprocess (one worker) with a temporary configuration: ws and
wss on 127.0.0.1:0, the CA store (dev certificates, made on start) and the records file in a
temporary directory. The charge points `BENCH00000`... get records before the start: profile 0 for
ws, profile 2 (TLS + Basic auth) for wss, so the measurement is the cost of a session, not of
registering it (`dev_auto_register` is on for ws but finds every identity known: registering would
rewrite the whole records file per new identity). The ports come from the JSON `listening` line.

The server's VmRSS (/proc/PID/status) is read after one warm-up connection has been opened and
closed (imports, schema compilation and TLS setup are paid once, not per connection), then again
after N WebSocket connections (subprotocol ocpp1.6, opened with bounded concurrency, no message
sent, no client pings) have been open for `--settle` seconds. Prints one JSON object:
connections, scheme, worker_loop, rss_before_kib, rss_after_kib, kib_per_connection,
connect_seconds, failures (with the first errors) and the command. Everything is bounded by
`--deadline`: the clients are closed and the server is stopped (SIGTERM, then SIGKILL) in any case.
Linux only (/proc). Both processes raise RLIMIT_NOFILE to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import ctypes.util
import json
import re
import resource
import shlex
import signal
import ssl
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from bench.serve_process import GatewayProcess, start_serve
from security.passwords import hash_password, password_bytes_v2
from security.records import ChargePointRecord, JsonFileRecordStore

PASSWORD = "Bench-Passw0rd-0123456789"  # a 2.x BasicAuthPassword (16-40 characters)
SUBPROTOCOL = "ocpp1.6"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
SERVER_NAME = "localhost"
PATH_PREFIX = "/ocpp"
KEPT_EVENTS = {"listening", "worker_started", "serving", "non-json"}
ADDRESS = re.compile(r"0x[0-9a-f]+")


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def prepare_server_process() -> None:
    """In the forked server, before exec: raise its fd limit and die with the benchmark.

    PR_SET_PDEATHSIG (Linux) sends SIGKILL to the server when the benchmark process dies, even by
    SIGKILL, so no gateway outlives a killed benchmark.
    """
    raise_fd_limit()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def rss_kib(pid: int) -> int:
    """The resident set size of `pid` in KiB (VmRSS from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def identity(index: int) -> str:
    """The charge point identity of connection `index` (-1: the warm-up connection)."""
    return "BENCHWARMUP" if index < 0 else f"BENCH{index:05d}"


def write_config(directory: Path, scheme: str, worker_class: str) -> Path:
    """The gateway's TOML configuration for the benchmark, in `directory`."""
    config = directory / "gateway.toml"
    config.write_text(
        "[server]\n"
        'ws_bind = ["127.0.0.1:0"]\n'
        f'path_prefix = "{PATH_PREFIX}"\n'
        f'worker_class = "{worker_class}"\n'
        "drain_seconds = 2\n"
        "\n[tls]\n"
        'wss_bind = ["127.0.0.1:0"]\n'
        f"certs_dir = {json.dumps(str(directory / 'certs'))}\n"
        f'server_name = "{SERVER_NAME}"\n'
        "\n[security]\n"
        f"records_file = {json.dumps(str(directory / 'records.json'))}\n"
        f"dev_auto_register = {'true' if scheme == 'ws' else 'false'}\n"
        "max_auth_failures = 0\n"
        '\n[log]\nformat = "json"\nlevel = "info"\n'
    )
    return config


def write_records(path: Path, scheme: str, count: int) -> None:
    """Records for the `count` identities (and the warm-up one) before the server starts.

    wss: profile 2, each with its own argon2id hash of the shared password; ws: profile 0. The
    file is written in one go in `JsonFileRecordStore`'s format (its `put` rewrites the whole file
    per record: about 9 s for 1000) and read back through the store as a check.
    """
    records = []
    for index in range(-1, count):
        if scheme == "wss":
            digest = hash_password(password_bytes_v2(PASSWORD))
            records.append(
                ChargePointRecord(identity(index), security_profile=2, password_hash=digest)
            )
        else:
            records.append(ChargePointRecord(identity(index), security_profile=0))
    payload = {"version": 1, "charge_points": [record.to_json() for record in records]}
    path.write_text(json.dumps(payload), encoding="utf-8")
    path.chmod(0o600)
    stored = JsonFileRecordStore(path).all()
    if len(stored) != len(records):
        raise RuntimeError(f"{path}: {len(stored)} records read back, {len(records)} written")


class Server(GatewayProcess):
    """The gateway subprocess and what its log told us."""

    def __init__(self, process: asyncio.subprocess.Process, name: str = "the gateway") -> None:
        self.counts: Counter[str] = Counter()  # log lines per event (and reason)
        self.worker_loop = ""
        super().__init__(process, name)

    def keep(self, line: dict[str, Any]) -> bool:
        """Count every log line (by kind); keep only a few."""
        name = str(line.get("event", ""))
        if name == "security_event":
            name = f"security_event:{line.get('reason')}"
        # One count per kind: "Exception in callback <function ... at 0x7f...>" has an address.
        self.counts[ADDRESS.sub("0x?", name.split("\n", 1)[0])] += 1
        return name in KEPT_EVENTS or name.startswith("Running on")


async def start_server(config: Path, timeout: float) -> Server:
    """Start `python -m gateway serve` (fd limit raised first) and wait until it serves."""
    server = await start_serve(
        config,
        process_class=Server,
        name="the gateway",
        stdin=asyncio.subprocess.DEVNULL,
        preexec_fn=prepare_server_process,
    )
    # The worker's accept loop starts right after `serving` (the sockets already queue connections).
    await server.wait_serving(timeout=timeout)
    server.worker_loop = str(server.found("worker_started")[0].get("loop", ""))
    return server


@dataclass
class Target:
    """How the clients reach the gateway."""

    scheme: str
    port: int
    ssl_context: ssl.SSLContext | None

    def url(self, name: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{PATH_PREFIX}/{name}"

    def options(self, name: str) -> dict[str, Any]:
        options: dict[str, Any] = {
            "subprotocols": [SUBPROTOCOL],
            "ping_interval": None,  # idle: no client pings (the server still pings per config)
            "open_timeout": 30,
            "close_timeout": 2,
            "compression": None,
        }
        if self.ssl_context is not None:
            token = base64.b64encode(f"{name}:{PASSWORD}".encode()).decode()
            options["ssl"] = self.ssl_context
            options["server_hostname"] = SERVER_NAME  # verify the name, connect to 127.0.0.1
            options["additional_headers"] = {"Authorization": f"Basic {token}"}
        return options


async def open_one(target: Target, index: int) -> ClientConnection:
    """Open the WebSocket of charge point `index`; fail unless ocpp1.6 was negotiated."""
    name = identity(index)
    connection = await websockets.connect(target.url(name), **target.options(name))
    if connection.subprotocol != SUBPROTOCOL:
        await connection.close()
        raise RuntimeError(f"subprotocol {connection.subprotocol!r} negotiated")
    return connection


async def open_all(
    target: Target, count: int, concurrency: int
) -> tuple[list[ClientConnection], list[str]]:
    """Open `count` connections, at most `concurrency` handshakes at a time."""
    gate = asyncio.Semaphore(concurrency)
    opened: list[ClientConnection] = []
    errors: list[str] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                opened.append(await open_one(target, index))
            except Exception as exc:  # every failure is counted and reported
                errors.append(f"{identity(index)}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(i) for i in range(count)))
    return opened, errors


async def close_all(connections: list[ClientConnection], concurrency: int = 200) -> None:
    """Close every client (bounded concurrency; a stuck close is abandoned after its timeout)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(connection: ClientConnection) -> None:
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    await asyncio.gather(*(one(c) for c in connections))


def client_context(certs_dir: Path) -> ssl.SSLContext:
    """A TLS client trusting the store's dev root."""
    return ssl.create_default_context(cafile=str(certs_dir / "trust" / "dev-root.pem"))


async def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """The whole benchmark; the result object."""
    fd_limit = raise_fd_limit()
    needed = args.connections + 64
    if fd_limit < needed:
        raise SystemExit(f"RLIMIT_NOFILE is {fd_limit}, {needed} descriptors needed")
    with tempfile.TemporaryDirectory(prefix="ocpp-bench-") as temp:
        directory = Path(temp)
        write_records(directory / "records.json", args.scheme, args.connections)
        config = write_config(directory, args.scheme, args.worker_class)
        server = await start_server(config, args.start_timeout)
        connections: list[ClientConnection] = []
        try:
            context = client_context(directory / "certs") if args.scheme == "wss" else None
            target = Target(args.scheme, server.ports[args.scheme], context)
            rss_start = rss_kib(server.process.pid)
            warm_errors: list[str] = []
            try:
                warm = await open_one(target, -1)
                await warm.close()
            except Exception as exc:  # reported like any other failed connection
                warm_errors.append(f"{identity(-1)}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(args.settle)
            rss_before = rss_kib(server.process.pid)
            started = time.perf_counter()
            connections, errors = await open_all(target, args.connections, args.concurrency)
            connect_seconds = time.perf_counter() - started
            await asyncio.sleep(args.settle)
            rss_after = rss_kib(server.process.pid)
            alive = sum(1 for c in connections if c.close_code is None)
        finally:
            await close_all(connections)
            exit_code = await server.stop()
        opened = len(connections)
        failures = len(warm_errors) + args.connections - opened + (opened - alive)
        errors = warm_errors + errors
        return {
            "connections": args.connections,
            "open_after_settle": alive,
            "scheme": args.scheme,
            "worker_loop": server.worker_loop,
            "rss_start_kib": rss_start,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_connection": round((rss_after - rss_before) / max(opened, 1), 2),
            "connect_seconds": round(connect_seconds, 3),
            "concurrency": args.concurrency,
            "failures": failures,
            "errors": errors[:5],
            "server_exit_code": exit_code,
            "server_log_counts": {
                name: count
                for name, count in sorted(server.counts.items())
                if not name.startswith("Running on")
            },
            "python": sys.version.split()[0],
            "command": shlex.join(["python", "-m", "bench.idle_connections", *argv]),
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle_connections", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", type=int, default=1000, help="idle sessions to open")
    parser.add_argument("--scheme", choices=("ws", "wss"), default="ws")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    parser.add_argument(
        "--worker-class", choices=("auto", "uvloop", "asyncio"), default="auto", help="server loop"
    )
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before reading RSS")
    parser.add_argument("--start-timeout", type=float, default=30.0, help="server start bound")
    parser.add_argument("--deadline", type=float, default=300.0, help="bound on the whole run")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.concurrency < 1:
        parser.error("--connections and --concurrency must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its JSON result; non-zero exit when a connection failed."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)

    async def bounded() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):  # clean up (server, temp dir) first
            loop.add_signal_handler(signum, task.cancel)  # type: ignore[union-attr]
        return await asyncio.wait_for(run(args, argv), args.deadline)

    try:
        result = asyncio.run(bounded())
    except TimeoutError:
        print(f"deadline of {args.deadline} s exceeded; server stopped", file=sys.stderr)
        return 2
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted; server stopped", file=sys.stderr)
        return 130
    print(json.dumps(result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
