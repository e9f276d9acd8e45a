"""The operator's path end to end: `ocpp-gateway serve` with wss and two workers generates dev
certificates; records and certificates made with the CLI let profile 2 and 3 charge points in."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main

from ..security.helpers import attempt, basic
from .test_serve_process import serve_process  # noqa: F401  (fixture)

PASSWORD = "Operator-Chosen-Password-42"


async def admitted(url: str, context, timeout: float = 5.0, **kwargs) -> None:
    """Until `url` upgrades (101); `context()` makes each attempt's TLS context."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (status := (await attempt(url, context=context(), **kwargs)).status) != 101:
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.1)


def _cli(config: Path, *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(main, [*args, "--config", str(config)], input=input)
    assert result.exit_code == 0, result.output
    return result.output


async def test_dev_certificates_cli_records_and_two_tls_workers(serve_process, tmp_path):  # noqa: F811
    import ssl

    server = await serve_process("workers = 2\n", wss='["127.0.0.1:0"]')
    await server.wait_for("worker_started", count=2, timeout=20)
    await server.wait_for("serving", count=2, timeout=20)
    created = [line for line in server.lines if line.get("event") == "dev_certificates_created"]
    assert created, "the first start with an empty store generates the dev CA"
    config = tmp_path / "gateway.toml"
    certs = tmp_path / "certs"
    assert (certs / "ca" / "issuing.key").stat().st_mode & 0o777 == 0o600

    _cli(
        config,
        "cp",
        "add",
        "OPS2",
        "--profile",
        "2",
        "--password-prompt",
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    _cli(config, "cp", "add", "OPS3", "--profile", "3")
    _cli(config, "ca", "issue-cp", "OPS3", "--out", str(tmp_path / "issued"))
    assert (tmp_path / "issued" / "OPS3.key").stat().st_mode & 0o777 == 0o600
    shown = _cli(config, "cp", "show", "OPS2")
    assert PASSWORD not in shown and '"password_hash": "set"' in shown

    trust = str(certs / "trust" / "dev-root.pem")
    url = f"wss://localhost:{server.wss_port}/ocpp/"

    def trusting() -> ssl.SSLContext:
        return ssl.create_default_context(cafile=trust)

    def with_certificate() -> ssl.SSLContext:
        context = trusting()
        context.load_cert_chain(tmp_path / "issued" / "OPS3.pem", tmp_path / "issued" / "OPS3.key")
        return context

    for _ in range(4):  # several connections: both workers terminate TLS
        # a worker that has not re-read the records yet (0.2 s interval) answers 401: retried
        await admitted(url + "OPS2", trusting, auth=basic("OPS2", PASSWORD))
        await admitted(url + "OPS3", with_certificate)
    refused = await attempt(
        url + "OPS2",
        auth=basic("OPS2", "wrong-password-00000"),
        context=ssl.create_default_context(cafile=trust),
    )
    assert refused.status == 401

    _cli(config, "cp", "set", "OPS2", "--profile", "3")  # a profile may always go up
    result = CliRunner().invoke(
        main, ["cp", "set", "OPS2", "--profile", "1", "--config", str(config)]
    )
    assert result.exit_code != 0 and "downgrade" in result.output
    _cli(config, "cp", "set", "OPS2", "--profile", "2", "--force-downgrade")

    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.process.wait(), 15) == 0
