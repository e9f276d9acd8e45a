"""What every python peer does at start: read its options, raise its fd limit, announce itself.

The command line is the one `bench.peers.peer_command` builds:
`--host H --port P [--cert FILE --key FILE [--client-ca FILE]]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import ssl
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import TlsFiles

SUBPROTOCOLS = ("ocpp1.6", "ocpp2.0.1")  # the server's order of preference
PATH_PREFIX = "/ocpp/"


@dataclass(frozen=True)
class PeerOptions:
    """Where a peer listens, and its TLS files (None: plain ws)."""

    host: str
    port: int
    tls: TlsFiles | None


def parse_options(peer: str, argv: Sequence[str] | None = None) -> PeerOptions:
    """The peer's options from its command line (exits with a usage message when wrong)."""
    parser = argparse.ArgumentParser(prog=f"bench.peers ({peer})", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (announced)")
    parser.add_argument("--cert", type=os.path.abspath, help="server certificate chain (PEM)")
    parser.add_argument("--key", type=os.path.abspath, help="server private key (PEM)")
    parser.add_argument("--client-ca", type=os.path.abspath, help="mutual TLS: client CA (PEM)")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    if args.client_ca is not None and args.cert is None:
        parser.error("--client-ca needs --cert and --key (mutual TLS is TLS)")
    tls = None
    if args.cert is not None:
        client_ca = Path(args.client_ca) if args.client_ca else None
        tls = TlsFiles(Path(args.cert), Path(args.key), client_ca)
    return PeerOptions(args.host, args.port, tls)


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A TLS server context with Python's defaults; mutual TLS when `tls.client_ca` is set."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def choose_subprotocol(offered: Iterable[str]) -> str | None:
    """The first of `SUBPROTOCOLS` the client offered, or None (refuse the connection)."""
    offered = set(offered)
    return next((p for p in SUBPROTOCOLS if p in offered), None)


def identity_of(path: str) -> str | None:
    """The charge point identity of a request path `/ocpp/{identity}`, or None."""
    if not path.startswith(PATH_PREFIX):
        return None
    identity = path[len(PATH_PREFIX) :].split("?", 1)[0]
    return identity if identity and "/" not in identity else None


def announce_listening(peer: str, port: int) -> None:
    """Print the one `listening` line the runner waits for (flushed at once)."""
    line = {"event": "listening", "peer": peer, "port": port, "pid": os.getpid()}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
