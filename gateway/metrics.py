"""Prometheus metrics of one worker, and how several workers' metrics become one scrape.

Hot path: per message one dict lookup (a `LabelCache` of label children, made on first use) and
one `inc()`; labels are never built per message. Label values are bounded: actions are the
version's known actions (an unknown or refused one counts as ""), error codes the OCPP ones (else
"other"), refusal reasons the gateway's own codes.

With several workers (`server.workers > 1`) prometheus-client's multiprocess mode is used: the
supervisor points `PROMETHEUS_MULTIPROC_DIR` at a fresh directory before it spawns the workers
(or wipes the one the operator gave), each worker writes its values there, the supervisor marks
dead workers so their live gauges vanish, and a scrape on any worker merges every file. Gauges
that are facts of a worker are sampled every `SAMPLE_SECONDS` (and right before a scrape).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from .logs import event
from .ocppj.errors import OCPP2_ERROR_CODES, OCPP16_ERROR_CODES
from .readiness import evaluate, facts_of

if TYPE_CHECKING:
    from .runtime import Gateway

log = logging.getLogger("gateway.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "ocpp-gateway-metrics-"  # + the supervisor's pid: removed when that process is gone
SAMPLE_SECONDS = 2.0
KNOWN_ERROR_CODES = frozenset(OCPP16_ERROR_CODES.values()) | frozenset(OCPP2_ERROR_CODES.values())
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

disable_created_metrics()  # no *_created series: the same output with one worker or several


def _gauge(registry: CollectorRegistry, name: str, documentation: str, mode: str) -> Gauge:
    """A gauge that is correct with several workers: `mode` says how workers' values combine
    (livesum, livemax, livemin: only live workers count)."""
    return Gauge(name, documentation, registry=registry, multiprocess_mode=mode)


class LabelCache(dict[str, Any]):
    """Children of a labelled metric by the value of its first label, the others fixed."""

    __slots__ = ("_fixed", "_metric")

    def __init__(self, metric: Any, *fixed: str) -> None:
        super().__init__()
        self._metric = metric
        self._fixed = fixed

    def __missing__(self, value: str) -> Any:
        child = self[value] = self._metric.labels(value, *self._fixed)
        return child


class GatewayMetrics:
    """Every metric of one gateway, in its own registry (multiprocess: also in the shared dir)."""

    def __init__(self, redis: bool = False) -> None:
        self.registry = registry = CollectorRegistry()
        self.connections = Gauge(
            "ocpp_gateway_connections",
            "Charge point WebSocket sessions open, by OCPP version and security profile",
            ["version", "profile"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        handshakes_accepted = Counter(
            "ocpp_gateway_handshakes_accepted",
            "WebSocket upgrades accepted, by negotiated OCPP version",
            ["version"],
            registry=registry,
        )
        self.handshakes_accepted = LabelCache(handshakes_accepted)
        self._handshakes_refused = Counter(
            "ocpp_gateway_handshakes_refused",
            "Connections refused before a session started, by reason; layer tls: the TLS "
            "handshake failed, http: the WebSocket upgrade was refused",
            ["reason", "layer"],
            registry=registry,
        )
        messages_in = Counter(
            "ocpp_gateway_messages_in",
            "OCPP messages received from charge points, by action and type (call, result, "
            "error, send; refused or dropped with action '')",
            ["action", "type"],
            registry=registry,
        )
        self.in_call = LabelCache(messages_in, "call")
        self.in_result = LabelCache(messages_in, "result")
        self.in_error = LabelCache(messages_in, "error")
        self.in_send = LabelCache(messages_in, "send")
        self.in_refused = messages_in.labels("", "refused")
        self.in_dropped = messages_in.labels("", "dropped")
        messages_out = Counter(
            "ocpp_gateway_messages_out",
            "OCPP messages sent to charge points, by action and type (call, result, error; "
            "errors answering refused messages with action '')",
            ["action", "type"],
            registry=registry,
        )
        self.out_call = LabelCache(messages_out, "call")
        self.out_result = LabelCache(messages_out, "result")
        self.out_error = LabelCache(messages_out, "error")
        self.callerrors_sent = LabelCache(
            Counter(
                "ocpp_gateway_callerrors_sent",
                "CALLERRORs (and 2.1 CALLRESULTERRORs) sent to charge points, by error code",
                ["code"],
                registry=registry,
            )
        )
        self._callerrors_received = LabelCache(
            Counter(
                "ocpp_gateway_callerrors_received",
                "CALLERRORs charge points answered to the gateway's CALLs, by error code "
                "(codes OCPP does not define count as 'other')",
                ["code"],
                registry=registry,
            )
        )
        self.call_seconds = LabelCache(
            Histogram(
                "ocpp_gateway_call_duration_seconds",
                "Round trip of the gateway's CALLs to charge points (sent to answered), by action",
                ["action"],
                registry=registry,
                buckets=CALL_BUCKETS,
            )
        )
        self._calls_failed = Counter(
            "ocpp_gateway_calls_failed",
            "Gateway CALLs to charge points without an answer, by action and reason "
            "(timeout, closed, offline, invalid)",
            ["action", "reason"],
            registry=registry,
        )
        self.call_queue_depth = _gauge(
            registry,
            "ocpp_gateway_call_queue_depth",
            "Gateway CALLs waiting for a charge point (in the queue or outstanding), all charge "
            "points together",
            "livesum",
        )
        self.call_queue_longest = _gauge(
            registry,
            "ocpp_gateway_call_queue_longest",
            "Gateway CALLs waiting for the charge point with the most of them",
            "livemax",
        )
        self.ui_clients = _gauge(
            registry,
            "ocpp_gateway_ui_clients",
            "Authenticated UI API clients connected",
            "livesum",
        )
        self.ui_queue_depth = _gauge(
            registry,
            "ocpp_gateway_ui_event_queue_depth",
            "Events waiting to be sent to UI clients, all clients together",
            "livesum",
        )
        self.ui_queue_fullest = _gauge(
            registry,
            "ocpp_gateway_ui_event_queue_fullest",
            "Events waiting for the slowest UI client (drops start at ui.queue_size)",
            "livemax",
        )
        self.ready = _gauge(
            registry,
            "ocpp_gateway_ready",
            "1 when every worker is ready (/readyz), else 0",
            "livemin",
        )
        self.redis_up: Gauge | None = None
        self.cluster_queue_depth: Gauge | None = None
        if redis:
            self.redis_up = _gauge(
                registry,
                "ocpp_gateway_redis_up",
                "1 when every worker's last Redis operation or health check succeeded, else 0",
                "livemin",
            )
            self.cluster_queue_depth = _gauge(
                registry,
                "ocpp_gateway_cluster_event_queue_depth",
                "Live events waiting to be published to the other nodes through Redis",
                "livesum",
            )
        self._admission_metrics(registry)
        self._sample_failing = False
        self._connection_children: dict[tuple[str, int], Any] = {}
        self._refused_children: dict[tuple[str, str], Any] = {}

    def _admission_metrics(self, registry: CollectorRegistry) -> None:
        """What admission control (gateway/capacity.py) counts, sampled."""
        self.tls_handshakes = _gauge(
            registry,
            "ocpp_gateway_tls_handshakes_in_progress",
            "TLS handshakes running now (limited by limits.max_tls_handshakes per worker)",
            "livesum",
        )
        self.tls_handshakes_peak = _gauge(
            registry,
            "ocpp_gateway_tls_handshakes_peak",
            "The most TLS handshakes one worker ran at once since it started",
            "livemax",
        )
        self.accept_pauses = Counter(
            "ocpp_gateway_tls_accept_pauses",
            "Times a worker stopped accepting wss connections because every TLS handshake slot "
            "was taken",
            registry=registry,
        )
        self.admitted = _gauge(
            registry,
            "ocpp_gateway_admission_connections",
            "Charge point connections counted against limits.max_connections (upgrading or in "
            "session)",
            "livesum",
        )
        self.admitted_limit = _gauge(
            registry,
            "ocpp_gateway_admission_connections_limit",
            "limits.max_connections summed over the workers (0: unlimited)",
            "livesum",
        )
        boots = Counter(
            "ocpp_gateway_boot_pacing",
            "BootNotifications the embedded central system answered, by answer (accepted, or "
            "pending because more than embedded.boot_pending_above came in a second)",
            ["answer"],
            registry=registry,
        )
        self._boots = {"accepted": boots.labels("accepted"), "pending": boots.labels("pending")}
        self._seen: dict[str, int] = {}

    def _sample_admission(self, admission: Any) -> None:
        if admission is None:
            return
        self.tls_handshakes.set(getattr(admission, "handshakes", 0))
        self.tls_handshakes_peak.set(getattr(admission, "handshakes_peak", 0))
        self.admitted.set(getattr(admission, "connections", 0))
        settings = getattr(admission, "settings", None)
        self.admitted_limit.set(getattr(settings, "max_connections", 0))
        counters = (
            ("accept_pauses", self.accept_pauses),
            ("boots_accepted", self._boots["accepted"]),
            ("boots_pending", self._boots["pending"]),
        )
        for name, counter in counters:  # counts the worker keeps: counters grow by the change
            now = getattr(admission, name, 0)
            grown = now - self._seen.get(name, 0)
            if grown > 0:
                counter.inc(grown)
            self._seen[name] = now

    # -- recording (all cheap: cached children) ----------------------------------------------------

    def connection(self, version: str, profile: int) -> Any:
        """The gauge child of sessions of `version` and security `profile` (inc/dec it)."""
        key = (version, profile)
        child = self._connection_children.get(key)
        if child is None:
            child = self._connection_children[key] = self.connections.labels(version, profile)
        return child

    def refused(self, reason: str, layer: str) -> None:
        """A connection was refused: `reason` is the gateway's code, `layer` tls or http."""
        key = (reason, layer)
        child = self._refused_children.get(key)
        if child is None:
            child = self._refused_children[key] = self._handshakes_refused.labels(reason, layer)
        child.inc()

    def callerror_received(self, code: str) -> None:
        """A charge point answered a gateway CALL with CALLERROR `code`."""
        self._callerrors_received[code if code in KNOWN_ERROR_CODES else "other"].inc()

    def call_failed(self, action: str, reason: str) -> None:
        """A gateway CALL got no answer (`action` must be a known action or 'unknown')."""
        self._calls_failed.labels(action, reason).inc()

    def set_redis_up(self, healthy: bool) -> None:
        if self.redis_up is not None:
            self.redis_up.set(1 if healthy else 0)

    # -- sampled gauges ----------------------------------------------------------------------------

    def sample(self, gateway: Gateway) -> None:
        """Set the gauges that are facts of this worker (queues, clients, readiness).

        Never raises: it runs in the sampler, in every scrape and when the worker starts serving;
        a failure keeps the last values and is logged once, until sampling works again.
        """
        try:
            self._sample(gateway)
        except Exception:
            if not self._sample_failing:
                log.exception("metrics_sample_failed")
            self._sample_failing = True
            return
        if self._sample_failing:
            event(log, "metrics_sample_recovered")
        self._sample_failing = False

    def _sample(self, gateway: Gateway) -> None:
        queued = [getattr(s, "queued_calls", 0) for s in gateway.registry.local_sessions()]
        self.call_queue_depth.set(sum(queued))
        self.call_queue_longest.set(max(queued, default=0))
        clients = [getattr(c, "queued_events", 0) for c in tuple(gateway.ui_connections)]
        self.ui_clients.set(len(clients))
        self.ui_queue_depth.set(sum(clients))
        self.ui_queue_fullest.set(max(clients, default=0))
        cluster_events = gateway.router.cluster_events
        if self.cluster_queue_depth is not None and cluster_events is not None:
            self.cluster_queue_depth.set(cluster_events.pending)
        self.ready.set(1 if evaluate(facts_of(gateway)).ready else 0)
        self._sample_admission(getattr(gateway, "admission", None))

    async def sample_forever(self, gateway: Gateway) -> None:
        """`sample` every `SAMPLE_SECONDS` until cancelled."""
        while True:
            self.sample(gateway)
            await asyncio.sleep(SAMPLE_SECONDS)


class _Sources:
    """One collector made of several (what `generate_latest` reads)."""

    def __init__(self, sources: Iterable[Any]) -> None:
        self._sources = tuple(sources)

    def collect(self) -> Iterator[Any]:
        for source in self._sources:
            yield from source.collect()


def multiprocess() -> bool:
    """True when this process writes its metric values to PROMETHEUS_MULTIPROC_DIR."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class WorkerFiles:
    """Every worker's values in a multiprocess dir, merged as `MultiProcessCollector` merges them,
    except the files of a worker that is starting: prometheus-client creates a value file empty and
    sizes it a moment later, and reads an empty one as corrupt (a scrape while a worker is
    respawned failed with a 500). A file is never empty again once sized, so skipping those is
    exact: the starting worker has no values yet."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    def collect(self) -> Iterable[Any]:
        return MultiProcessCollector.merge(self._settled_files(), accumulate=True)

    def _settled_files(self) -> list[str]:
        files = []
        for path in self._path.glob("*.db"):
            try:
                if path.stat().st_size:
                    files.append(str(path))
            except FileNotFoundError:  # a dead worker's live gauges, just removed
                continue
        return files


def exposition(metrics: GatewayMetrics, *extra: Any) -> bytes:
    """The Prometheus text format of every worker's metrics and of the `extra` collectors."""
    own: Any = WorkerFiles(os.environ[MULTIPROC_ENV]) if multiprocess() else metrics.registry
    return generate_latest(_Sources((own, *extra)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class MetricsDir:
    """The multiprocess directory of a supervisor and its workers."""

    path: Path
    owned: bool  # made by us (removed at exit), else the operator's

    def mark_dead(self, pid: int | None) -> None:
        """Forget the live gauges of a worker that exited."""
        if pid is not None:
            mark_process_dead(pid, str(self.path))

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


def prepare_metrics_dir(workers: int, enabled: bool) -> MetricsDir | None:
    """Before the workers start: the operator's PROMETHEUS_MULTIPROC_DIR wiped, or (several
    workers) a fresh temporary one exported to them; None when one process needs none."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # values of an earlier run
            stale.unlink(missing_ok=True)
        return MetricsDir(path, owned=False)
    if workers == 1 or not enabled:
        return None
    _remove_orphaned_dirs()
    path = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))
    os.environ[MULTIPROC_ENV] = str(path)  # inherited by the spawned workers
    return MetricsDir(path, owned=True)


def _remove_orphaned_dirs() -> None:
    """Remove the temporary dirs of supervisors that were killed (SIGKILL, OOM) before cleanup."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*-*"):
        pid = path.name[len(DIR_PREFIX) :].partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:  # alive, someone else's
            continue
