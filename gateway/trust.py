"""The trust material of one worker: CA store, server credentials and TLS context, hot-reloaded.

`reload_if_changed()` is cheap when nothing changed (a stat of the store's files) and atomic when
something did: a store with a broken file changes nothing and says which file and why.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from security.castore import CaStore, CaStoreError, load_ca_store, load_server_credentials
from security.tls import server_context

from .logs import event

log = logging.getLogger("gateway.trust")
WATCHED = ("trust", "intermediate", "crl", "server")
# What the TLS context is built from: a CRL-only change keeps the context (and its session cache;
# resumed sessions are re-checked by the application against the new CRL).
TLS_MATERIAL = ("trust", "intermediate", "server")
RELOAD_TRIGGER = ".reload"  # `ocpp-gateway certs reload` touches it


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed."""

    store_changed: bool
    context_changed: bool


def _stamp(certs_dir: Path, folders: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    entries = []
    for folder in folders:
        directory = certs_dir / folder
        if directory.is_dir():
            for path in sorted(directory.iterdir()):
                if path.is_file():
                    stat = path.stat()
                    entries.append((str(path), stat.st_mtime_ns, stat.st_size))
    trigger = certs_dir / RELOAD_TRIGGER
    if trigger.is_file():
        entries.append((str(trigger), trigger.stat().st_mtime_ns, 0))
    return tuple(entries)


class TrustState:
    """The current CA store and TLS server context of this worker."""

    def __init__(self, certs_dir: Path, with_tls: bool) -> None:
        self.certs_dir = certs_dir
        self._with_tls = with_tls
        self._stamp = _stamp(certs_dir, WATCHED)
        self._tls_stamp = _stamp(certs_dir, TLS_MATERIAL)
        self.store: CaStore = load_ca_store(certs_dir)
        self.context: ssl.SSLContext | None = self._context(self.store) if with_tls else None

    def _context(self, store: CaStore) -> ssl.SSLContext:
        credentials = load_server_credentials(self.certs_dir)
        if not credentials:
            raise CaStoreError(
                self.certs_dir / "server",
                "no server chain (rsa.pem/rsa.key or ecdsa.pem/ecdsa.key) for the wss listener",
            )
        client_cas = store.anchor_pem() + b"".join(
            cert.public_bytes(Encoding.PEM) for cert in store.intermediates
        )
        return server_context([(c.chain_path, c.key_path) for c in credentials], client_cas)

    def reload_if_changed(self) -> Reloaded | None:
        """Reload when a file of the store changed; None when nothing changed or it failed."""
        stamp = _stamp(self.certs_dir, WATCHED)
        if stamp == self._stamp:
            return None
        self._stamp = stamp  # a broken store is reported once, until it changes again
        tls_stamp = _stamp(self.certs_dir, TLS_MATERIAL)
        rebuild = self._with_tls and tls_stamp != self._tls_stamp
        try:
            store = load_ca_store(self.certs_dir)
            context = self._context(store) if rebuild else None
        except (CaStoreError, ssl.SSLError, OSError, ValueError) as exc:
            event(
                log,
                "ca_reload_failed",
                logging.ERROR,
                error=str(exc),
                detail="kept the previous CA store and server certificates",
            )
            return None
        store_changed = store.fingerprint != self.store.fingerprint
        self.store = store
        if context is not None:
            self.context, self._tls_stamp = context, tls_stamp
        event(
            log,
            "ca_reloaded",
            anchors=len(store.anchors),
            crls=len(store.crls),
            store_changed=store_changed,
            tls_context_rebuilt=context is not None,
        )
        return Reloaded(store_changed, context is not None)
