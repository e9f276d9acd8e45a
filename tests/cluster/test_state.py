"""Records, UI tokens and boot states in Redis: the CLI changes them once and every node applies
the change at once (announced on the state channel, not at the next reload interval); a Redis that
lost its data gets the nodes' copies back; revocations reach the node holding the session."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from pathlib import Path

import pytest
import redis
import websockets
from click.testing import CliRunner

from gateway.cli import main
from gateway.cluster.mirror import MirroredRecordStore, StateMirror
from gateway.cluster.state import RedisRecordStore, RedisTokenStore, StateKeys
from security.records import ChargePointRecord, DowngradeRefused

from ..redis_server import start_redis
from ..security.helpers import HEARTBEAT, PASSWORD, attempt, basic

PASSPHRASE = {"OCPP_GATEWAY_CA_PASSPHRASE": "a-long-test-passphrase"}
# Nodes re-read files and Redis only every 20 s here (the watch loop's tick is the smaller of the
# reload interval and a third of the claim TTL): anything faster is the announcement's doing.
SLOW_NODE = {"claim_ttl_seconds": 60.0}
SLOW_RELOAD = {"reload_interval_seconds": 60.0}


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
        )

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> str:
        result = CliRunner().invoke(
            main, [*args, "--config", str(self.config)], input=input, env=PASSPHRASE
        )
        assert result.exit_code == code, (result.exit_code, result.output, result.exception)
        return result.output


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def cli(tmp_path: Path, redis_server, prefix: str) -> Cli:
    return Cli(tmp_path, redis_server.url, prefix)


async def _nodes(start_gateway, url: str, prefix: str, count: int = 2, **sections):
    security = {"dev_auto_register": False, **sections.pop("security", {})}
    tls = {**SLOW_RELOAD, **sections.pop("tls", {})}
    return [
        await start_gateway(
            redis={"url": url, "key_prefix": prefix, "node_id": f"node-{i}", **SLOW_NODE},
            tls=tls,
            security=security,
            **sections,
        )
        for i in range(count)
    ]


async def _eventually(check, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_record_added_by_the_cli_is_known_to_every_node_at_once(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    """A00.FR.201-style Basic auth against a record that lives in Redis, not in a file."""
    a, b = await _nodes(start_gateway, redis_server.url, prefix)
    auth = basic("CPR", PASSWORD)
    assert (await attempt(a.url("CPR"), auth=auth)).status == 401
    cli("cp", "add", "CPR", "--profile", "1", "--password-prompt", input=f"{PASSWORD}\n" * 2)
    for node in (a, b):
        await _eventually(lambda node=node: node.gateway.records.get("CPR") is not None)
        assert (await attempt(node.url("CPR"), auth=auth)).status == 101
    assert "CPR" in cli("cp", "list")
    cli("cp", "remove", "CPR")
    await _eventually(lambda: b.gateway.records.get("CPR") is None)
    assert (await attempt(b.url("CPR"), auth=auth)).status == 401


async def test_raising_a_profile_with_the_cli_closes_the_session_on_the_node_holding_it(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    """A profile never goes down and a live session below the new profile ends (A00.FR.204)."""
    _a, b = await _nodes(start_gateway, redis_server.url, prefix)
    cli("cp", "add", "CPUP", "--profile", "0")
    await _eventually(lambda: b.gateway.records.get("CPUP") is not None)
    async with websockets.connect(b.url("CPUP"), subprotocols=["ocpp2.0.1"]) as ws:
        cli("cp", "set", "CPUP", "--profile", "1", "--password-prompt", input=f"{PASSWORD}\n" * 2)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3)
    assert closed.value.rcvd.code == 1008
    assert "profile_raised" in closed.value.rcvd.reason
    refused = cli("cp", "set", "CPUP", "--profile", "0", code=2)
    assert "downgrade" in refused


async def test_redis_refuses_a_downgrade_from_a_node_whose_copy_is_stale(
    redis_client, redis_server, prefix: str
):
    """The profile check runs in Redis too: a node's write based on an old copy cannot lower it."""
    client = redis.Redis.from_url(redis_server.url)
    store = RedisRecordStore(client, prefix)
    store.put(ChargePointRecord("CPR", security_profile=2))
    with pytest.raises(DowngradeRefused):
        store.put(ChargePointRecord("CPR", security_profile=1))
    records = MirroredRecordStore()  # a node that has not seen the record yet
    mirror = StateMirror(redis_client, prefix, records, None)
    records.put(ChargePointRecord("CPR", security_profile=0))
    await mirror.flush()
    assert store.get("CPR").security_profile == 2
    assert records.get("CPR").security_profile == 2  # the node's copy is corrected
    store.put(ChargePointRecord("CPR", security_profile=1), allow_downgrade=True)  # audited path
    assert store.get("CPR").security_profile == 1
    client.close()


async def test_ui_tokens_live_in_redis_and_a_revocation_disconnects_everywhere(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    a, b = await _nodes(start_gateway, redis_server.url, prefix, ui={"token_check_seconds": 0.2})
    secret = cli("ui", "token", "create", "--role", "viewer").splitlines()[0]
    token_id = RedisTokenStore(redis.Redis.from_url(redis_server.url), prefix).all()[0].token_id
    clients = []
    for node in (a, b):
        await _eventually(lambda node=node: node.gateway.ui.tokens.all())
        ws = await websockets.connect(
            f"ws://127.0.0.1:{node.port}/ui",
            additional_headers={"Authorization": f"Bearer {secret}"},
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] == "welcome"
        clients.append(ws)
    cli("ui", "token", "revoke", token_id)
    for ws in clients:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 3)
        assert closed.value.rcvd.code == 1008


async def test_a_boot_accepted_on_one_node_holds_on_another(start_gateway, redis_server, prefix):
    """B02.FR.09 gating: a charge point accepted on node A is not asked to boot again on node B."""
    a, b = await _nodes(
        start_gateway,
        redis_server.url,
        prefix,
        security={"dev_auto_register": True},
        ocpp={"gate_unknown_boot": True},
    )
    station = {"model": "M", "vendorName": "V"}
    boot = json.dumps(
        [2, "b1", "BootNotification", {"reason": "PowerUp", "chargingStation": station}]
    )
    async with websockets.connect(a.url("CPBOOT"), subprotocols=["ocpp2.0.1"]) as ws:
        await ws.send(boot)
        assert '"Accepted"' in await asyncio.wait_for(ws.recv(), 3)
    shared = redis.Redis.from_url(redis_server.url)
    boots = StateKeys(prefix).boots
    await _eventually(lambda: shared.hget(boots, "CPBOOT") == b"Accepted")  # written in background
    shared.close()
    for identity, expected in (("CPBOOT", '[3,"hb"'), ("CPNEVER", '[4,"hb","SecurityError"')):
        async with websockets.connect(b.url(identity), subprotocols=["ocpp2.0.1"]) as ws:
            await ws.send(HEARTBEAT)
            assert (await asyncio.wait_for(ws.recv(), 3)).startswith(expected)


async def test_a_redis_that_lost_its_data_gets_the_records_back_from_the_nodes(start_gateway):
    server = start_redis()
    try:
        (node,) = await _nodes(start_gateway, server.url, "lost:", count=1)
        node.gateway.records.put(ChargePointRecord("CPKEEP", security_profile=1))
        client = redis.Redis.from_url(server.url)
        store = RedisRecordStore(client, "lost:")
        await _eventually(lambda: store.get("CPKEEP") is not None)
        server.stop()
        client.close()
        server = start_redis(port=server.port)  # no persistence: empty
        client = redis.Redis.from_url(server.url)
        store = RedisRecordStore(client, "lost:")
        assert store.all() == []
        for _ in range(2):  # the periodic sync: notice the loss, then re-read what was written
            await node.gateway.stores.mirror.sync()
            await asyncio.sleep(0.3)
        assert [r.identity for r in store.all()] == ["CPKEEP"]
        assert node.gateway.records.get("CPKEEP") is not None
        client.close()
    finally:
        server.stop()


async def test_a_revocation_reaches_the_node_holding_the_session_at_once(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    """A00.FR.704 across nodes: `ca revoke` on any machine closes the session wherever it is."""
    cli("ca", "init")
    cli("ca", "issue-server", "--san", "localhost", "--san", "127.0.0.1")
    cli("cp", "add", "CP3", "--profile", "3")
    cli("ca", "issue-cp", "CP3", "--out", str(cli.tmp / "issued"))
    tls = {"wss_bind": ["127.0.0.1:0"], "certs_dir": str(cli.certs), "dev_certificates": False}
    _a, b = await _nodes(start_gateway, redis_server.url, prefix, tls=tls)
    await _eventually(lambda: b.gateway.records.get("CP3") is not None)
    context = ssl.create_default_context(cafile=str(cli.certs / "ca" / "root.pem"))
    context.load_cert_chain(cli.tmp / "issued" / "CP3.pem", cli.tmp / "issued" / "CP3.key")
    async with websockets.connect(b.wss_url("CP3"), subprotocols=["ocpp2.0.1"], ssl=context) as ws:
        await ws.send(HEARTBEAT)
        assert (await asyncio.wait_for(ws.recv(), 3)).startswith('[3,"hb"')
        cli("ca", "revoke", "CP3", "--reason", "keyCompromise")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3)
    assert closed.value.rcvd.code == 1008
    assert "cert_revoked" in closed.value.rcvd.reason


def test_state_import_moves_file_records_and_tokens_into_redis(
    tmp_path: Path, cli: Cli, redis_server, prefix: str
):
    """Moving a deployment from files to Redis keeps every record and token; never a downgrade."""
    from security.records import JsonFileRecordStore
    from security.tokens import JsonFileTokenStore, new_token

    files = JsonFileRecordStore(tmp_path / "records.json")
    files.put(ChargePointRecord("CPF1", security_profile=1, password_hash="h1"))
    files.put(ChargePointRecord("CPF2", security_profile=0))
    _secret, token = new_token("operator", ("CPF*",))
    JsonFileTokenStore(tmp_path / "tokens.json").put(token)
    redis_records = RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix)
    redis_records.put(ChargePointRecord("CPF2", security_profile=2))  # already raised in Redis
    out = cli(
        "state",
        "import",
        "--records",
        str(tmp_path / "records.json"),
        "--tokens",
        str(tmp_path / "tokens.json"),
    )
    assert "imported 1 records and 1 tokens" in out
    assert "kept CPF2" in out
    assert redis_records.get("CPF1") == files.get("CPF1")
    assert redis_records.get("CPF2").security_profile == 2
    shown = json.loads(cli("state", "show"))
    assert (shown["records"], shown["tokens"], shown["store"]) == (2, 1, "redis")
    assert RedisTokenStore(redis.Redis.from_url(redis_server.url), prefix).by_hash(token.hash)
