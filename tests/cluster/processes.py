"""Real gateway processes sharing one real Redis: the harness of the multi-process cluster tests.

A `Cluster` is one configuration file (loopback ws on an ephemeral port, a short claim TTL, shared
records and token files, one Redis key prefix) and the `python -m gateway serve` processes started
with it; each node gets its own `redis.node_id` (and worker count) from the environment. Records
and UI tokens are made only with the CLI against the same file, so the tests do not depend on where
the gateway keeps them. The processes are started, read and killed by `bench.serve_process` (every
node's JSON log lines read in the background, every wait bounded); `close()` kills every process
group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import websockets
from redis.exceptions import ConnectionError as RedisConnectionError

from bench.serve_process import GatewayProcess, start_serve
from gateway.cluster.directory import Holder, RedisDirectory

from ..ui.conftest import UiClient

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0  # several interpreters starting at once on a small CI machine


class NodeProcess(GatewayProcess):
    """One `python -m gateway serve` (a single worker or a supervisor with workers)."""

    @property
    def node_ids(self) -> list[str]:
        """The cluster names of this node's workers (one per worker)."""
        # logged at every (re)subscription: once per worker here
        return list(dict.fromkeys(line["node"] for line in self.found("cluster_bus_listening")))

    def url(self, identity: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{identity}"

    @property
    def ui_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ui"


class Cluster:
    """Gateway processes sharing one configuration file and one Redis key prefix."""

    def __init__(
        self, directory: Path, redis_url: str, prefix: str, claim_ttl_seconds: float = 3.0
    ) -> None:
        self.directory = directory
        self.redis_url = redis_url
        self.prefix = prefix
        self.claim_ttl = claim_ttl_seconds
        self.nodes: list[NodeProcess] = []
        self.redis = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self.config_path = directory / "gateway.toml"
        self.config_path.write_text(
            "[server]\n"
            'ws_bind = ["127.0.0.1:0"]\n'
            "drain_seconds = 1\n"
            "\n[limits]\n"
            "call_timeout_seconds = 5\n"
            "\n[tls]\n"
            "wss_bind = []\n"
            f'certs_dir = "{directory / "certs"}"\n'
            "reload_interval_seconds = 0.2\n"
            "\n[security]\n"
            f'records_file = "{directory / "charge-points.json"}"\n'
            f'audit_log = "{directory / "audit.log"}"\n'
            "\n[ui]\n"
            f'tokens_file = "{directory / "ui-tokens.json"}"\n'
            "\n[redis]\n"
            f'url = "{redis_url}"\n'
            f'key_prefix = "{prefix}"\n'
            f"claim_ttl_seconds = {claim_ttl_seconds}\n"
            '\n[log]\nformat = "json"\n'
        )

    @property
    def directory_client(self) -> RedisDirectory:
        """The session directory as the gateway stores it (for reading claims)."""
        return RedisDirectory(self.redis, self.prefix, self.claim_ttl)

    # -- processes --------------------------------------------------------------------------------

    async def start(
        self, name: str, workers: int = 1, env: dict[str, str] | None = None
    ) -> NodeProcess:
        """Start node `name` (node id `name`, or `name-<pid>` per worker); return once it serves.
        `env` adds configuration variables (OCPP_GATEWAY_...)."""
        env = {
            **(env or {}),
            "OCPP_GATEWAY_REDIS_NODE_ID": name,
            "OCPP_GATEWAY_SERVER_WORKERS": str(workers),
        }
        node = await start_serve(
            self.config_path, env, process_class=NodeProcess, name=name, cwd=REPO
        )
        self.nodes.append(node)
        await node.wait_serving(workers, timeout=START_TIMEOUT)
        await node.wait_for("cluster_bus_listening", count=workers, timeout=START_TIMEOUT)
        return node

    async def start_nodes(
        self, *specs: tuple[str, int], env: dict[str, str] | None = None
    ) -> list[NodeProcess]:
        """Start nodes (name, workers) at once; return when all listen on their Redis channels."""
        nodes = await asyncio.gather(*(self.start(name, workers, env) for name, workers in specs))
        await self.wait_listening()
        return nodes

    async def wait_listening(self, timeout: float = 10.0) -> None:
        """Until every live worker is subscribed to its node channel and to the events channel."""
        live = [node for node in self.nodes if node.process.returncode is None]
        channels = [f"{self.prefix}node:{n}" for node in live for n in node.node_ids]
        workers = len(channels)

        async def subscribed() -> bool:
            counts = dict(await self.redis.pubsub_numsub(*channels, f"{self.prefix}events"))
            return all(counts.get(c.encode(), 0) >= 1 for c in channels) and (
                counts.get(f"{self.prefix}events".encode(), 0) >= workers
            )

        await eventually(subscribed, timeout, "every worker subscribed to its Redis channels")

    async def wait_watching(self, node: NodeProcess, timeout: float = 10.0) -> None:
        """Until `node`'s UI watchers are announced: its workers are in the watchers set (which
        they join before they announce it, so the other nodes forward their events from then)."""

        async def listed() -> bool:
            members = await self.redis.zrange(f"{self.prefix}watchers", 0, -1)
            return any(member.decode() in node.node_ids for member in members)

        await eventually(listed, timeout, f"{node.name}'s watchers announced")

    async def close(self) -> None:
        """Kill every node (process groups, bounded waits) and close the Redis client."""
        for node in self.nodes:
            node.kill()
        await asyncio.gather(*(node.close() for node in self.nodes))
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # -- the CLI against the same configuration ---------------------------------------------------

    async def cli(self, *args: str) -> str:
        """Run `python -m gateway ARGS --config <file>`; its stdout (fails on a non-zero exit)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            *args,
            "--config",
            str(self.config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        assert process.returncode == 0, f"gateway {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def add_charge_points(self, *identities: str) -> None:
        """Profile-0 records (one CLI call each, one after the other: the CLI edits a file)."""
        for identity in identities:
            await self.cli("cp", "add", identity, "--profile", "0")

    async def create_token(self, role: str, *scopes: str) -> str:
        """A UI token (`ui token create`); its secret."""
        scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
        return (await self.cli("ui", "token", "create", "--role", role, *scope_args)).split()[0]

    # -- the directory ----------------------------------------------------------------------------

    async def holder(self, identity: str) -> Holder | None:
        return await self.directory_client.holder(identity)

    async def wait_claimed(self, identity: str, node: NodeProcess, timeout: float = 5.0) -> Holder:
        """Until one of `node`'s workers holds `identity` in Redis; that holder."""
        holder: Holder | None = None

        async def held() -> bool:
            nonlocal holder
            holder = await self.holder(identity)
            return holder is not None and holder.node in node.node_ids

        await eventually(held, timeout, f"{identity} claimed by {node.name}")
        assert holder is not None
        return holder


async def eventually(
    check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> float:
    """Poll the async `check` until it is true; the seconds it took (fails after `timeout`).
    Redis being unreachable (e.g. restarting) counts as not yet."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(RedisConnectionError):
            if await check():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)


async def connect_ui(node: NodeProcess, secret: str) -> UiClient:
    """A UI API client on `node` (bearer token), past its welcome."""
    ws = await websockets.connect(
        node.ui_url, additional_headers={"Authorization": f"Bearer {secret}"}, open_timeout=5
    )
    client = UiClient(ws)
    welcome = await client.recv()
    assert welcome["type"] == "welcome", welcome
    return client


async def command(
    ui: UiClient, identity: str, action: str, payload: dict[str, Any], timeout: float = 4.0
) -> dict[str, Any]:
    """A UI command and its answer (`result` or `error`), bounded by `timeout` plus slack."""
    message = {
        "type": "command",
        "identity": identity,
        "action": action,
        "payload": payload,
        "timeout": timeout,
    }
    return await ui.request(message, timeout=timeout + 4)
