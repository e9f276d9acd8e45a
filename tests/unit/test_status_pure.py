"""Pure parts of metrics and health: readiness, certificate expiry, label caches, metrics dir."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.cert_expiry import (
    CertificateExpiry,
    newest_per_identity,
    soonest_charge_point,
    store_expiries,
)
from gateway.metrics import (
    DIR_PREFIX,
    MULTIPROC_ENV,
    GatewayMetrics,
    WorkerFiles,
    exposition,
    prepare_metrics_dir,
)
from gateway.readiness import ReadinessFacts, evaluate
from security.cadb import IssuedCertificate
from security.castore import load_ca_store
from security.devcerts import ensure_dev_certificates

READY = ReadinessFacts(
    listening=True,
    ca_store_loaded=True,
    redis_required=True,
    redis_reachable=True,
    draining=False,
)


# -- readiness -------------------------------------------------------------------------------------


def test_ready_when_listening_with_ca_store_and_redis_and_not_draining():
    assert evaluate(READY).ready
    assert evaluate(READY).body() == {"ready": True, "not_ready": {}}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"listening": False}, "listening"),
        ({"ca_store_loaded": False}, "ca_store"),
        ({"redis_reachable": False}, "redis"),
        ({"draining": True}, "draining"),
    ],
)
def test_each_failed_check_makes_it_not_ready_and_is_named(change, named):
    facts = ReadinessFacts(**{**_fields(READY), **change})
    verdict = evaluate(facts)
    assert not verdict.ready
    assert list(verdict.body()["not_ready"]) == [named]


def test_unreachable_redis_does_not_matter_when_redis_is_not_configured():
    facts = ReadinessFacts(**{**_fields(READY), "redis_required": False, "redis_reachable": False})
    assert evaluate(facts).ready


def test_several_failures_are_all_named():
    facts = ReadinessFacts(**{**_fields(READY), "redis_reachable": False, "draining": True})
    assert list(evaluate(facts).body()["not_ready"]) == ["redis", "draining"]


def _fields(facts: ReadinessFacts) -> dict[str, bool]:
    return {name: getattr(facts, name) for name in facts.__slots__}


# -- certificate expiry ----------------------------------------------------------------------------


def _entry(identity: str, days: float, serial: str, **changes: str) -> IssuedCertificate:
    moment = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=days)
    fields = {
        "serial": serial,
        "identity": identity,
        "kind": "charge_point",
        "subject": f"CN={identity}",
        "issuer": "CN=issuing",
        "issuer_key_id": None,
        "not_before": "2029-01-01T00:00:00+00:00",
        "not_after": moment.isoformat(),
        "sha256": serial,
        **changes,
    }
    return IssuedCertificate(**fields)


def test_a_renewed_charge_point_counts_with_its_newest_certificate():
    entries = [_entry("CP1", 5, "a1"), _entry("CP1", 300, "a2"), _entry("CP2", 50, "b1")]
    ordered = newest_per_identity(entries)
    assert [(e.name, e.serial) for e in ordered] == [("CP2", "b1"), ("CP1", "a2")]


def test_revoked_and_server_certificates_are_not_charge_point_candidates():
    entries = [
        _entry("CP1", 1, "r1", status="revoked"),
        _entry("gw", 2, "s1", kind="server"),
        _entry("CP1", 90, "ok"),
    ]
    assert [e.serial for e in newest_per_identity(entries)] == ["ok"]


def test_soonest_charge_point_skips_identities_without_an_enabled_record():
    ordered = newest_per_identity([_entry("GONE", 1, "g"), _entry("CP2", 9, "c")])
    assert soonest_charge_point(ordered, lambda identity: identity != "GONE").name == "CP2"
    assert soonest_charge_point(ordered, lambda identity: False) is None


def test_collector_reports_server_and_ca_certificates_in_seconds(tmp_path):
    ensure_dev_certificates(tmp_path, "localhost")
    store = load_ca_store(tmp_path)
    now = datetime.now(UTC).timestamp()
    collector = CertificateExpiry(tmp_path, lambda: store, lambda identity: True, lambda: now)
    samples = {
        (s.labels["kind"], s.labels["name"]): s.value
        for family in collector.collect()
        for s in family.samples
    }
    assert set(samples) >= {("server", "rsa"), ("server", "ecdsa")}
    assert {kind for kind, _ in samples} == {"server", "trust_anchor", "intermediate"}
    for (kind, name), seconds in samples.items():
        assert seconds > 300 * 86400, (kind, name)
    assert len(store_expiries(store)) == len(store.anchors) + len(store.intermediates)


# -- metrics ---------------------------------------------------------------------------------------


def _samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition(metrics).decode())
        for s in family.samples
    }


def test_label_children_are_made_once_and_reused():
    metrics = GatewayMetrics()
    first = metrics.in_call["Heartbeat"]
    assert metrics.in_call["Heartbeat"] is first
    first.inc()
    metrics.in_call["Heartbeat"].inc()
    key = ("ocpp_gateway_messages_in_total", frozenset({("action", "Heartbeat"), ("type", "call")}))
    assert _samples(metrics)[key] == 2


def test_error_codes_ocpp_does_not_define_are_counted_as_other():
    metrics = GatewayMetrics()
    for code in ("NotSupported", "x" * 500, "Banana"):
        metrics.callerror_received(code)
    samples = _samples(metrics)
    name = "ocpp_gateway_callerrors_received_total"
    assert samples[name, frozenset({("code", "NotSupported")})] == 1
    assert samples[name, frozenset({("code", "other")})] == 2


def test_redis_gauge_exists_only_when_redis_is_configured():
    assert ("ocpp_gateway_redis_up", frozenset()) not in _samples(GatewayMetrics())
    with_redis = GatewayMetrics(redis=True)
    with_redis.set_redis_up(False)
    assert _samples(with_redis)["ocpp_gateway_redis_up", frozenset()] == 0


@pytest.fixture
def no_multiproc_env(monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, "placeholder")
    monkeypatch.delenv(MULTIPROC_ENV)  # restored to "absent" after the test


def test_one_worker_needs_no_metrics_dir(no_multiproc_env):
    assert prepare_metrics_dir(workers=1, enabled=True) is None
    assert MULTIPROC_ENV not in os.environ


def test_several_workers_get_a_fresh_dir_exported_to_them(no_multiproc_env):
    made = prepare_metrics_dir(workers=3, enabled=True)
    assert made is not None and made.owned and made.path.is_dir()
    assert os.environ[MULTIPROC_ENV] == str(made.path)
    made.close()
    assert not made.path.exists()


def test_metrics_off_needs_no_dir(no_multiproc_env):
    assert prepare_metrics_dir(workers=3, enabled=False) is None


def test_an_operator_given_dir_is_wiped_and_kept(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    given = prepare_metrics_dir(workers=1, enabled=True)
    assert given is not None and not given.owned
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    given.close()
    assert tmp_path.is_dir()


def test_dirs_of_killed_supervisors_are_removed_but_not_live_ones(
    no_multiproc_env, monkeypatch, tmp_path
):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead, live = tmp_path / f"{DIR_PREFIX}999999999-abc", tmp_path / f"{DIR_PREFIX}1-abc"
    dead.mkdir()
    live.mkdir()  # pid 1 is alive
    made = prepare_metrics_dir(workers=2, enabled=True)
    assert made is not None and made.path.parent == tmp_path
    assert made.path.name.startswith(f"{DIR_PREFIX}{os.getpid()}-")
    assert not dead.exists() and live.exists()
    made.close()


WORKER = """
from prometheus_client import Counter, Gauge
Counter("demo_calls", "calls").inc(3)
Gauge("demo_open", "open", multiprocess_mode="livesum").set(2)
"""


def test_a_starting_workers_empty_value_file_does_not_break_the_scrape(tmp_path):
    """prometheus-client creates a worker's file empty and sizes it a moment later; its own
    collector reads such a file as corrupt (struct.error), which made /metrics answer 500 while a
    killed worker was respawned."""
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path)}
    subprocess.run([sys.executable, "-c", WORKER], env=env, check=True, timeout=30)
    (tmp_path / "counter_424242.db").touch()  # a worker between open() and truncate()
    (tmp_path / "gauge_livesum_424242.db").touch()
    samples = {
        (s.name, s.labels.get("pid")): s.value
        for family in WorkerFiles(tmp_path).collect()
        for s in family.samples
    }
    assert samples == {("demo_calls_total", None): 3.0, ("demo_open", None): 2.0}
