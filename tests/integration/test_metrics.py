"""/metrics, /healthz, /readyz and the status listener, scraped after real charge point traffic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import websockets
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bench.serve_process import GatewayProcess, start_serve
from gateway import status as status_module
from gateway.ocppj.codec import CallError, CallResult
from gateway.router import CallFailed
from security.ca import issue_client_certificate
from security.cadb import CaDatabase
from security.records import ChargePointRecord, InMemoryRecordStore

from ..redis_server import start_redis
from ..security.helpers import load_issuer
from .clients import running_station

DAY = 86400.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` on 127.0.0.1:`port`: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def scrape(port: int) -> Samples:
    """Every sample of /metrics by (name, labels)."""
    status, body = await http_get(port, "/metrics")
    assert status == 200, body
    return parse(body.decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value, 0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# -- messages, connections, handshakes -------------------------------------------------------------


async def test_each_heartbeat_counts_once_in_and_once_out(gateway_server):
    before = await scrape(gateway_server.port)
    async with websockets.connect(gateway_server.url("HB1"), subprotocols=["ocpp1.6"]) as ws:
        for index in range(7):
            await ws.send(f'[2,"{index}","Heartbeat",{{}}]')
            assert (await ws.recv()).startswith(f'[3,"{index}"')
        after = await scrape(gateway_server.port)
    in_total, out_total = "ocpp_gateway_messages_in_total", "ocpp_gateway_messages_out_total"
    assert delta(before, after, in_total, action="Heartbeat", type="call") == 7
    assert delta(before, after, out_total, action="Heartbeat", type="result") == 7
    assert delta(before, after, "ocpp_gateway_callerrors_sent_total", code="NotImplemented") == 0


async def test_library_charge_points_are_counted_by_action_and_version(gateway_server):
    before = await scrape(gateway_server.port)
    async with running_station(gateway_server.url("LIB16"), "ocpp1.6", "LIB16") as station:
        await station.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        await station.call(call16.Heartbeat())
    async with running_station(gateway_server.url("LIB201"), "ocpp2.0.1", "LIB201") as station:
        await station.call(
            call201.BootNotification(
                charging_station={"model": "M", "vendor_name": "V"}, reason="PowerUp"
            )
        )
    after = await scrape(gateway_server.port)
    calls = "ocpp_gateway_messages_in_total"
    assert delta(before, after, calls, action="BootNotification", type="call") == 2
    assert delta(before, after, calls, action="Heartbeat", type="call") == 1
    assert delta(before, after, "ocpp_gateway_handshakes_accepted_total", version="ocpp1.6") == 1
    assert delta(before, after, "ocpp_gateway_handshakes_accepted_total", version="ocpp2.0.1") == 1


async def test_connections_gauge_goes_up_and_down_by_version_and_profile(gateway_server):
    name = "ocpp_gateway_connections"
    v16 = {"version": "ocpp1.6", "profile": "0"}
    v21 = {"version": "ocpp2.1", "profile": "0"}
    async with (
        websockets.connect(gateway_server.url("G1"), subprotocols=["ocpp1.6"]),
        websockets.connect(gateway_server.url("G2"), subprotocols=["ocpp1.6"]),
        websockets.connect(gateway_server.url("G3"), subprotocols=["ocpp2.1"]),
    ):
        during = await scrape(gateway_server.port)
        assert value(during, name, **v16) == 2
        assert value(during, name, **v21) == 1

    async def all_closed() -> bool:
        after = await scrape(gateway_server.port)
        return value(after, name, **v16) == 0 and value(after, name, **v21) == 0

    await until(all_closed)


async def test_refused_handshakes_are_counted_by_reason(gateway_server):
    refused = "ocpp_gateway_handshakes_refused_total"
    before = await scrape(gateway_server.port)
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(gateway_server.url("bad:identity"), subprotocols=["ocpp1.6"])
    async with websockets.connect(gateway_server.url("NOVER"), subprotocols=["ocpp9"]) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    after = await scrape(gateway_server.port)
    assert delta(before, after, refused, reason="invalid_identity", layer="http") == 1
    assert delta(before, after, refused, reason="no_common_version", layer="http") == 1


async def test_failed_tls_handshake_is_counted_with_layer_tls(start_gateway, tmp_path):
    server = await start_gateway(
        tls={"wss_bind": ["127.0.0.1:0"], "certs_dir": str(tmp_path / "certs")}
    )
    before = await scrape(server.port)
    untrusting = ssl.create_default_context()  # does not trust the dev CA: aborts the handshake
    with pytest.raises(ssl.SSLError):
        await asyncio.open_connection("127.0.0.1", server.wss_port, ssl=untrusting)

    async def counted() -> bool:
        after = await scrape(server.port)
        tls = [
            labels
            for (name, labels), count in after.items()
            if name == "ocpp_gateway_handshakes_refused_total"
            and ("layer", "tls") in labels
            and count > value(before, name, **dict(labels))
        ]
        return len(tls) == 1

    await until(counted)


# -- CALLERRORs, gateway CALLs, queues -------------------------------------------------------------


async def test_callerrors_are_counted_by_code_when_sent_and_received(gateway_server):
    sent, received = "ocpp_gateway_callerrors_sent_total", "ocpp_gateway_callerrors_received_total"
    router = gateway_server.gateway.router
    before = await scrape(gateway_server.port)
    async with websockets.connect(gateway_server.url("ERR1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"u1","NoSuchAction",{}]')
        assert '"NotImplemented"' in await ws.recv()
        await ws.send('[2,"u2","Heartbeat",{"unexpected":1}]')  # 1.6: additionalProperties false
        assert '"FormationViolation"' in await ws.recv()

        async def answer_with(code: str) -> CallResult | CallError:
            pending = asyncio.create_task(router.call("ERR1", "ClearCache", {}))
            message_id = orjson.loads(await ws.recv())[1]
            await ws.send(orjson.dumps([4, message_id, code, "no", {}]).decode())
            return await pending

        assert isinstance(await answer_with("NotSupported"), CallError)
        assert isinstance(await answer_with("NotSupported"), CallError)
        assert isinstance(await answer_with("NoSuchCode"), CallError)
        after = await scrape(gateway_server.port)
    assert delta(before, after, sent, code="NotImplemented") == 1
    assert delta(before, after, sent, code="FormationViolation") == 1
    assert delta(before, after, received, code="NotSupported") == 2
    assert delta(before, after, received, code="other") == 1
    assert delta(before, after, "ocpp_gateway_messages_in_total", action="", type="refused") == 2
    assert (
        delta(before, after, "ocpp_gateway_messages_in_total", action="ClearCache", type="error")
        == 3
    )


async def test_gateway_calls_feed_the_latency_histogram_and_failures_by_reason(start_gateway):
    server = await start_gateway()
    router = server.gateway.router
    before = await scrape(server.port)
    async with running_station(server.url("LAT1"), "ocpp2.0.1", "LAT1"):
        request = {"getVariableData": [{"component": {"name": "C"}, "variable": {"name": "V"}}]}
        for _ in range(3):
            assert isinstance(await router.call("LAT1", "GetVariables", request), CallResult)
    async with websockets.connect(server.url("MUTE1"), subprotocols=["ocpp1.6"]):
        with pytest.raises(CallFailed):
            await router.call("MUTE1", "ClearCache", {}, timeout=0.3)
    after = await scrape(server.port)
    histogram = "ocpp_gateway_call_duration_seconds"
    assert delta(before, after, f"{histogram}_count", action="GetVariables") == 3
    assert 0 < delta(before, after, f"{histogram}_sum", action="GetVariables") < 3 * 2
    assert delta(before, after, f"{histogram}_bucket", action="GetVariables", le="+Inf") == 3
    assert (
        delta(before, after, "ocpp_gateway_messages_out_total", action="GetVariables", type="call")
        == 3
    )
    failed = "ocpp_gateway_calls_failed_total"
    assert delta(before, after, failed, action="ClearCache", reason="timeout") == 1


async def test_call_queue_gauges_show_calls_waiting_for_a_slow_charge_point(gateway_server):
    router = gateway_server.gateway.router
    async with websockets.connect(gateway_server.url("SLOW"), subprotocols=["ocpp1.6"]) as ws:
        calls = [asyncio.create_task(router.call("SLOW", "ClearCache", {})) for _ in range(3)]
        first = orjson.loads(await ws.recv())  # the first CALL is out, two wait behind it
        during = await scrape(gateway_server.port)
        assert value(during, "ocpp_gateway_call_queue_depth") == 3
        assert value(during, "ocpp_gateway_call_queue_longest") == 3
        await ws.send(orjson.dumps([3, first[1], {"status": "Accepted"}]).decode())
        for _ in range(2):
            message_id = orjson.loads(await ws.recv())[1]
            await ws.send(orjson.dumps([3, message_id, {"status": "Accepted"}]).decode())
        await asyncio.gather(*calls)
        after = await scrape(gateway_server.port)
    assert value(after, "ocpp_gateway_call_queue_depth") == 0


# -- health and readiness --------------------------------------------------------------------------


async def test_readyz_is_200_when_serving_and_503_naming_draining_while_draining(gateway_server):
    status, body = await http_get(gateway_server.port, "/readyz")
    assert status == 200 and orjson.loads(body) == {"ready": True, "not_ready": {}}
    assert value(await scrape(gateway_server.port), "ocpp_gateway_ready") == 1
    gateway_server.gateway.draining = True  # what the drain sets first
    status, body = await http_get(gateway_server.port, "/readyz")
    assert status == 503
    assert list(orjson.loads(body)["not_ready"]) == ["draining"]
    status, body = await http_get(gateway_server.port, "/healthz")
    assert status == 200 and orjson.loads(body) == {"status": "ok", "draining": True}
    assert value(await scrape(gateway_server.port), "ocpp_gateway_ready") == 0


async def test_readyz_is_503_naming_redis_while_redis_is_unreachable(start_gateway):
    """Only with redis.when_unavailable = "refuse": a node that keeps serving stays ready."""
    redis = start_redis()
    try:
        settings = {"url": redis.url, "claim_ttl_seconds": 1.0}
        server = await start_gateway(redis={**settings, "when_unavailable": "refuse"})
        serving = await start_gateway(redis=settings)
        status, _ = await http_get(server.port, "/readyz")
        assert status == 200
        assert value(await scrape(server.port), "ocpp_gateway_redis_up") == 1
    finally:
        redis.stop()

    async def not_ready() -> bool:
        status, body = await http_get(server.port, "/readyz")
        return status == 503 and "redis" in orjson.loads(body)["not_ready"]

    await until(not_ready)  # the health check runs every claim_ttl_seconds / 3
    assert value(await scrape(server.port), "ocpp_gateway_redis_up") == 0

    async def serving_knows() -> bool:
        return not serving.gateway.redis_healthy

    await until(serving_knows)
    assert (await http_get(serving.port, "/readyz"))[0] == 200  # it still serves: still ready


# -- the status listener ---------------------------------------------------------------------------


async def test_status_listener_serves_status_routes_which_charge_point_port_does_not(
    start_gateway,
):
    server = await start_gateway(status={"bind": "127.0.0.1:0"})
    assert server.status_port and server.status_port != server.port
    async with websockets.connect(server.url("ST1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        await ws.recv()
        samples = await scrape(server.status_port)
    assert value(samples, "ocpp_gateway_messages_in_total", action="Heartbeat", type="call") == 1
    for path in ("/healthz", "/readyz"):
        assert (await http_get(server.status_port, path))[0] == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await http_get(server.port, path))[0] == 404, path
    assert (await http_get(server.status_port, "/ocpp/ST1"))[0] == 404


async def test_metrics_can_be_turned_off(start_gateway):
    server = await start_gateway(status={"metrics": False})
    assert (await http_get(server.port, "/metrics"))[0] == 404
    assert (await http_get(server.port, "/healthz"))[0] == 200


async def test_a_scrape_that_cannot_be_read_answers_500_with_a_log_line(
    gateway_server, monkeypatch, caplog
):
    def unreadable(*_: object) -> bytes:
        raise RuntimeError("Read beyond file size detected, file is corrupted.")

    monkeypatch.setattr(status_module, "exposition", unreadable)
    status, body = await http_get(gateway_server.port, "/metrics")
    assert (status, body) == (500, b"metrics unavailable, see the gateway's log\n")
    assert [r.exc_info[1].args for r in caplog.records if r.msg == "metrics_scrape_failed"] == [
        ("Read beyond file size detected, file is corrupted.",)
    ]
    assert (await http_get(gateway_server.port, "/healthz"))[0] == 200  # still serving


# -- certificate expiry ----------------------------------------------------------------------------


async def test_certificate_expiry_gauges_cover_server_ca_and_soonest_charge_point(
    start_gateway, tmp_path
):
    certs = tmp_path / "certs"
    records = InMemoryRecordStore(
        [
            ChargePointRecord("CP-SOON", security_profile=3),
            ChargePointRecord("CP-LATER", security_profile=3),
            ChargePointRecord("CP-OFF", security_profile=3, enabled=False),
        ]
    )
    server = await start_gateway(
        records=records, tls={"wss_bind": ["127.0.0.1:0"], "certs_dir": str(certs)}
    )
    issuer, database = load_issuer(certs), CaDatabase.of_store(certs)
    now = datetime.now(UTC)
    for identity, days in (("CP-SOON", 5), ("CP-SOON", 200), ("CP-LATER", 20), ("CP-OFF", 1)):
        issued = issue_client_certificate(issuer, identity, not_after=now + timedelta(days=days))
        database.add(issued.certificate, "charge_point", identity)  # CP-SOON renewed: 200 days
    samples = await scrape(server.port)
    expiry = {
        (dict(labels)["kind"], dict(labels)["name"]): seconds
        for (name, labels), seconds in samples.items()
        if name == "ocpp_gateway_certificate_expiry_seconds"
    }
    assert 364 * DAY < expiry["server", "rsa"] <= 397 * DAY
    assert 364 * DAY < expiry["server", "ecdsa"] <= 397 * DAY
    ca = {kind: seconds for (kind, _), seconds in expiry.items() if kind != "server"}
    assert ca["trust_anchor"] > 5 * 365 * DAY and ca["intermediate"] > 2 * 365 * DAY
    charge_points = {name: s for (kind, name), s in expiry.items() if kind == "charge_point"}
    assert list(charge_points) == ["CP-LATER"]  # CP-SOON was renewed, CP-OFF is disabled
    assert 19 * DAY < charge_points["CP-LATER"] <= 20 * DAY


# -- several workers -------------------------------------------------------------------------------


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[GatewayProcess, Path]]:
    """`python -m gateway serve` with two workers, a status listener and an operator-given
    PROMETHEUS_MULTIPROC_DIR (holding a stale file of an earlier run)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[server]\nws_bind = ["127.0.0.1:0"]\nworkers = 2\ndrain_seconds = 1\n'
        f'\n[tls]\nwss_bind = []\ncerts_dir = "{tmp_path / "certs"}"\n'
        f'\n[security]\nrecords_file = "{tmp_path / "records.json"}"\n'
        f'dev_auto_register = true\naudit_log = "{tmp_path / "audit.log"}"\n'
        '\n[status]\nbind = "127.0.0.1:0"\n'
        '\n[log]\nformat = "json"\n'
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    node = await start_serve(config, env, name="two-workers")
    try:
        yield node, metrics_dir
    finally:
        await node.close()


def connections_per_worker(metrics_dir: Path, pids: list[int]) -> dict[int, float]:
    """Open sessions per worker, read from each worker's own file in the multiprocess dir."""
    result = {}
    for pid in pids:
        files = [  # a starting worker's file is empty for a moment (see WorkerFiles)
            str(path) for path in metrics_dir.glob(f"gauge_livesum_{pid}.db") if path.stat().st_size
        ]
        result[pid] = sum(
            sample.value
            for family in MultiProcessCollector.merge(files)
            if family.name == "ocpp_gateway_connections"
            for sample in family.samples
        )
    return result


async def test_two_workers_share_connections_evenly(two_workers):
    """Each worker has its own SO_REUSEPORT socket: sequential connections spread over both
    (with one shared socket, most of them landed on whichever worker woke first)."""
    node, metrics_dir = two_workers
    listening = await node.wait_for("listening", timeout=30)
    port = int(listening["ws"][0].rsplit(":", 1)[1])
    await node.wait_for("worker_started", count=2, timeout=30)
    await node.wait_for("serving", count=2, timeout=30)
    pids = node.worker_pids
    async with contextlib.AsyncExitStack() as stack:
        for index in range(40):
            url = f"ws://127.0.0.1:{port}/ocpp/EVEN{index}"
            ws = await stack.enter_async_context(websockets.connect(url, subprotocols=["ocpp1.6"]))
            await ws.send('[2,"1","Heartbeat",{}]')
            await ws.recv()
        per_worker = connections_per_worker(metrics_dir, pids)
    assert sum(per_worker.values()) == 40
    assert min(per_worker.values()) >= 8, per_worker  # 20 each expected; 8 is 4 sd below


async def test_two_workers_are_summed_in_one_scrape_and_a_killed_worker_drops_out(two_workers):
    node, metrics_dir = two_workers
    listening = await node.wait_for("listening", timeout=30)
    port = int(listening["ws"][0].rsplit(":", 1)[1])
    status_port = int(listening["status"][0].rsplit(":", 1)[1])
    await node.wait_for("worker_started", count=2, timeout=30)
    await node.wait_for("serving", count=2, timeout=30)
    pids = node.worker_pids
    assert not (metrics_dir / "counter_1.db").exists(), "the operator's dir is wiped at start"
    async with contextlib.AsyncExitStack() as stack:
        opened = 0
        while min(connections_per_worker(metrics_dir, pids).values()) == 0:
            assert opened < 60, "the kernel never gave a connection to the second worker"
            url = f"ws://127.0.0.1:{port}/ocpp/MW{opened}"
            ws = await stack.enter_async_context(websockets.connect(url, subprotocols=["ocpp1.6"]))
            await ws.send('[2,"1","Heartbeat",{}]')
            await ws.recv()
            opened += 1
        per_worker = connections_per_worker(metrics_dir, pids)
        samples = await scrape(status_port)
        total = value(samples, "ocpp_gateway_connections", version="ocpp1.6", profile="0")
        assert total == opened == sum(per_worker.values())
        heartbeats = value(
            samples, "ocpp_gateway_messages_in_total", action="Heartbeat", type="call"
        )
        assert heartbeats == opened
        assert value(samples, "ocpp_gateway_ready") == 1

        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        await node.wait_for("worker_died", pid=victim)
        await node.wait_for("worker_started", count=3, timeout=30)

        async def victim_gone() -> bool:
            after = await scrape(status_port)
            live = value(after, "ocpp_gateway_connections", version="ocpp1.6", profile="0")
            return live == per_worker[pids[1]]

        await until(victim_gone, timeout=10)
        after = await scrape(status_port)  # counters of the dead worker are kept
        assert (
            value(after, "ocpp_gateway_messages_in_total", action="Heartbeat", type="call")
            == opened
        )
    node.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(node.process.wait(), 15) == 0


async def test_admission_control_counts_are_exported(start_gateway):
    server = await start_gateway(limits={"max_connections": 1}, embedded={"boot_pending_above": 1})
    boot = '[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]'
    before = await scrape(server.port)
    async with websockets.connect(server.url("ADM1"), subprotocols=["ocpp1.6"]) as ws:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(server.url("ADM2"), subprotocols=["ocpp1.6"])
        assert refused.value.response.status_code == 503
        statuses = []
        for _ in range(2):  # the second within the same second: Pending
            await ws.send(boot)
            statuses.append(orjson.loads(await ws.recv())[2]["status"])
        assert statuses == ["Accepted", "Pending"]
        after = await scrape(server.port)
    refused_total = "ocpp_gateway_handshakes_refused_total"
    assert delta(before, after, refused_total, reason="max_connections", layer="http") == 1
    assert value(after, "ocpp_gateway_admission_connections") == 1
    assert value(after, "ocpp_gateway_admission_connections_limit") == 1
    assert delta(before, after, "ocpp_gateway_boot_pacing_total", answer="accepted") == 1
    assert delta(before, after, "ocpp_gateway_boot_pacing_total", answer="pending") == 1
