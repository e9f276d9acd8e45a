"""Redis with an ACL user and password, and over TLS (`rediss://`): the gateway claims charge
points through it; a wrong password is logged without the password and sessions stay served."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import websockets

from gateway.cluster.client import connect
from gateway.cluster.directory import RedisDirectory
from security.ca import (
    create_issuing_ca,
    create_root_ca,
    issue_server_certificate,
    write_certificates,
    write_private_key,
)

from ..security.helpers import HEARTBEAT

PASSWORD = "acl-test-password-7f3c"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def secured_redis() -> Iterator[tuple[int, Path]]:
    """redis-server on TLS only, with the default user off and one ACL user `gw`."""
    directory = Path(tempfile.mkdtemp(prefix="ocppgw-redis-tls-"))
    root = create_root_ca("Test Root", "Test")
    issuing = create_issuing_ca(root, "Test Issuing", "Test")
    server = issue_server_certificate(issuing, "localhost", ["localhost", "127.0.0.1"])
    write_certificates(directory / "chain.pem", [server.certificate, issuing.certificate])
    write_private_key(directory / "server.key", server.key)
    write_certificates(directory / "root.pem", [root.certificate])
    port = _free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port", "0",
            "--tls-port", str(port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(directory / "chain.pem"),
            "--tls-key-file", str(directory / "server.key"),
            "--tls-ca-cert-file", str(directory / "root.pem"),
            "--tls-auth-clients", "no",
            "--save", "",
            "--dir", str(directory),
            "--user", "default", "off",
            "--user", "gw", "on", f">{PASSWORD}", "~*", "&*", "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "redis-server (TLS) did not start"
                time.sleep(0.05)
        yield port, directory / "root.pem"
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


def _url(port: int, ca: Path, password: str = PASSWORD) -> str:
    return f"rediss://gw:{password}@localhost:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=required"


async def test_the_gateway_claims_through_tls_and_an_acl_user(start_gateway, secured_redis):
    port, ca = secured_redis
    url = _url(port, ca)
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        redis.Redis.from_url(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}").ping()
    node = await start_gateway(redis={"url": url, "node_id": "tls-node"})
    async with websockets.connect(node.url("TLS-1"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(HEARTBEAT)
        assert (await asyncio.wait_for(ws.recv(), 3)).startswith('[3,"hb"')
        client = connect(url)
        holder = await RedisDirectory(client, prefix="ocppgw:").holder("TLS-1")
        assert holder is not None and holder.node == "tls-node"
        await client.aclose()


async def test_a_wrong_password_is_logged_without_it_and_sessions_stay_served(
    start_gateway, secured_redis, caplog
):
    port, ca = secured_redis
    wrong = "not-the-password-91ab"
    caplog.set_level(logging.INFO)
    node = await start_gateway(redis={"url": _url(port, ca, wrong), "node_id": "denied"})
    async with websockets.connect(node.url("TLS-2"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(HEARTBEAT)
        assert (await asyncio.wait_for(ws.recv(), 6)).startswith('[3,"hb"')
    assert not node.gateway.redis_healthy
    failures = [r for r in caplog.records if r.getMessage() == "claim_failed"]
    assert failures, "the failed claim is logged"
    assert "invalid username-password" in failures[0].fields["error"]
    logged = caplog.text + " ".join(str(getattr(r, "fields", "")) for r in caplog.records)
    assert wrong not in logged and PASSWORD not in logged
