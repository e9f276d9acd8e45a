"""Seconds until certificates expire, computed when Prometheus scrapes (never per message).

Covered: the wss server certificates (`server/rsa.pem`, `server/ecdsa.pem`, the leaf), every trust
anchor and intermediate of the loaded CA store, and the charge point certificate that expires
first among those the gateway's CA issued (`ca/issued.json`): per identity with an enabled record
the newest valid certificate, and of those the soonest. Files are re-read only when they change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.x509.oid import NameOID
from prometheus_client.core import GaugeMetricFamily

from security.cadb import CaDatabase, IssuedCertificate
from security.castore import SERVER_KINDS, CaStore

from .logs import event

log = logging.getLogger("gateway.metrics")
METRIC = "ocpp_gateway_certificate_expiry_seconds"
HELP = (
    "Seconds until the certificate expires (negative: expired). kind: server, trust_anchor, "
    "intermediate, charge_point (the soonest of the charge point certificates the CA issued)"
)


class Expiry(NamedTuple):
    """One certificate's expiry: kind, name (key type, CN or identity), serial (hex), when."""

    kind: str
    name: str
    serial: str
    not_after: float  # POSIX seconds


def certificate_expiry(kind: str, name: str, cert: x509.Certificate) -> Expiry:
    """The expiry of `cert`."""
    return Expiry(kind, name, f"{cert.serial_number:x}", cert.not_valid_after_utc.timestamp())


def common_name(cert: x509.Certificate) -> str:
    """The subject's CN, or the whole subject when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def store_expiries(store: CaStore) -> list[Expiry]:
    """Trust anchors and intermediates of the CA store."""
    return [certificate_expiry("trust_anchor", common_name(c), c) for c in store.anchors] + [
        certificate_expiry("intermediate", common_name(c), c) for c in store.intermediates
    ]


def newest_per_identity(entries: list[IssuedCertificate]) -> list[Expiry]:
    """Per identity the valid charge point certificate that expires last, soonest first."""
    newest: dict[str, Expiry] = {}
    for entry in entries:
        if entry.kind != "charge_point" or entry.status != "valid" or not entry.identity:
            continue
        moment = datetime.fromisoformat(entry.not_after).timestamp()
        known = newest.get(entry.identity)
        if known is None or moment > known.not_after:
            newest[entry.identity] = Expiry("charge_point", entry.identity, entry.serial, moment)
    return sorted(newest.values(), key=lambda e: e.not_after)


def soonest_charge_point(candidates: list[Expiry], enabled: Callable[[str], bool]) -> Expiry | None:
    """The first of `candidates` (soonest first) whose identity has an enabled record."""
    return next((e for e in candidates if enabled(e.name)), None)


class _FileCache:
    """A value derived from one file, recomputed only when the file's stat changes."""

    def __init__(self, path: Path, derive: Callable[[Path], object]) -> None:
        self._path, self._derive = path, derive
        self._stamp: tuple[int, int] | None = None
        self._value: object = None

    def get(self) -> object:
        try:
            stat = self._path.stat()
        except OSError:
            self._stamp, self._value = None, None
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                self._value = self._derive(self._path)
            except Exception as exc:  # a broken file must not break the scrape
                event(
                    log,
                    "certificate_expiry_unreadable",
                    logging.WARNING,
                    path=str(self._path),
                    error=str(exc)[:200],
                )
                self._value = None
            self._stamp = stamp
        return self._value


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


class CertificateExpiry:
    """Prometheus collector of `ocpp_gateway_certificate_expiry_seconds`."""

    def __init__(
        self,
        certs_dir: Path,
        store: Callable[[], CaStore],
        enabled: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._enabled = enabled
        self._clock = clock
        server = certs_dir / "server"
        self._servers = {kind: _FileCache(server / f"{kind}.pem", _leaf) for kind in SERVER_KINDS}
        database = CaDatabase.of_store(certs_dir)
        self._issued = _FileCache(database.path, lambda _: newest_per_identity(database.all()))

    def expiries(self) -> list[Expiry]:
        """Every covered certificate's expiry."""
        found = []
        for kind, cache in self._servers.items():
            cert = cache.get()
            if isinstance(cert, x509.Certificate):
                found.append(certificate_expiry("server", kind, cert))
        found.extend(store_expiries(self._store()))
        candidates = self._issued.get()
        if isinstance(candidates, list):
            soonest = soonest_charge_point(candidates, self._enabled)
            if soonest is not None:
                found.append(soonest)
        return found

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(METRIC, HELP, labels=["kind", "name", "serial"])
        now = self._clock()
        seen = set()
        for expiry in self.expiries():
            labels = (expiry.kind, expiry.name, expiry.serial)
            if labels not in seen:  # e.g. the same anchor in two files
                seen.add(labels)
                family.add_metric(list(labels), round(expiry.not_after - now, 3))
        yield family
