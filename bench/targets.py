"""The servers a benchmark runs against, started as real processes: the gateway and its peers.

`BenchPki` is one CA store for a whole comparison (the gateway's development CA, made by
`security.devcerts`): the gateway serves its chains, the peers serve the same ECDSA chain, and
mutual TLS clients get certificates from its issuing CA (`bench.fleet.client_certificates`), so
every server does the same TLS work. `start_gateway` writes a configuration and the records of
the fleet, then runs `python -m gateway serve`; `start_peer` runs one of `bench.peers`. Both
return a `Target`: the base URL the load generator appends identities to, the process ids whose
CPU time and memory are measured, and what the answers must look like.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.fleet import client_certificates, write_records
from bench.peers import TlsFiles, peer_command
from bench.serve_process import GatewayProcess, start_serve
from security.devcerts import ensure_dev_certificates

HOST = "127.0.0.1"
SERVER_NAME = "localhost"
PATH_PREFIX = "/ocpp/"
BENCH_PASSWORD = "Bench-Passw0rd-0123456789"  # a 2.x BasicAuthPassword (16-40 characters)


@dataclass(frozen=True)
class BenchPki:
    """One CA store for every server of a run."""

    certs_dir: Path

    @classmethod
    def create(cls, directory: Path) -> BenchPki:
        certs = directory / "certs"
        ensure_dev_certificates(certs, SERVER_NAME)
        return cls(certs)

    @property
    def trust(self) -> Path:
        """The root the clients verify servers against."""
        return self.certs_dir / "trust" / "dev-root.pem"

    @property
    def client_ca(self) -> Path:
        """Root and issuing CA: what a peer needs to verify client certificates."""
        bundle = self.certs_dir / "client-ca.pem"
        if not bundle.exists():
            bundle.write_bytes(
                self.trust.read_bytes()
                + (self.certs_dir / "intermediate" / "dev-issuing.pem").read_bytes()
            )
        return bundle

    def server_tls(self, mutual: bool) -> TlsFiles:
        """The ECDSA chain the gateway serves too (its clients prefer it)."""
        server = self.certs_dir / "server"
        client_ca = self.client_ca if mutual else None
        return TlsFiles(server / "ecdsa.pem", server / "ecdsa.key", client_ca)

    def client_certificates(self, identities: list[str], out: Path) -> Path:
        """One certificate per identity (CN = identity), issued once per directory."""
        missing = [name for name in identities if not (out / f"{name}.pem").exists()]
        if missing:
            client_certificates(self.certs_dir / "ca", missing, out)
        return out


@dataclass
class Target:
    """A started server: where to connect and which processes to measure."""

    name: str
    url: str  # ends with "/": the identity is appended
    pids: list[int]
    expect: str  # "ocpp": OCPP answers; "echo": every frame comes back unchanged
    process: GatewayProcess

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL of the process group when it takes too long."""
        await self.process.stop(timeout=10)


def gateway_config(
    directory: Path,
    pki: BenchPki,
    *,
    workers: int = 1,
    extra: str = "",
) -> Path:
    """The gateway's configuration for a benchmark: ws and wss on loopback, JSON logs at info."""
    config = directory / "gateway.toml"
    q = json.dumps
    config.write_text(
        "[server]\n"
        f'ws_bind = ["{HOST}:0"]\n'
        f'path_prefix = "{PATH_PREFIX.rstrip("/")}"\n'
        f"workers = {workers}\n"
        "drain_seconds = 2\n"
        "\n[tls]\n"
        f'wss_bind = ["{HOST}:0"]\n'
        f"certs_dir = {q(str(pki.certs_dir))}\n"
        f'server_name = "{SERVER_NAME}"\n'
        "\n[security]\n"
        f"records_file = {q(str(directory / 'records.json'))}\n"
        f"audit_log = {q(str(directory / 'audit.log'))}\n"
        "dev_auto_register = false\n"
        "max_auth_failures = 0\n"
        '\n[log]\nformat = "json"\nlevel = "info"\n' + extra
    )
    return config


async def start_gateway(
    directory: Path,
    pki: BenchPki,
    scheme: str,
    identities: list[str],
    profile: int,
    *,
    workers: int = 1,
    extra_config: str = "",
    env: dict[str, str] | None = None,
) -> Target:
    """The gateway with records of `profile` for `identities` (password `BENCH_PASSWORD`);
    `env` adds variables to its environment (e.g. PYTHONPATH: another source tree)."""
    directory.mkdir(parents=True, exist_ok=True)
    password = BENCH_PASSWORD if profile in (1, 2) else None
    write_records(directory / "records.json", identities, profile, password)
    config = gateway_config(directory, pki, workers=workers, extra=extra_config)
    process = await start_serve(config, env, name="gateway", cwd=str(directory))
    try:
        await process.wait_serving(workers, timeout=60)
    except BaseException:
        await process.close()
        raise
    port = process.wss_port if scheme == "wss" else process.port
    pids = [process.process.pid]  # the whole tree is measured: supervisor and workers
    return Target("gateway", f"{scheme}://{HOST}:{port}{PATH_PREFIX}", pids, "ocpp", process)


async def start_peer(name: str, pki: BenchPki, scheme: str, *, mutual: bool = False) -> Target:
    """Peer `name` on a free loopback port (ws, or wss with the bench PKI's ECDSA chain)."""
    tls = pki.server_tls(mutual) if scheme == "wss" else None
    command = peer_command(name, host=HOST, port=0, tls=tls)
    repository = Path(__file__).resolve().parent.parent
    process = await GatewayProcess.start(command, name=name, cwd=str(repository))
    try:
        line = await process.wait_for("listening", timeout=30)
    except BaseException:
        await process.close()
        raise
    expect = "echo" if name == "echo" else "ocpp"
    url = f"{scheme}://{HOST}:{line['port']}{PATH_PREFIX}"
    return Target(name, url, [int(line["pid"])], expect, process)
