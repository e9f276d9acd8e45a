"""The load generator's pure parts: percentiles, frames, payloads, /proc readings, fleet files."""

from __future__ import annotations

import math
import os
import pickle
import random
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from ocpp.messages import get_validator
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from bench.fleet import client_certificates, records_for, write_records
from bench.load.__main__ import masked_command, parser
from bench.load.client import Target, connect_error_kind, refusal_of, retry_wait
from bench.load.frames import ReplyKind, call_frame, judge_reply, not_implemented_frame
from bench.load.histogram import RATIO, Histogram
from bench.load.payloads import (
    BOOTS,
    REQUIRED_REPLY_FIELDS,
    SESSIONS,
    ChargePointState,
    timestamp,
)
from bench.load.procfs import parse_stat, process_tree, sample_tree
from bench.load.result import per_second
from bench.load.spec import LoadSpec
from bench.load.tally import Tally, Window
from security.castore import load_ca_store
from security.certcheck import CertAccepted, check_client_certificate
from security.devcerts import ensure_dev_certificates
from security.passwords import verify_password
from security.records import JsonFileRecordStore

LIBRARY_VERSION = {"ocpp1.6": "1.6", "ocpp2.0.1": "2.0.1"}

# -- percentiles ---------------------------------------------------------------------------------


def exact_percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return values[max(1, math.ceil(fraction * len(values))) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_histogram_percentiles_are_within_one_percent_of_the_exact_values(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(math.log(0.002), 0.8) for _ in range(50_000)]
    values += [rng.uniform(0.05, 0.5) for _ in range(300)]  # a slow tail
    histogram = Histogram()
    for value in values:
        histogram.add(value)
    values.sort()
    for fraction in (0.5, 0.9, 0.99, 0.999):
        exact = exact_percentile(values, fraction)
        assert histogram.percentile(fraction) == pytest.approx(exact, rel=0.01)
    assert histogram.percentile(1.0) == histogram.maximum == values[-1]
    assert histogram.minimum == values[0]
    assert histogram.total == len(values)


def test_histogram_bucket_error_is_half_a_bucket_at_most() -> None:
    for value in (1.3e-6, 7.7e-5, 0.0123, 0.5, 3.0, 42.0):
        histogram = Histogram()
        histogram.add(value)
        histogram.add(value * 10)  # min/max clamping must not hide the bucket error
        assert histogram.percentile(0.5) == pytest.approx(value, rel=math.sqrt(RATIO) - 1 + 1e-9)


def test_histograms_merge_like_one_histogram_of_all_values_and_survive_pickling() -> None:
    rng = random.Random(7)
    parts = [Histogram() for _ in range(4)]
    whole = Histogram()
    for _ in range(10_000):
        value = rng.expovariate(500)
        rng.choice(parts).add(value)
        whole.add(value)
    merged = pickle.loads(pickle.dumps(Histogram.merged(parts)))
    assert merged.counts == whole.counts
    assert merged.total == whole.total and merged.maximum == whole.maximum
    assert merged.summary_ms() == whole.summary_ms()


def test_empty_histogram_has_no_percentiles() -> None:
    assert Histogram().percentile(0.5) is None
    assert Histogram().summary_ms() is None


# -- frames --------------------------------------------------------------------------------------


def test_heartbeat_frame_from_its_template_is_the_serialised_call() -> None:
    assert call_frame(17, "Heartbeat", {}) == orjson.dumps([2, "17", "Heartbeat", {}])
    frame = call_frame(3, "Authorize", {"idTag": "X"})
    assert orjson.loads(frame) == [2, "3", "Authorize", {"idTag": "X"}]


def test_a_callresult_for_the_call_is_the_result_with_its_payload() -> None:
    sent = call_frame(5, "Heartbeat", {})
    reply = judge_reply(b'[3,"5",{"currentTime":"x"}]', 5, sent, "ocpp")
    assert reply.kind is ReplyKind.RESULT and reply.payload == {"currentTime": "x"}


@pytest.mark.parametrize(
    ("raw", "kind", "detail"),
    [
        (b'[4,"5","FormatViolation","bad",{}]', ReplyKind.CALLERROR, "FormatViolation"),
        (b'[2,"s1","GetConfiguration",{}]', ReplyKind.SERVER_CALL, "GetConfiguration"),
        (b'[3,"4",{}]', ReplyKind.OTHER_ID, "4"),
        (b'[3,"5",[]]', ReplyKind.BAD, "callresult_shape"),
        (b'[3,"5",{},1]', ReplyKind.BAD, "callresult_shape"),
        (b"[3,5,{}]", ReplyKind.BAD, "not_ocppj"),
        (b'[5,"5",{}]', ReplyKind.BAD, "message_type"),
        (b'{"a":1}', ReplyKind.BAD, "not_ocppj"),
        (b"not json", ReplyKind.BAD, "not_json"),
        (b'[2,"5","Heartbeat",{}]', ReplyKind.SERVER_CALL, "Heartbeat"),  # an echo is no answer
    ],
)
def test_anything_but_a_callresult_for_the_call_is_told_apart(
    raw: bytes, kind: ReplyKind, detail: str
) -> None:
    reply = judge_reply(raw, 5, call_frame(5, "Heartbeat", {}), "ocpp")
    assert (reply.kind, reply.detail) == (kind, detail)


def test_an_echo_server_must_return_the_very_frame_sent() -> None:
    sent = call_frame(9, "Heartbeat", {})
    assert judge_reply(sent, 9, sent, "echo").kind is ReplyKind.RESULT
    assert judge_reply(sent.decode(), 9, sent, "echo").kind is ReplyKind.RESULT
    wrong = judge_reply(b'[3,"9",{}]', 9, sent, "echo")
    assert (wrong.kind, wrong.detail) == (ReplyKind.BAD, "echo_mismatch")


def test_a_server_call_is_answered_with_a_callerror() -> None:
    assert orjson.loads(not_implemented_frame("abc"))[:3] == [4, "abc", "NotImplemented"]


# -- payloads ------------------------------------------------------------------------------------


def drive(version: str, cycles: int, replies: bool) -> list[tuple[str, dict]]:
    """Every (action, payload) of `cycles` charging cycles, answered like a central system."""
    state = ChargePointState.of("BENCH000042", 42)
    sent = []
    transaction_ids = iter(range(100, 200))
    for _ in range(cycles):
        script = SESSIONS[version](state, 3)
        try:
            action, payload = next(script)
            while True:
                sent.append((action, payload))
                answer = None
                if replies and action == "StartTransaction":
                    answer = {"transactionId": next(transaction_ids), "idTagInfo": {}}
                elif replies:
                    answer = {}
                action, payload = script.send(answer)
        except StopIteration:
            pass
    return sent


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("replies", [True, False], ids=["ocpp-server", "echo-server"])
def test_every_session_message_is_valid_for_the_ocpp_librarys_schemas(
    version: str, replies: bool
) -> None:
    messages = drive(version, cycles=2, replies=replies)
    for action, payload in messages:
        get_validator(2, action, LIBRARY_VERSION[version]).validate(payload)
    assert get_validator(2, "Heartbeat", LIBRARY_VERSION[version]).is_valid({})


def test_the_16_session_is_boot_status_authorize_start_meter_values_stop() -> None:
    actions = [action for action, _ in drive("ocpp1.6", cycles=1, replies=True)]
    assert actions == [
        "BootNotification",
        "StatusNotification",
        "Authorize",
        "StartTransaction",
        *["MeterValues"] * 3,
        "StopTransaction",
    ]


def test_the_201_session_is_a_transaction_with_started_updated_and_ended_events() -> None:
    messages = drive("ocpp2.0.1", cycles=1, replies=True)
    actions = [action for action, _ in messages]
    assert actions[:3] == ["BootNotification", "StatusNotification", "Authorize"]
    events = [payload["eventType"] for action, payload in messages if action == "TransactionEvent"]
    assert events == ["Started", "Updated", "Updated", "Updated", "Ended"]
    assert "MeterValues" in actions
    sequence = [payload["seqNo"] for action, payload in messages if action == "TransactionEvent"]
    assert sequence == list(range(5))


def test_16_meter_values_carry_what_a_three_phase_charger_reports() -> None:
    messages = drive("ocpp1.6", cycles=1, replies=True)
    meter = [payload for action, payload in messages if action == "MeterValues"]
    assert {payload["transactionId"] for payload in meter} == {100}
    stop = next(payload for action, payload in messages if action == "StopTransaction")
    assert stop["transactionId"] == 100
    samples = meter[0]["meterValue"][0]["sampledValue"]
    measured = {(s["measurand"], s.get("phase")) for s in samples}
    assert {("Current.Import", p) for p in ("L1", "L2", "L3")} <= measured
    assert {("Voltage", p) for p in ("L1-N", "L2-N", "L3-N")} <= measured
    assert {("Energy.Active.Import.Register", None), ("Power.Active.Import", None)} <= measured
    assert ("SoC", None) in measured
    assert all(s["context"] == "Sample.Periodic" for s in samples)
    energies = [float(p["meterValue"][0]["sampledValue"][0]["value"]) for p in meter]
    assert energies == sorted(energies) and energies[0] < energies[-1]  # the register counts up


def test_boot_payloads_are_valid_and_the_16_transaction_id_is_a_required_reply_field() -> None:
    state = ChargePointState.of("STORM000001", 1)
    for version, boot in BOOTS.items():
        get_validator(2, "BootNotification", LIBRARY_VERSION[version]).validate(boot(state))
    assert REQUIRED_REPLY_FIELDS["ocpp1.6"] == {"StartTransaction": "transactionId"}


def test_timestamps_are_utc_date_times() -> None:
    parsed = datetime.strptime(timestamp(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((parsed - datetime.now(UTC)).total_seconds()) < 2


# -- error accounting and figures ----------------------------------------------------------------


def test_only_calls_answered_inside_the_window_are_measured() -> None:
    tally = Tally(window=Window(100.0, 102.0))
    tally.record_call("Heartbeat", 0.001, 99.5)  # warm-up
    tally.record_call("Heartbeat", 0.002, 100.5)
    tally.record_call("Heartbeat", 0.003, 101.9)
    tally.record_call("Heartbeat", 0.004, 102.1)  # after the window
    assert (tally.calls, tally.calls_total) == (2, 4)
    assert tally.latency.total == 2 and tally.by_action == {"Heartbeat": 2}
    assert sorted(tally.per_second) == [-1, 0, 1, 2]
    spec = LoadSpec(url="ws://h/", duration=2.0, warmup=0.5)
    rows = per_second(spec, tally)
    assert [(row[0], row[1], row[4]) for row in rows] == [(-1, 1, 0.5), (0, 1, 1.0), (1, 1, 1.0)]


def test_tallies_merge_counts_and_keep_one_example_per_error_kind() -> None:
    first, second = Tally(), Tally()
    for _ in range(3):
        first.error("callerror:FormatViolation", "CP1 BootNotification")
    second.error("callerror:FormatViolation", "CP2 BootNotification")
    second.error("timeout:Heartbeat", "CP3")
    merged = Tally.merged([first, second])
    assert merged.errors == {"callerror:FormatViolation": 4, "timeout:Heartbeat": 1}
    assert merged.examples == [
        "callerror:FormatViolation: CP1 BootNotification",
        "timeout:Heartbeat: CP3",
    ]


def invalid_status(status: int, **headers: str) -> InvalidStatus:
    return InvalidStatus(Response(status, "x", Headers(**headers), b""))


def test_a_503_with_retry_after_and_dropped_connections_are_refusals_to_retry() -> None:
    assert refusal_of(invalid_status(503, **{"Retry-After": "12"})) == ("http_503", 12.0)
    assert refusal_of(invalid_status(503)) == ("http_503", None)
    assert refusal_of(ConnectionRefusedError()) == ("refused", None)
    assert refusal_of(ConnectionResetError()) == ("reset", None)
    assert refusal_of(invalid_status(401)) is None  # bad credentials are an error
    assert refusal_of(TimeoutError()) is None


def test_failed_connections_are_named_by_status_or_exception() -> None:
    assert connect_error_kind(invalid_status(401)) == "http_401"
    assert connect_error_kind(TimeoutError()) == "timeout"
    assert connect_error_kind(ConnectionRefusedError()) == "ConnectionRefusedError"


def test_retry_waits_follow_retry_after_with_bounded_jitter() -> None:
    rng = random.Random(1)
    waits = [retry_wait(10.0, 0, 30.0, rng) for _ in range(200)]
    assert min(waits) >= 10.0 and max(waits) <= 12.0
    assert retry_wait(100.0, 0, 30.0, rng) == 30.0
    backoff = [retry_wait(None, attempt, 5.0, rng) for attempt in range(20)]
    assert 0.1 <= backoff[0] <= 0.25 and max(backoff) <= 5.0


# -- the spec and the command line ---------------------------------------------------------------


def test_a_spec_round_trips_through_its_equivalent_command_line() -> None:
    spec = LoadSpec(
        url="wss://127.0.0.1:9443/ocpp/",
        scenario="storm",
        connections=500,
        processes=2,
        server_pids=[10, 11],
        heartbeat_check=True,
        rate=250.0,
        subprotocol="ocpp2.0.1",
    )
    args = spec.to_args()
    assert LoadSpec(**vars(parser().parse_args(args))) == spec
    assert spec.command_line().startswith("python -m bench.load --url wss://127.0.0.1:9443/ocpp/")


def test_the_password_never_reaches_the_recorded_command() -> None:
    spec = LoadSpec(url="ws://h/", password="Secret-Passw0rd-0123")
    assert "Secret" not in spec.command_line()
    command = masked_command(["--url", "ws://h/", "--password", "Secret-Passw0rd-0123"])
    assert "Secret" not in command and "--password '***'" in command


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "http://h/"}, "url"),
        ({"processes": 3, "connections": 2}, "3 processes"),
        ({"subprotocol": "ocpp2.1"}, "subprotocol"),
        ({"ca_file": "x.pem"}, "wss"),
        ({"rate": 0.0}, "rate"),
    ],
)
def test_a_spec_that_makes_no_sense_is_refused_naming_the_field(changes, message) -> None:
    spec = LoadSpec(**{"url": "ws://127.0.0.1:1/ocpp/", **changes})
    with pytest.raises(ValueError, match=message):
        spec.check()


# -- /proc ---------------------------------------------------------------------------------------


def test_stat_lines_parse_even_with_parentheses_in_the_command_name() -> None:
    line = "4242 (we(ird) name)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 9 0 0"
    parsed = parse_stat(line)
    assert (parsed.pid, parsed.ppid, parsed.cpu_ticks) == (4242, 17, 325)


def test_the_process_tree_of_this_test_holds_its_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert {os.getpid(), child.pid} <= process_tree([os.getpid()])
        assert process_tree([child.pid]) == {child.pid}
        before = sample_tree([os.getpid()])
        assert before.rss_kib > 10_000 and child.pid in before.pids
        deadline = time.process_time() + 0.15
        while time.process_time() < deadline:  # burn some CPU
            pass
        after = sample_tree([os.getpid()])
        assert after.cpu_seconds - before.cpu_seconds >= 0.1
    finally:
        child.kill()
        child.wait()
    assert process_tree([child.pid]) == set()


# -- fleet provisioning --------------------------------------------------------------------------

PASSWORD = "Bench-Passw0rd-0123456789"


def test_records_share_one_hash_and_load_in_the_gateways_store(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    identities = [f"BENCH{i:06d}" for i in range(3000)]
    started = time.perf_counter()
    write_records(path, identities, 2, PASSWORD)
    assert time.perf_counter() - started < 5
    records = JsonFileRecordStore(path).all()
    assert [r.identity for r in records] == identities
    assert {r.security_profile for r in records} == {2}
    assert len({r.password_hash for r in records}) == 1
    assert verify_password(records[0].password_hash, PASSWORD.encode())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_of_several_profiles_merge_into_one_file(tmp_path: Path) -> None:
    path = tmp_path / "records.json"
    write_records(path, ["WS1", "WS2"], 0, None)
    write_records(path, ["TLS1"], 2, PASSWORD, merge=True)
    write_records(path, ["MTLS1"], 3, None, merge=True)
    store = JsonFileRecordStore(path)
    profiles = {r.identity: r.security_profile for r in store.all()}
    assert profiles == {"WS1": 0, "WS2": 0, "TLS1": 2, "MTLS1": 3}
    assert store.get("WS1").password_hash is None
    assert store.get("MTLS1").password_hash is None


def test_a_password_profile_without_a_password_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a password"):
        records_for(["CP1"], 1, None)


def test_client_certificates_pass_the_gateways_profile3_check(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    ensure_dev_certificates(certs, "localhost")
    out = tmp_path / "clients"
    client_certificates(certs / "ca", ["BENCH000001", "BENCH000002"], out)
    store = load_ca_store(certs)
    for identity in ("BENCH000001", "BENCH000002"):
        chain = x509.load_pem_x509_certificates((out / f"{identity}.pem").read_bytes())
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity
        ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
        verdict = check_client_certificate(ders, store, datetime.now(UTC), identity, None)
        assert isinstance(verdict, CertAccepted), verdict
        key_path = out / f"{identity}.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert key.public_key() == leaf.public_key()
        assert key.curve.name == "secp256r1"
        remaining = leaf.not_valid_after_utc - datetime.now(UTC)
        assert remaining.days > 30  # beyond the gateway's renewal window


def test_connections_spread_over_source_addresses_by_charge_point_number():
    """Beyond one ephemeral port range (~28k), charge point n binds 127.0.0.(1 + n % N)."""
    target = Target(LoadSpec(url="ws://127.0.0.1:1/ocpp/", source_addresses=3))
    addresses = [target.options(f"CP{n}", n, 5.0)["local_addr"] for n in (0, 1, 2, 3, 7)]
    assert addresses == [(f"127.0.0.{last}", 0) for last in (1, 2, 3, 1, 2)]
    single = Target(LoadSpec(url="ws://127.0.0.1:1/ocpp/"))
    assert "local_addr" not in single.options("CP5", 5, 5.0)
