"""Records, UI tokens and boot states in Redis: the CLI changes them once and every node applies
the change at once (announced on the state channel, not at the next reload interval); a Redis that
lost its data gets the nodes' copies back; revocations reach the node holding the session."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import websockets

from gateway.cluster.mirror import MirroredRecordStore, StateMirror
from gateway.cluster.state import RedisRecordStore, RedisTokenStore, StateKeys
from security.records import ChargePointRecord, DowngradeRefused

from ..redis_server import start_redis
from ..security.helpers import HEARTBEAT, PASSWORD, attempt, basic
from .cli import Cli

PASSPHRASE = {"OCPP_GATEWAY_CA_PASSPHRASE": "a-long-test-passphrase"}
# Nodes re-read files and Redis only every 20 s here (the watch loop's tick is the smaller of the
# reload interval and a third of the claim TTL): anything faster is the announcement's doing.
SLOW_NODE = {"claim_ttl_seconds": 60.0}
SLOW_RELOAD = {"reload_interval_seconds": 60.0}


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
        # a sync (the periodic one, or the one on resubscribing) notices the loss, the flush
        # writes the node's copy back
        for _ in range(50):
            await node.gateway.stores.mirror.sync()
            if store.all():
                break
            await asyncio.sleep(0.1)
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
    redis_tokens = RedisTokenStore(redis.Redis.from_url(redis_server.url), prefix)
    assert redis_tokens.by_hash(token.hash)
    # changes made in Redis since are never undone by importing again, even with --overwrite
    cli("ui", "token", "revoke", token.token_id)
    cli("cp", "set", "CPF1", "--disabled")
    cli("cp", "remove", "CPF2")
    again = cli("state", "import", "--records", str(tmp_path / "records.json"),
                "--tokens", str(tmp_path / "tokens.json"))  # fmt: skip
    assert "imported 1 records and 0 tokens" in again  # CPF2 was removed: it is in the file
    assert redis_records.get("CPF1").enabled is False
    assert redis_tokens.by_hash(token.hash).revoked is True
    cli("state", "import", "--overwrite", "--tokens", str(tmp_path / "tokens.json"))
    assert redis_tokens.by_hash(token.hash).revoked is True  # never un-revoked


async def test_a_nodes_write_changes_only_its_fields_and_never_resurrects(
    redis_client, redis_server, prefix: str
):
    """A password rotated on a node from an old copy keeps the CLI's changes made meanwhile; a
    record removed meanwhile is not created again."""
    cli_store = RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix)
    cli_store.put(ChargePointRecord("CPP", security_profile=1, password_hash="old"))
    cli_store.put(ChargePointRecord("CPGONE", security_profile=1, password_hash="old"))
    records = MirroredRecordStore()
    mirror = StateMirror(redis_client, prefix, records, None)
    await mirror.sync()  # the node's copy, then the CLI changes things it does not see yet
    cli_store.put(replace(cli_store.get("CPP"), enabled=False, expected_o="ACME"))
    cli_store.remove("CPGONE")
    records.put(replace(records.get("CPP"), password_hash="new"))
    records.put(replace(records.get("CPGONE"), password_hash="new"))
    await mirror.flush()
    stored = cli_store.get("CPP")
    assert (stored.password_hash, stored.enabled, stored.expected_o) == ("new", False, "ACME")
    assert records.get("CPP") == stored  # read back after the write
    assert cli_store.get("CPGONE") is None and records.get("CPGONE") is None


async def test_restoring_lost_data_never_overwrites_what_was_written_since(
    redis_client, redis_server, prefix: str
):
    cli_store = RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix)
    cli_store.put(ChargePointRecord("CPX", security_profile=1))
    cli_store.put(ChargePointRecord("CPY", security_profile=1))
    records = MirroredRecordStore()
    mirror = StateMirror(redis_client, prefix, records, None)
    await mirror.sync()
    await redis_client.flushall()  # Redis lost everything
    cli_store.put(ChargePointRecord("CPX", security_profile=3))  # written right after
    await mirror.sync()  # notices the loss: writes back only what is missing
    await mirror.flush()
    assert cli_store.get("CPX").security_profile == 3
    assert cli_store.get("CPY").security_profile == 1
    await mirror.sync()
    assert records.get("CPX").security_profile == 3


async def test_security_actions_from_one_node_reach_a_charge_point_on_another(
    start_gateway, cli: Cli, redis_server, prefix: str
):
    """TC_A_09/10 and TC_A_19 across nodes: an admin on node B rotates the AuthorizationKey of a
    1.6 charge point held by node A, then raises its profile; both nodes apply the new record."""
    from ..ui.test_security_actions import _basic, _status_of, scripted

    old_key = "00112233445566778899aabbccddeeff"
    a, b = await _nodes(start_gateway, redis_server.url, prefix, ui={"token_check_seconds": 0.2})
    cli(
        "cp",
        "add",
        "ROTX",
        "--profile",
        "1",
        "--authorization-key-prompt",
        input=f"{old_key}\n" * 2,
    )
    secret = cli("ui", "token", "create", "--role", "admin").splitlines()[0]
    await _eventually(lambda: a.gateway.records.get("ROTX") and b.gateway.ui.tokens.all())
    url_a, url_b = a.url("ROTX"), b.url("ROTX")
    answers = {"ChangeConfiguration": {"status": "Accepted"}}
    async with (
        scripted(url_a, "ocpp1.6", answers, _basic("ROTX", bytes.fromhex(old_key))) as calls,
        websockets.connect(
            f"ws://127.0.0.1:{b.port}/ui", additional_headers={"Authorization": f"Bearer {secret}"}
        ) as ui,
    ):
        assert json.loads(await ui.recv())["type"] == "welcome"
        await asyncio.sleep(0.2)  # node A's claim and presence reach Redis
        request = {"type": "security_action", "id": "r", "identity": "ROTX"}
        await ui.send(json.dumps({**request, "action": "rotate_password"}))
        rotated = json.loads(await asyncio.wait_for(ui.recv(), 5))
        assert rotated["status"] == "Accepted", rotated
        assert calls[0][3]["key"] == "AuthorizationKey"
        new_key = bytes.fromhex(calls[0][3]["value"])
        await ui.send(json.dumps({**request, "action": "upgrade_profile", "profile": 2}))
        upgraded = json.loads(await asyncio.wait_for(ui.recv(), 5))
        assert upgraded["status"] == "Accepted", upgraded
        assert calls[1][3] == {"key": "SecurityProfile", "value": "2"}
    for node in (a, b):
        await _eventually(lambda node=node: node.gateway.records.get("ROTX").security_profile == 2)
    assert await _status_of(url_b, "ocpp1.6", _basic("ROTX", new_key)) == 401  # profile 2: wss
    assert (
        RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix).get("ROTX").password_hash
    )


async def test_a_record_removed_while_the_session_is_being_set_up_still_closes_it(
    start_gateway, redis_server, prefix: str
):
    (node,) = await _nodes(start_gateway, redis_server.url, prefix, count=1)
    node.gateway.records.put(ChargePointRecord("CPWIN"))
    boots = node.gateway.stores.boots
    load = boots.load

    async def removed_meanwhile(identity: str):  # the removal lands inside the setup window
        node.gateway.records.remove(identity)
        await asyncio.sleep(0.1)
        return await load(identity)

    boots.load = removed_meanwhile
    async with websockets.connect(node.url("CPWIN"), subprotocols=["ocpp2.0.1"]) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.send(HEARTBEAT)
            await asyncio.wait_for(ws.recv(), 3)
    assert closed.value.rcvd.code == 1008
    assert "record_removed" in closed.value.rcvd.reason


def test_cli_patches_keep_concurrent_changes_and_refuse_downgrades(redis_server, prefix: str):
    store = RedisRecordStore(redis.Redis.from_url(redis_server.url), prefix)
    store.put(ChargePointRecord("CPC", security_profile=2, password_hash="old"))
    store.patch("CPC", {"password_hash": "rotated"})  # a node rotated the password meanwhile
    updated = store.patch("CPC", {"allowed_versions": ["ocpp1.6"]})  # what `cp set` changes
    assert (updated.password_hash, updated.allowed_versions) == ("rotated", ("ocpp1.6",))
    with pytest.raises(DowngradeRefused):
        store.patch("CPC", {"security_profile": 1})
    assert store.patch("CPC", {"security_profile": 1}, allow_downgrade=True).security_profile == 1
    assert store.patch("CPNONE", {"enabled": False}) is None  # never created by a patch
    assert store.get("CPNONE") is None
