"""The on-disk CA store (security/castore.py): layout, all-or-nothing loading, server chains.

A00.FR.403 trust anchors for the charge point certification path, A00.FR.702/704 revocation data
from the CA (CRLs), A00.FR.306/410 the gateway's own server certificate and key.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from security import ca
from security.castore import (
    CaStore,
    CaStoreError,
    ServerCredentials,
    load_ca_store,
    load_server_credentials,
)
from security.certcheck import CertAccepted, CertRejected, check_client_certificate

NOW = datetime.now(UTC)


class Pki:
    """A CPO hierarchy (root -> issuing CA -> charge point) and a foreign one, built once."""

    def __init__(self) -> None:
        self.root = ca.create_root_ca("CPO Root", "Example CPO")
        self.issuing = ca.create_issuing_ca(self.root, "CPO Issuing CA", "Example CPO")
        self.second_root = ca.create_root_ca("CPO Root 2", "Example CPO")
        self.leaf = ca.issue_client_certificate(self.issuing, "CP-0001", "Example CPO")
        self.foreign = ca.create_root_ca("CPO Root", "Example CPO")  # same name, other key
        self.server = ca.issue_server_certificate(self.issuing, "csms.example.com", ["localhost"])
        self.rsa_server = ca.issue_server_certificate(
            self.issuing, "csms.example.com", ["localhost"], key_kind="rsa2048"
        )


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def store_dir(tmp_path: Path, pki: Pki) -> Path:
    """A complete store: one anchor, one issuing CA, no CRL yet."""
    directory = tmp_path / "certs"
    (directory / "trust").mkdir(parents=True)
    (directory / "intermediate").mkdir()
    (directory / "crl").mkdir()
    ca.write_certificates(directory / "trust" / "root.pem", [pki.root.certificate])
    ca.write_certificates(directory / "intermediate" / "issuing.pem", [pki.issuing.certificate])
    return directory


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def load_error(directory: Path) -> CaStoreError:
    with pytest.raises(CaStoreError) as raised:
        load_ca_store(directory)
    return raised.value


# -- loading ------------------------------------------------------------------------------------


def test_missing_folders_mean_an_empty_store(tmp_path: Path) -> None:
    store = load_ca_store(tmp_path / "nothing")
    assert store.anchors == store.intermediates == store.crls == ()
    assert store.anchor_pem() == b""
    assert store.fingerprint == load_ca_store(tmp_path).fingerprint


def test_store_loads_anchors_intermediates_and_crls(store_dir: Path, pki: Pki) -> None:
    ca.write_certificates(
        store_dir / "trust" / "more.pem", [pki.second_root.certificate, pki.foreign.certificate]
    )
    crl = ca.create_crl(pki.issuing, [(pki.leaf.certificate.serial_number, None, NOW)])
    (store_dir / "crl" / "issuing.crl").write_bytes(crl.public_bytes(serialization.Encoding.DER))
    root_crl = ca.create_crl(pki.root, [])
    (store_dir / "crl" / "root.pem").write_bytes(
        root_crl.public_bytes(serialization.Encoding.PEM) * 2  # several CRLs per PEM file
    )
    store = load_ca_store(store_dir)
    assert set(store.anchors) == {
        pki.root.certificate,
        pki.second_root.certificate,
        pki.foreign.certificate,
    }
    assert store.intermediates == (pki.issuing.certificate,)
    assert sorted(len(c) for c in store.crls) == [0, 0, 1]
    assert store.issuers() == store.anchors + store.intermediates


def test_anchor_pem_feeds_ssl_cadata(store_dir: Path, pki: Pki) -> None:
    """ssl's cadata takes PEM as str (bytes are read as DER): decode anchor_pem()."""
    store = load_ca_store(store_dir)
    assert x509.load_pem_x509_certificates(store.anchor_pem()) == [pki.root.certificate]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_verify_locations(cadata=store.anchor_pem().decode("ascii"))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_other_files_are_ignored(store_dir: Path) -> None:
    before = load_ca_store(store_dir)
    (store_dir / "trust" / "README.md").write_text("notes")
    (store_dir / "trust" / ".hidden.pem").write_text("editor swap file")
    (store_dir / "crl" / "sub.pem").mkdir()
    after = load_ca_store(store_dir)
    assert after == before


def test_fingerprint_changes_when_a_crl_is_added(store_dir: Path, pki: Pki) -> None:
    first = load_ca_store(store_dir)
    assert load_ca_store(store_dir).fingerprint == first.fingerprint  # stable
    crl = ca.create_crl(pki.issuing, [])
    (store_dir / "crl" / "issuing.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    second = load_ca_store(store_dir)
    assert second.fingerprint != first.fingerprint
    assert len(second.crls) == 1


def test_fingerprint_covers_file_names(store_dir: Path) -> None:
    first = load_ca_store(store_dir).fingerprint
    (store_dir / "trust" / "root.pem").rename(store_dir / "trust" / "renamed.pem")
    assert load_ca_store(store_dir).fingerprint != first


# -- load errors name the file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "content", "reason"),
    [
        ("trust", b"not a certificate\n", "no PEM certificate"),
        (
            "trust",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "invalid PEM certificate",
        ),
        ("intermediate", b"\x00\x01garbage", "no PEM certificate"),
        ("crl", b"\x30\x03\x02\x01\x01", "invalid CRL"),
        ("crl", b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n", "no PEM X509 CRL"),
    ],
)
def test_invalid_files_are_errors_naming_the_file(
    store_dir: Path, folder: str, content: bytes, reason: str
) -> None:
    bad = store_dir / folder / ("bad.crl" if folder == "crl" else "bad.pem")
    bad.write_bytes(content)
    error = load_error(store_dir)
    assert error.path == bad
    assert reason in error.reason
    assert str(error).startswith(f"{bad}: ")


def test_a_leaf_certificate_in_trust_is_an_error(store_dir: Path, pki: Pki) -> None:
    bad = store_dir / "trust" / "leaf.pem"
    ca.write_certificates(bad, [pki.root.certificate, pki.leaf.certificate])
    error = load_error(store_dir)
    assert error.path == bad
    assert "certificate #2" in error.reason and "not a CA certificate" in error.reason


def test_an_issuing_ca_in_trust_is_an_error(store_dir: Path, pki: Pki) -> None:
    """Anchors are self-signed roots: a partial chain is never trusted."""
    bad = store_dir / "trust" / "issuing.pem"
    ca.write_certificates(bad, [pki.issuing.certificate])
    error = load_error(store_dir)
    assert error.path == bad and "not self-signed" in error.reason


def test_a_root_or_leaf_in_intermediate_is_an_error(store_dir: Path, pki: Pki) -> None:
    bad = store_dir / "intermediate" / "root.pem"
    ca.write_certificates(bad, [pki.second_root.certificate])
    error = load_error(store_dir)
    assert error.path == bad and "roots belong in trust/" in error.reason
    ca.write_certificates(bad, [pki.leaf.certificate])
    error = load_error(store_dir)
    assert error.path == bad and "not a CA certificate" in error.reason


def test_a_private_key_in_the_store_is_an_error(store_dir: Path, pki: Pki) -> None:
    bad = store_dir / "trust" / "root.pem"
    assert pki.root.key is not None
    key_pem = pki.root.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    bad.write_bytes(bad.read_bytes() + key_pem)
    error = load_error(store_dir)
    assert error.path == bad and "private key" in error.reason
    assert "BEGIN" not in str(error)


def test_a_crl_signed_by_a_foreign_ca_is_refused(store_dir: Path, pki: Pki) -> None:
    """Same issuer name as the trusted root, another key: the signature does not verify."""
    bad = store_dir / "crl" / "forged.pem"
    forged = ca.create_crl(pki.foreign, [(pki.leaf.certificate.serial_number, None, NOW)])
    bad.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    error = load_error(store_dir)
    assert error.path == bad
    assert "not signed by any CA" in error.reason


def test_an_unreadable_file_is_an_error(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = store_dir / "intermediate" / "issuing.pem"
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == target:
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    error = load_error(store_dir)
    assert error.path == target and "Permission denied" in error.reason


def test_a_failed_reload_leaves_the_caller_with_the_old_store(store_dir: Path) -> None:
    current = load_ca_store(store_dir)
    (store_dir / "crl" / "half-written.crl").write_bytes(b"\x30\x82\x01")
    try:
        current = load_ca_store(store_dir)
    except CaStoreError as error:
        assert error.path.name == "half-written.crl"
    assert current.anchors and current.intermediates and not current.crls


# -- the store in use ---------------------------------------------------------------------------


def test_removing_an_anchor_makes_a_good_leaf_untrusted_A00_FR_403(
    store_dir: Path, pki: Pki
) -> None:
    chain = [der(pki.leaf.certificate)]
    good = check_client_certificate(chain, load_ca_store(store_dir), NOW, "CP-0001", "Example CPO")
    assert isinstance(good, CertAccepted)
    (store_dir / "trust" / "root.pem").unlink()
    reloaded = load_ca_store(store_dir)
    assert reloaded.anchors == ()
    bad = check_client_certificate(chain, reloaded, NOW, "CP-0001", "Example CPO")
    assert isinstance(bad, CertRejected) and bad.reason == "cert_untrusted"


def test_a_crl_added_to_the_store_revokes(store_dir: Path, pki: Pki) -> None:
    crl = ca.create_crl(pki.issuing, [(pki.leaf.certificate.serial_number, None, NOW)])
    (store_dir / "crl" / "issuing.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    result = check_client_certificate(
        [der(pki.leaf.certificate)], load_ca_store(store_dir), NOW, "CP-0001", "Example CPO"
    )
    assert isinstance(result, CertRejected) and result.reason == "cert_revoked"


def test_the_store_is_immutable(store_dir: Path) -> None:
    store = load_ca_store(store_dir)
    with pytest.raises(AttributeError):
        store.anchors = ()  # type: ignore[misc]
    assert isinstance(store, CaStore)


# -- server credentials -------------------------------------------------------------------------


def write_server(
    directory: Path, kind: str, issued: ca.Issued, chain: list[x509.Certificate]
) -> tuple[Path, Path]:
    server = directory / "server"
    server.mkdir(parents=True, exist_ok=True)
    ca.write_certificates(server / f"{kind}.pem", chain)
    assert issued.key is not None
    ca.write_private_key(server / f"{kind}.key", issued.key)
    return server / f"{kind}.pem", server / f"{kind}.key"


def test_no_server_folder_means_no_credentials(tmp_path: Path) -> None:
    assert load_server_credentials(tmp_path) == []


def test_server_credentials_list_present_kinds_A00_FR_410(tmp_path: Path, pki: Pki) -> None:
    chain_path, key_path = write_server(
        tmp_path, "ecdsa", pki.server, [pki.server.certificate, pki.issuing.certificate]
    )
    found = load_server_credentials(tmp_path)
    assert found == [ServerCredentials(chain_path, key_path)]
    assert found[0].kind == "ecdsa"
    rsa_paths = write_server(tmp_path, "rsa", pki.rsa_server, [pki.rsa_server.certificate])
    found = load_server_credentials(tmp_path)
    assert [c.kind for c in found] == ["rsa", "ecdsa"]
    assert found[0] == rsa_paths  # plain (chain_path, key_path) tuples
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for chain, key in found:
        context.load_cert_chain(chain, key)


def test_server_key_must_match_the_leaf(tmp_path: Path, pki: Pki) -> None:
    _, key_path = write_server(tmp_path, "ecdsa", pki.server, [pki.server.certificate])
    ca.write_private_key(key_path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CaStoreError) as raised:
        load_server_credentials(tmp_path)
    assert raised.value.path == key_path
    assert "does not match the leaf certificate of ecdsa.pem" in raised.value.reason


def test_server_chain_must_be_leaf_first(tmp_path: Path, pki: Pki) -> None:
    chain_path, _ = write_server(
        tmp_path, "ecdsa", pki.server, [pki.issuing.certificate, pki.server.certificate]
    )
    with pytest.raises(CaStoreError) as raised:
        load_server_credentials(tmp_path)
    assert raised.value.path == chain_path and "leaf first" in raised.value.reason


def test_server_chain_needs_its_key_file(tmp_path: Path, pki: Pki) -> None:
    _, key_path = write_server(tmp_path, "ecdsa", pki.server, [pki.server.certificate])
    key_path.unlink()
    with pytest.raises(CaStoreError, match=re.escape(f"{key_path}: missing")):
        load_server_credentials(tmp_path)


def test_server_chain_kind_must_match_its_name(tmp_path: Path, pki: Pki) -> None:
    chain_path, _ = write_server(tmp_path, "rsa", pki.server, [pki.server.certificate])
    with pytest.raises(CaStoreError) as raised:
        load_server_credentials(tmp_path)
    assert raised.value.path == chain_path and "not RSA" in raised.value.reason


def test_weak_server_key_is_refused_A00_FR_502(tmp_path: Path, pki: Pki) -> None:
    weak = ca.issue_server_certificate(pki.issuing, "csms.example.com", [], key_kind="rsa1024")
    chain_path, _ = write_server(tmp_path, "rsa", weak, [weak.certificate])
    with pytest.raises(CaStoreError) as raised:
        load_server_credentials(tmp_path)
    assert raised.value.path == chain_path and "RSA 1024 bits" in raised.value.reason


def test_encrypted_server_key_needs_the_passphrase(tmp_path: Path, pki: Pki) -> None:
    _, key_path = write_server(tmp_path, "ecdsa", pki.server, [pki.server.certificate])
    assert pki.server.key is not None
    ca.write_private_key(key_path, pki.server.key, passphrase=b"secret")
    assert len(load_server_credentials(tmp_path, passphrase=b"secret")) == 1
    with pytest.raises(CaStoreError) as raised:
        load_server_credentials(tmp_path)
    assert raised.value.path == key_path and "no passphrase" in raised.value.reason


def test_dev_certificates_never_replace_an_existing_ca(tmp_path: Path) -> None:
    """`ca init` made a CA but no server chain yet: the dev CA must not overwrite it."""
    from security.devcerts import ensure_dev_certificates

    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "root.key").write_text("a real CA key")
    with pytest.raises(FileExistsError, match="issue-server"):
        ensure_dev_certificates(tmp_path, "localhost")
    assert (tmp_path / "ca" / "root.key").read_text() == "a real CA key"
