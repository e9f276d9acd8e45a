"""The `ocpp-gateway` CLI run in process against one Redis and key prefix (records in Redis)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main

PASSPHRASE = {"OCPP_GATEWAY_CA_PASSPHRASE": "a-long-test-passphrase"}


class Cli:
    """`ocpp-gateway ... --config FILE` in process, against one Redis and key prefix."""

    def __init__(self, tmp: Path, url: str, prefix: str) -> None:
        self.tmp = tmp
        self.certs = tmp / "certs"
        self.config = tmp / "gateway.toml"
        q = json.dumps
        self.config.write_text(
            f"[redis]\nurl = {q(url)}\nkey_prefix = {q(prefix)}\n"
            f"[tls]\ncerts_dir = {q(str(self.certs))}\n"
            f'[security]\naudit_log = {q(str(tmp / "audit.log"))}\ncpo_name = "Test CPO"\n'
            f"records_file = {q(str(tmp / 'no-records.json'))}\n"
            f"[ui]\ntokens_file = {q(str(tmp / 'no-tokens.json'))}\n"
        )

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> str:
        result = CliRunner().invoke(
            main, [*args, "--config", str(self.config)], input=input, env=PASSPHRASE
        )
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result.output
