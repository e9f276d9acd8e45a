"""Development certificates: a dev CA and RSA + ECDSA server chains, made on the first start.

Written into the CA store layout (see `castore`): the CA's own keys under `ca/` (0600, folder 0700),
the root under `trust/`, the issuing CA under `intermediate/`, server chains under `server/`.
Charge point certificates from this CA (`ocpp-gateway ca issue-cp`) then pass profile 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .ca import (
    Issued,
    create_issuing_ca,
    create_root_ca,
    issue_server_certificate,
    write_certificates,
    write_private_key,
)

DEV_ORGANIZATION = "ocpp-gateway development CA"


@dataclass(frozen=True)
class DevCertificates:
    """What `ensure_dev_certificates` created."""

    root: Issued
    issuing: Issued
    server_chains: tuple[Path, ...]


def has_server_credentials(certs_dir: Path) -> bool:
    """True when the store already holds at least one server chain with its key."""
    server = certs_dir / "server"
    return any(
        (server / f"{kind}.pem").is_file() and (server / f"{kind}.key").is_file()
        for kind in ("rsa", "ecdsa")
    )


def ensure_dev_certificates(
    certs_dir: Path, server_name: str, extra_sans: tuple[str, ...] = ("127.0.0.1", "::1")
) -> DevCertificates | None:
    """Create a dev CA and server chains when the store has no server chain; else None."""
    if has_server_credentials(certs_dir):
        return None
    if (certs_dir / "ca" / "root.key").exists() or (certs_dir / "ca" / "issuing.key").exists():
        raise FileExistsError(
            f"{certs_dir}/ca holds a CA but {certs_dir}/server has no chain: issue one with "
            "'ocpp-gateway ca issue-server --san HOST' (the dev CA never replaces a real one)"
        )
    ca_dir = certs_dir / "ca"
    for folder in ("ca", "trust", "intermediate", "crl", "server"):
        (certs_dir / folder).mkdir(parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    root = create_root_ca("ocpp-gateway dev root CA", DEV_ORGANIZATION)
    issuing = create_issuing_ca(root, "ocpp-gateway dev issuing CA", DEV_ORGANIZATION)
    write_certificates(ca_dir / "root.pem", [root.certificate])
    write_private_key(ca_dir / "root.key", root.key)
    write_certificates(ca_dir / "issuing.pem", [issuing.certificate])
    write_private_key(ca_dir / "issuing.key", issuing.key)
    write_certificates(certs_dir / "trust" / "dev-root.pem", [root.certificate])
    write_certificates(certs_dir / "intermediate" / "dev-issuing.pem", [issuing.certificate])
    sans = (server_name, *extra_sans)
    chains = []
    for kind, key_kind in (("rsa", "rsa2048"), ("ecdsa", "ec256")):
        server = issue_server_certificate(issuing, server_name, sans, key_kind=key_kind)
        chain = certs_dir / "server" / f"{kind}.pem"
        write_certificates(chain, [server.certificate, issuing.certificate])
        write_private_key(certs_dir / "server" / f"{kind}.key", server.key)
        chains.append(chain)
    return DevCertificates(root, issuing, tuple(chains))
