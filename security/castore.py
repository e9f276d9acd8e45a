"""The on-disk CA store: trust anchors, issuing CAs and CRLs for client certificates.

Layout under a directory (default `certs/`)::

    trust/*.pem          trust anchors for charge point certificates (self-signed CA roots)
    intermediate/*.pem   issuing CAs (never anchors) used to complete client chains
    crl/*.pem|*.crl      CRLs (PEM, several per file allowed, or DER)
    server/              the gateway's TLS chains: rsa.pem + rsa.key, ecdsa.pem + ecdsa.key

A missing folder is empty; other file names are ignored. Loading is all or nothing: any unreadable
or invalid file raises `CaStoreError` naming it, so a reload keeps the previous store.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .ca import certificates_from_pem, key_weakness, private_key_from_pem, public_key_der

DEFAULT_DIRECTORY = Path("certs")
SERVER_KINDS = ("rsa", "ecdsa")

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.DOTALL)


class CaStoreError(Exception):
    """A CA store file is unreadable or invalid: `path` names it, `reason` says what is wrong."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class CaStore:
    """Loaded trust material; `fingerprint` changes whenever a loaded file does."""

    anchors: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]
    fingerprint: str

    def anchor_pem(self) -> bytes:
        """All anchors as concatenated PEM (ssl's `cadata` wants it decoded: `str` is PEM)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.anchors)

    def issuers(self) -> tuple[x509.Certificate, ...]:
        """Anchors and intermediates: every CA that may sign a client certificate or a CRL."""
        return self.anchors + self.intermediates


class ServerCredentials(NamedTuple):
    """One of the gateway's TLS server identities: a PEM chain (leaf first) and its key file."""

    chain_path: Path
    key_path: Path

    @property
    def kind(self) -> str:
        """'rsa' or 'ecdsa'."""
        return self.chain_path.stem


def load_ca_store(directory: Path | str = DEFAULT_DIRECTORY) -> CaStore:
    """Load trust/, intermediate/ and crl/ below `directory`; CaStoreError names a bad file."""
    root = Path(directory)
    digest = hashlib.sha256()
    anchors: list[x509.Certificate] = []
    intermediates: list[x509.Certificate] = []
    crls: list[x509.CertificateRevocationList] = []
    for path, data in _files(root / "trust", (".pem",), digest):
        anchors.extend(_anchors(path, data))
    for path, data in _files(root / "intermediate", (".pem",), digest):
        intermediates.extend(_intermediates(path, data))
    issuers = anchors + intermediates
    for path, data in _files(root / "crl", (".pem", ".crl"), digest):
        crls.extend(_crls(path, data, issuers))
    return CaStore(tuple(anchors), tuple(intermediates), tuple(crls), digest.hexdigest())


def load_server_credentials(
    directory: Path | str = DEFAULT_DIRECTORY, passphrase: bytes | None = None
) -> list[ServerCredentials]:
    """The server chains in `directory`/server (rsa, ecdsa), each checked against its key."""
    server = Path(directory) / "server"
    found: list[ServerCredentials] = []
    for kind in SERVER_KINDS:
        chain_path, key_path = server / f"{kind}.pem", server / f"{kind}.key"
        if not chain_path.exists() and not key_path.exists():
            continue
        for path in (chain_path, key_path):
            if not path.is_file():
                raise CaStoreError(path, f"missing: the {kind} server chain needs both files")
        _check_server_pair(kind, chain_path, key_path, passphrase)
        found.append(ServerCredentials(chain_path, key_path))
    return found


# -- loading -----------------------------------------------------------------------------------


def _files(
    folder: Path, suffixes: tuple[str, ...], digest: hashlib._Hash
) -> Iterable[tuple[Path, bytes]]:
    """(path, bytes) of the matching files in `folder`, sorted; their names and bytes are hashed."""
    if not folder.exists():
        return
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    except OSError as exc:
        raise CaStoreError(folder, f"cannot list ({exc.strerror or exc})") from None
    for path in paths:
        if path.name.startswith(".") or not path.is_file():
            continue
        data = _read(path)
        for part in (f"{folder.name}/{path.name}".encode(), data):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        yield path, data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CaStoreError(path, f"cannot read ({exc.strerror or exc})") from None


def _certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    if b"PRIVATE KEY-----" in data:
        raise CaStoreError(path, "contains a private key: keep keys out of the CA store folders")
    try:
        certs = certificates_from_pem(data, source="file")
    except ValueError as exc:
        raise CaStoreError(path, str(exc).removeprefix("file: ")) from None
    for index, cert in enumerate(certs):
        try:
            cert.extensions  # noqa: B018 - parse them now: a bad extension is a bad file
        except ValueError as exc:
            raise CaStoreError(path, f"certificate #{index + 1}: bad extensions ({exc})") from None
    return certs


def _anchors(path: Path, data: bytes) -> list[x509.Certificate]:
    certs = _certificates(path, data)
    for index, cert in enumerate(certs, 1):
        what = f"certificate #{index} ({_subject(cert)})"
        if not is_ca(cert):
            raise CaStoreError(path, f"{what} is not a CA certificate (BasicConstraints CA:TRUE)")
        if not is_self_signed(cert):
            raise CaStoreError(
                path, f"{what} is not self-signed: issuing CAs belong in intermediate/"
            )
    return certs


def _intermediates(path: Path, data: bytes) -> list[x509.Certificate]:
    certs = _certificates(path, data)
    for index, cert in enumerate(certs, 1):
        what = f"certificate #{index} ({_subject(cert)})"
        if not is_ca(cert):
            raise CaStoreError(path, f"{what} is not a CA certificate (BasicConstraints CA:TRUE)")
        if is_self_signed(cert):
            raise CaStoreError(path, f"{what} is a self-signed root: roots belong in trust/")
    return certs


def _crls(
    path: Path, data: bytes, issuers: list[x509.Certificate]
) -> list[x509.CertificateRevocationList]:
    crls: list[x509.CertificateRevocationList] = []
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            blocks = _PEM_CRL.findall(data)
            if not blocks:
                raise CaStoreError(path, "no PEM X509 CRL block found")
            crls = [x509.load_pem_x509_crl(block) for block in blocks]
        else:
            crls = [x509.load_der_x509_crl(data)]
        for crl in crls:
            crl.extensions  # noqa: B018 - parse them now: a bad extension is a bad file
            for entry in crl:
                entry.extensions  # noqa: B018
    except ValueError as exc:
        raise CaStoreError(path, f"invalid CRL ({str(exc).splitlines()[0][:160]})") from None
    for index, crl in enumerate(crls, 1):
        if not any(_signed_by(crl, ca) for ca in issuers):
            raise CaStoreError(
                path,
                f"CRL #{index} (issuer {crl.issuer.rfc4514_string()}) is not signed by any CA in "
                "trust/ or intermediate/",
            )
    return crls


def _check_server_pair(
    kind: str, chain_path: Path, key_path: Path, passphrase: bytes | None
) -> None:
    chain = _certificates(chain_path, _read(chain_path))
    leaf = chain[0]
    for index, (cert, issuer) in enumerate(itertools.pairwise(chain), 1):
        if cert.issuer != issuer.subject:
            raise CaStoreError(
                chain_path,
                f"certificate #{index + 1} did not issue certificate #{index}: the chain must be "
                "leaf first, each followed by its issuer",
            )
    expected = rsa.RSAPublicKey if kind == "rsa" else ec.EllipticCurvePublicKey
    if not isinstance(leaf.public_key(), expected):
        raise CaStoreError(chain_path, f"the leaf's key is not {kind.upper()}")
    weakness = key_weakness(leaf.public_key())
    if weakness is not None:
        raise CaStoreError(chain_path, f"the leaf's key is too weak: {weakness}")
    try:
        key = private_key_from_pem(_read(key_path), passphrase, source="file")
    except ValueError as exc:
        raise CaStoreError(key_path, str(exc).removeprefix("file: ")) from None
    if public_key_der(key.public_key()) != public_key_der(leaf.public_key()):
        raise CaStoreError(key_path, f"does not match the leaf certificate of {chain_path.name}")


# -- certificate facts -------------------------------------------------------------------------


def is_ca(cert: x509.Certificate) -> bool:
    """True for a certificate with BasicConstraints CA:TRUE."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert: x509.Certificate) -> bool:
    """True when the certificate's own key verifies its signature."""
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:200]
