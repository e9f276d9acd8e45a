"""The benchmark's peer servers (bench/peers) keep the contract the runner relies on.

Each peer runs as a real subprocess on 127.0.0.1, port 0, over ws, wss and mutual TLS
(certificates from the project's own CA code in a temp dir), and is spoken to by a real
`websockets` client. The `ocpp-rpc` peer is skipped where its Node packages are not installed
(`python -m bench.peers.setup`).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import websockets
from websockets.asyncio.client import connect

from bench.peers import NODE_SERVER, PEERS, TlsFiles, peer_command
from bench.peers.setup import installed_version
from bench.peers.startup import choose_subprotocol, identity_of
from security import ca

ROOT = Path(__file__).resolve().parents[2]
OCPP_PEERS = ("ocpp-lib", "ocpp-rpc")
SCHEMES = ("ws", "wss", "mtls")
START_SECONDS = 10.0
HEARTBEAT = '[2,"1","Heartbeat",{}]'
TIMESTAMP = "2026-01-01T00:00:00Z"
METER_VALUE_16 = {
    "timestamp": TIMESTAMP,
    "sampledValue": [
        {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    ],
}
START_16 = {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": TIMESTAMP}
SESSION: dict[str, list[tuple[str, dict[str, Any]]]] = {  # schema-valid requests, in order
    "ocpp1.6": [
        ("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
        ("Heartbeat", {}),
        ("Authorize", {"idTag": "TAG1"}),
        ("StartTransaction", START_16),
        ("StartTransaction", START_16),
        ("MeterValues", {"connectorId": 1, "transactionId": 1, "meterValue": [METER_VALUE_16]}),
        ("StopTransaction", {"meterStop": 10, "timestamp": TIMESTAMP, "transactionId": 1}),
    ],
    "ocpp2.0.1": [
        (
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
        ),
        (
            "StatusNotification",
            {"timestamp": TIMESTAMP, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ),
        ("Heartbeat", {}),
        (
            "MeterValues",
            {
                "evseId": 1,
                "meterValue": [{"timestamp": TIMESTAMP, "sampledValue": [{"value": 1234.5}]}],
            },
        ),
        (
            "TransactionEvent",
            {
                "eventType": "Started",
                "timestamp": TIMESTAMP,
                "triggerReason": "Authorized",
                "seqNo": 0,
                "transactionInfo": {"transactionId": "T1"},
            },
        ),
        ("Authorize", {"idToken": {"idToken": "TAG1", "type": "ISO14443"}}),
    ],
}
INVALID_BOOT = '[2,"2","BootNotification",{"chargePointVendor":1}]'  # model missing, vendor int


@dataclass(frozen=True)
class Certificates:
    """The server's TLS files (client CA included) and a charge point's client certificate."""

    tls: TlsFiles
    client_cert: Path
    client_key: Path


@dataclass
class RunningPeer:
    name: str
    scheme: str
    process: subprocess.Popen[str]
    listening: dict[str, Any]
    stderr: IO[str]
    certificates: Certificates

    def url(self, identity: str = "CP0001") -> str:
        scheme = "ws" if self.scheme == "ws" else "wss"
        return f"{scheme}://127.0.0.1:{self.listening['port']}/ocpp/{identity}"

    def client_ssl(self, with_certificate: bool = True) -> ssl.SSLContext | None:
        if self.scheme == "ws":
            return None
        context = ssl.create_default_context(cafile=self.certificates.tls.client_ca)
        if self.scheme == "mtls" and with_certificate:
            context.load_cert_chain(self.certificates.client_cert, self.certificates.client_key)
        return context

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]


def node_peer_ready() -> bool:
    return shutil.which("node") is not None and installed_version() is not None


def require_peer(name: str) -> None:
    if name == "ocpp-rpc" and not node_peer_ready():
        pytest.skip("no node, or ocpp-rpc not installed: run `python -m bench.peers.setup`")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("peer-certs")
    root = ca.create_root_ca("Bench Root", "Bench CPO")
    server = ca.issue_server_certificate(root, "localhost", ["localhost", "127.0.0.1"])
    client = ca.issue_client_certificate(root, "CP0001", "Bench CPO")
    files = {name: directory / f"{name}.pem" for name in ("root", "cert", "key", "ccert", "ckey")}
    ca.write_certificates(files["root"], [root.certificate])
    ca.write_certificates(files["cert"], [server.certificate])
    ca.write_certificates(files["ccert"], [client.certificate])
    assert server.key is not None and client.key is not None
    ca.write_private_key(files["key"], server.key)
    ca.write_private_key(files["ckey"], client.key)
    return Certificates(
        TlsFiles(files["cert"], files["key"], files["root"]), files["ccert"], files["ckey"]
    )


def launch_peer(
    name: str, scheme: str, certificates: Certificates, stderr: IO[str]
) -> subprocess.Popen[str]:
    tls = None
    if scheme != "ws":
        tls = (
            certificates.tls
            if scheme == "mtls"
            else TlsFiles(certificates.tls.cert, certificates.tls.key)
        )
    command = peer_command(name, host="127.0.0.1", port=0, tls=tls)
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)


def await_listening(
    name: str,
    scheme: str,
    process: subprocess.Popen[str],
    certificates: Certificates,
    stderr: IO[str],
) -> RunningPeer:
    """The running peer once its listening line came (fails the test after START_SECONDS)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_SECONDS)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        process.wait()
        stderr.seek(0)
        pytest.fail(f"{name} printed no listening line within {START_SECONDS} s: {stderr.read()}")
    return RunningPeer(name, scheme, process, json.loads(line), stderr, certificates)


def start_peers(
    combinations: list[tuple[str, str]], certificates: Certificates, directory: Path
) -> dict[tuple[str, str], RunningPeer]:
    """Start every (peer, scheme) at once (they start in parallel), then wait for each."""
    logs = {c: (directory / f"{c[0]}-{c[1]}.log").open("w+") for c in combinations}
    processes = {c: launch_peer(*c, certificates, logs[c]) for c in combinations}
    try:
        return {c: await_listening(*c, processes[c], certificates, logs[c]) for c in combinations}
    except BaseException:
        for c, process in processes.items():
            process.kill()
            process.wait()
            logs[c].close()
        raise


def stop_peers(peers: Iterable[RunningPeer]) -> None:
    """SIGTERM every peer at once, then wait for each (SIGKILL after 5 s)."""
    peers = list(peers)
    for running in peers:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGTERM)
    for running in peers:
        try:
            running.process.wait(5)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
        running.stderr.close()


@pytest.fixture(scope="module")
def running_peers(
    certificates: Certificates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], RunningPeer]]:
    """Every installed peer over ws, wss and mutual TLS, for the whole module."""
    names = [name for name in PEERS if name != "ocpp-rpc" or node_peer_ready()]
    combinations = [(name, scheme) for name in names for scheme in SCHEMES]
    peers = start_peers(combinations, certificates, tmp_path_factory.mktemp("peer-logs"))
    try:
        yield peers
    finally:
        stop_peers(peers.values())


def installed(
    running_peers: dict[tuple[str, str], RunningPeer], name: str, scheme: str
) -> RunningPeer:
    """The running peer `name` over `scheme` (the test is skipped when it is not installed)."""
    require_peer(name)
    return running_peers[name, scheme]


@pytest.fixture(
    params=[(name, scheme) for name in PEERS for scheme in SCHEMES],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def peer(
    request: pytest.FixtureRequest, running_peers: dict[tuple[str, str], RunningPeer]
) -> RunningPeer:
    return installed(running_peers, *request.param)


async def call(peer: RunningPeer, frame: str, subprotocol: str = "ocpp1.6") -> list[Any]:
    async with connect(
        peer.url(), subprotocols=[subprotocol], ssl=peer.client_ssl(), compression=None
    ) as ws:
        assert ws.subprotocol == subprotocol
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers  # no permessage-deflate
        await ws.send(frame)
        answer = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(answer, str)
    return json.loads(answer) if peer.name != "echo" else [answer]


def test_peer_announces_one_listening_line_with_its_real_port_and_pid(peer: RunningPeer) -> None:
    assert peer.listening == {
        "event": "listening",
        "peer": peer.name,
        "port": peer.listening["port"],
        "pid": peer.process.pid,
    }
    assert peer.listening["port"] > 0


async def test_peer_answers_ocpp16_heartbeat_with_current_time(peer: RunningPeer) -> None:
    answer = await call(peer, HEARTBEAT)
    if peer.name == "echo":
        assert answer == [HEARTBEAT], peer.log()
    else:
        assert answer[:2] == [3, "1"], (answer, peer.log())
        assert set(answer[2]) == {"currentTime"}


async def test_peer_answers_ocpp201_heartbeat_with_current_time(peer: RunningPeer) -> None:
    answer = await call(peer, HEARTBEAT, subprotocol="ocpp2.0.1")
    if peer.name == "echo":
        assert answer == [HEARTBEAT], peer.log()
    else:
        assert answer[:2] == [3, "1"], (answer, peer.log())
        assert set(answer[2]) == {"currentTime"}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", OCPP_PEERS)
async def test_ocpp_peer_answers_schema_invalid_boot_notification_with_callerror(
    name: str, scheme: str, running_peers: dict[tuple[str, str], RunningPeer]
) -> None:
    peer = installed(running_peers, name, scheme)
    answer = await call(peer, INVALID_BOOT)
    assert answer[:2] == [4, "2"], (answer, peer.log())
    assert answer[2] in {
        "FormationViolation",
        "FormatViolation",
        "TypeConstraintViolation",
        "OccurenceConstraintViolation",
        "OccurrenceConstraintViolation",
    }


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("name", OCPP_PEERS)
async def test_ocpp_peer_answers_every_benchmarked_action_with_a_callresult(
    name: str, subprotocol: str, running_peers: dict[tuple[str, str], RunningPeer]
) -> None:
    """Both peers validate their own answers too, so a CALLRESULT is a schema-valid one."""
    peer = installed(running_peers, name, "ws")
    requests = SESSION[subprotocol]
    async with connect(peer.url(), subprotocols=[subprotocol], compression=None) as ws:
        answers = {}
        for index, (action, payload) in enumerate(requests):
            await ws.send(json.dumps([2, str(index), action, payload]))
            answers[index, action] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    for (index, action), answer in answers.items():
        assert answer[:2] == [3, str(index)], (action, answer, peer.log())
    boot = answers[0, "BootNotification"][2]
    assert boot["status"] == "Accepted" and boot["interval"] == 300
    if subprotocol == "ocpp1.6":
        first, second = (answers[i, "StartTransaction"][2] for i in (4, 5))
        assert second["transactionId"] == first["transactionId"] + 1
        assert first["idTagInfo"] == {"status": "Accepted"}
        assert answers[3, "Authorize"][2] == {"idTagInfo": {"status": "Accepted"}}
    else:
        assert answers[5, "Authorize"][2] == {"idTokenInfo": {"status": "Accepted"}}


@pytest.mark.parametrize("name", OCPP_PEERS)
async def test_ocpp_peer_declines_permessage_deflate_when_a_client_offers_it(
    name: str, running_peers: dict[tuple[str, str], RunningPeer]
) -> None:
    """The comparison is uncompressed. (Hypercorn, under the echo, accepts deflate when offered:
    the load generator never offers it.)"""
    peer = installed(running_peers, name, "ws")
    async with connect(peer.url(), subprotocols=["ocpp1.6"], compression="deflate") as ws:
        assert ws.response is not None
        assert "sec-websocket-extensions" not in ws.response.headers


async def test_peer_refuses_a_client_offering_no_ocpp_subprotocol(peer: RunningPeer) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(peer.url(), subprotocols=["chat"], ssl=peer.client_ssl()):
            pass
    assert refused.value.response.status_code == 400


async def test_peer_refuses_a_path_outside_ocpp(peer: RunningPeer) -> None:
    url = peer.url().replace("/ocpp/", "/other/")
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(url, subprotocols=["ocpp1.6"], ssl=peer.client_ssl()):
            pass
    assert refused.value.response.status_code == 404


@pytest.mark.parametrize("name", PEERS)
async def test_mtls_peer_refuses_a_client_without_certificate(
    name: str, running_peers: dict[tuple[str, str], RunningPeer]
) -> None:
    peer = installed(running_peers, name, "mtls")
    refusals = (OSError, EOFError, websockets.InvalidHandshake, websockets.ConnectionClosed)
    with pytest.raises(refusals):
        async with connect(
            peer.url(), subprotocols=["ocpp1.6"], ssl=peer.client_ssl(with_certificate=False)
        ) as ws:  # TLS 1.3: the refusal may only show on the first read
            await ws.send(HEARTBEAT)
            await asyncio.wait_for(ws.recv(), 5)


async def test_every_peer_exits_zero_within_two_seconds_of_sigterm_with_a_connection_open(
    certificates: Certificates, tmp_path: Path
) -> None:
    names = [name for name in PEERS if name != "ocpp-rpc" or node_peer_ready()]
    peers = start_peers([(name, "ws") for name in names], certificates, tmp_path)

    async def terminate(running: RunningPeer) -> tuple[int, float]:
        async with connect(running.url(), subprotocols=["ocpp1.6"], compression=None) as ws:
            await ws.send(HEARTBEAT)
            await asyncio.wait_for(ws.recv(), 5)
            started = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(running.process.wait, 5)
            return code, time.monotonic() - started

    try:
        results = await asyncio.gather(*(terminate(p) for p in peers.values()))
        for running, (code, elapsed) in zip(peers.values(), results, strict=True):
            assert code == 0, (running.name, running.log())
            assert elapsed < 2.0, (running.name, elapsed)
    finally:
        stop_peers(peers.values())


def test_peer_command_runs_python_peers_as_modules_and_node_peer_by_absolute_path() -> None:
    tls = TlsFiles(Path("/c.pem"), Path("/k.pem"), Path("/ca.pem"))
    assert peer_command("ocpp-lib", host="h", port=1, tls=None) == [
        sys.executable,
        "-m",
        "bench.peers.ocpp_lib",
        "--host",
        "h",
        "--port",
        "1",
    ]
    assert peer_command("echo", host="h", port=2, tls=tls)[2:] == [
        "bench.peers.echo",
        "--host",
        "h",
        "--port",
        "2",
        "--cert",
        "/c.pem",
        "--key",
        "/k.pem",
        "--client-ca",
        "/ca.pem",
    ]
    node = peer_command("ocpp-rpc", host="h", port=3, tls=None)
    assert node[:2] == ["node", str(NODE_SERVER)] and os.path.isabs(node[1])
    with pytest.raises(ValueError, match="unknown peer"):
        peer_command("nginx", host="h", port=4, tls=None)


def test_subprotocol_is_chosen_in_the_servers_order_and_refused_when_none_matches() -> None:
    assert choose_subprotocol(["ocpp2.0.1", "ocpp1.6"]) == "ocpp1.6"
    assert choose_subprotocol(["ocpp2.0.1"]) == "ocpp2.0.1"
    assert choose_subprotocol(["ocpp1.5", "chat"]) is None
    assert identity_of("/ocpp/CP1") == "CP1"
    assert identity_of("/ocpp/") is None
    assert identity_of("/other/CP1") is None
    assert identity_of("/ocpp/a/b") is None
