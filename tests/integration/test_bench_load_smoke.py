"""The load generator against a real `python -m gateway serve` process (small N, a few seconds).

One gateway serves the module: ws and wss on ephemeral ports, the dev CA made before the start (so
client certificates can be issued from it), records written by `bench.fleet` for three fleets: WS
(profile 0), TLS (profile 2, Basic auth) and MTLS (profile 3, a certificate each). Every positive
run must be ok with zero errors and carry its figures; the negative runs prove that a run which
gets wrong answers fails (ok False, exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from bench.fleet import client_certificates, write_records
from bench.load import LoadSpec, run_load
from bench.serve_process import serve_command
from bench.targets import BenchPki, gateway_config
from security.devcerts import ensure_dev_certificates

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Bench-Passw0rd-0123456789"
FLEETS = {"WS": (0, 20), "TLS": (2, 20), "MTLS": (3, 6)}  # prefix: (profile, size)


@dataclass
class Gateway:
    """A running gateway process and what the tests need to reach it."""

    process: subprocess.Popen[bytes]
    directory: Path
    lines: list[dict] = field(default_factory=list)
    ws: str = ""
    wss: str = ""

    @property
    def ca_file(self) -> str:
        return str(self.directory / "certs" / "trust" / "dev-root.pem")

    def read(self) -> None:
        """Drain the log (the pipe must never fill up), keeping the lines."""
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(raw))

    def wait_for(self, name: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.get("event") == name:
                    return line
            assert self.process.poll() is None, f"the gateway exited: {self.lines[-5:]}"
            time.sleep(0.02)
        raise AssertionError(f"no '{name}' log line: {self.lines[-5:]}")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp("load")
    certs = directory / "certs"
    ensure_dev_certificates(certs, "localhost")
    records = directory / "records.json"
    for index, (prefix, (profile, size)) in enumerate(FLEETS.items()):
        identities = [f"{prefix}{i:06d}" for i in range(size)]
        password = PASSWORD if profile in (1, 2) else None
        write_records(records, identities, profile, password, merge=index > 0)
        if profile == 3:
            client_certificates(certs / "ca", identities, directory / "clients")
    config = gateway_config(directory, BenchPki(certs))  # what bench.compare runs
    process = subprocess.Popen(  # bench.serve_process's command, without an event loop
        serve_command(config),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    served = Gateway(process, directory)
    threading.Thread(target=served.read, daemon=True).start()
    try:
        listening = served.wait_for("listening")
        served.ws = f"ws://{listening['ws'][0]}/ocpp/"
        served.wss = f"wss://{listening['wss'][0]}/ocpp/"
        served.wait_for("serving")
        yield served
    finally:  # the load generator is under test here, not the gateway's drain
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def spec(gateway: Gateway, **fields) -> LoadSpec:
    base = {
        "url": gateway.ws,
        "identity_prefix": "WS",
        "server_pids": [gateway.process.pid],
        "no_progress": True,
        "warmup": 0.2,
        "deadline": 30.0,
    }
    return LoadSpec(**{**base, **fields})


def assert_clean(record: dict) -> None:
    assert record["errors"] == {}, record["error_examples"]
    assert record["ok"] is True
    assert record["failures"] == 0


def test_heartbeat_over_ws_measures_round_trips_latency_and_server_cpu(gateway, tmp_path):
    out, plot = tmp_path / "results.jsonl", tmp_path / "heartbeat.png"
    record = run_load(
        spec(
            gateway,
            scenario="heartbeat",
            connections=20,
            processes=2,
            duration=1.0,
            out=str(out),
            plot=str(plot),
        )
    )
    assert_clean(record)
    assert record["opened"] == 20 and record["client_loop"] == "uvloop"
    assert record["calls"] > 100 and record["calls_per_second"] > 100
    assert record["calls_by_action"] == {"Heartbeat": record["calls"]}
    latency = record["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert record["server_cpu_seconds"] > 0 and record["server_cpu_us_per_call"] > 0
    assert record["server_processes"] >= 1
    assert record["command"].startswith("python -m bench.load --url ws://")
    assert json.loads(out.read_text().splitlines()[-1]) == record
    assert plot.stat().st_size > 10_000 and record["plot"] == str(plot)


@pytest.mark.parametrize("subprotocol", ["ocpp1.6", "ocpp2.0.1"])
def test_session_mix_is_answered_without_a_callerror(gateway, subprotocol):
    record = run_load(
        spec(
            gateway,
            scenario="session",
            subprotocol=subprotocol,
            connections=6,
            duration=0.5,
            meter_values=2,
        )
    )
    assert_clean(record)
    expected = {
        "ocpp1.6": {"BootNotification", "StatusNotification", "Authorize", "StartTransaction"},
        "ocpp2.0.1": {"BootNotification", "StatusNotification", "Authorize", "TransactionEvent"},
    }[subprotocol]
    assert expected <= set(record["calls_by_action"])
    assert record["server_cpu_us_per_call"] > 0
    assert set(record["latency_ms_by_action"]) == set(record["calls_by_action"])


def test_storm_over_wss_with_basic_auth_boots_every_charge_point_again(gateway):
    record = run_load(
        spec(
            gateway,
            url=gateway.wss,
            identity_prefix="TLS",
            password=PASSWORD,
            ca_file=gateway.ca_file,
            scenario="storm",
            connections=20,
            processes=2,
        )
    )
    assert_clean(record)
    assert record["booted"] == 20 and record["boot_statuses"] == {"Accepted": 20}
    assert 0 < record["boot_all_seconds"] < 20
    assert record["peak_rss_kib"] >= record["rss_before_storm_kib"] > 0


def test_idle_over_mutual_tls_holds_connections_that_all_answer_a_heartbeat(gateway):
    record = run_load(
        spec(
            gateway,
            url=gateway.wss,
            identity_prefix="MTLS",
            ca_file=gateway.ca_file,
            client_certs=str(gateway.directory / "clients"),
            scenario="idle",
            connections=6,
            duration=0.3,
            settle=0.2,
            heartbeat_check=True,
        )
    )
    assert_clean(record)
    assert record["heartbeat_check_answered"] == 6
    assert record["rss_after_kib"] > 0 and "kib_per_connection" in record
    # mutual TLS handshake, upgrade and session set-up: server CPU per connect (0.5-3 ms here;
    # /proc counts CPU in 10 ms ticks, so six connects may read 0)
    assert 0 <= record["server_cpu_ms_per_connection"] < 100


def test_wrong_answers_fail_the_run_with_exit_status_1(gateway):
    """The gateway is no echo server: every answer is a bad reply, and the run must fail."""
    completed = subprocess.run(
        [
            *(sys.executable, "-m", "bench.load", "--url", gateway.ws, "--identity-prefix", "WS"),
            *("--scenario", "heartbeat", "--connections", "4", "--duration", "0.3"),
            *("--warmup", "0", "--expect", "echo", "--no-progress"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr
    record = json.loads(completed.stdout.splitlines()[-1])
    assert record["ok"] is False and record["errors"]["bad_reply:echo_mismatch"] > 0
    assert "LOAD RUN FAILED" in completed.stderr


def test_callerrors_and_refused_connections_are_counted_as_errors(gateway):
    # 1.6 payloads on an ocpp2.0.1 connection: the validating gateway answers CALLERRORs.
    mismatch = run_load(
        spec(
            gateway,
            scenario="session",
            subprotocol="ocpp2.0.1",
            payload_version="ocpp1.6",
            connections=2,
            duration=0.3,
        )
    )
    assert mismatch["ok"] is False
    assert any(kind.startswith("callerror:") for kind in mismatch["errors"])
    wrong_password = run_load(
        spec(
            gateway,
            url=gateway.wss,
            identity_prefix="TLS",
            password="Wrong-Passw0rd-0123456789",
            ca_file=gateway.ca_file,
            scenario="idle",
            connections=2,
            duration=0.1,
            settle=0.0,
        )
    )
    assert wrong_password["ok"] is False
    assert wrong_password["errors"]["connect:http_401"] == 3  # the warm-up and both
    assert wrong_password["failures"] == 2


class RefusingServer:
    """An OCPP-shaped server in a thread: after `accepted` handshakes it refuses `refused` with
    503 and Retry-After: 1, then accepts again; the first `pending` boots get Pending (interval
    1 s)."""

    def __init__(self, accepted: int, refused: int, pending: int) -> None:
        self.accepted, self.refused, self.pending = accepted, refused, pending
        self.handshakes = 0
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    def refuse(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes += 1
        if self.accepted < self.handshakes <= self.accepted + self.refused:
            response = connection.respond(503, "busy\n")
            response.headers["Retry-After"] = "1"
            return response
        return None

    async def answer(self, connection: ServerConnection) -> None:
        async for frame in connection:
            _, message_id, action, _ = orjson.loads(frame)
            status = "Accepted"
            if action == "BootNotification" and self.pending > 0:
                self.pending -= 1
                status = "Pending"
            reply = {"status": status, "currentTime": "2025-01-01T00:00:00Z", "interval": 1}
            await connection.send(orjson.dumps([3, message_id, reply]).decode())

    async def _main(self) -> None:
        async with serve(
            self.answer, "127.0.0.1", 0, subprotocols=["ocpp1.6"], process_request=self.refuse
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            await self.stopping.wait()

    def __enter__(self) -> RefusingServer:
        self.thread.start()
        deadline = time.monotonic() + 5
        while not self.port and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(5)


def test_storm_retries_refusals_after_retry_after_and_resends_pending_boots():
    with RefusingServer(accepted=11, refused=5, pending=3) as server:  # warm-up + 10, then 5
        record = run_load(
            LoadSpec(
                url=f"ws://127.0.0.1:{server.port}/ocpp/",
                scenario="storm",
                connections=10,
                no_progress=True,
                max_retry_wait=2.0,
                deadline=30.0,
            )
        )
    assert_clean(record)
    assert record["refusals"] == 5 and record["refusals_by_reason"] == {"http_503": 5}
    assert record["retries"] == 5 + 3  # the refused handshakes and the Pending boots
    assert record["boot_statuses"] == {"Accepted": 10, "Pending": 3}
    assert record["booted"] == 10 and record["boot_all_seconds"] >= 1.0  # Retry-After: 1
