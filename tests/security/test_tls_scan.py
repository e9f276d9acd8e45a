"""An sslyze scan of the running wss listener: protocols, cipher suites, compression, certificates.

OCPP 1.6 security whitepaper A00.FR.312/317/319/320 (profiles 2 and 3: TLS 1.2 or higher only,
lower versions refused; the CSMS's TLS 1.2 cipher suites, ECDHE_ECDSA and RSA AES-GCM; the server
certificate the charge point verifies against its CSMS root) and the test cases TC_A_04_CSMS
(TLS connection with the server certificate verified) and TC_A_06_CSMS (older TLS refused).

The scan runs in a worker thread (sslyze has its own thread pool and blocking sockets) while the
gateway serves in the test's event loop. It takes about 2.5 s on loopback, most of it one wait:
the listener asks for (does not require) a client certificate, and sslyze's TLS 1.3 client-auth
probe then waits `network_timeout` for an answer the server never sends (it waits for HTTP).
sslyze speaks TLS through nassl, its own OpenSSL build that still implements SSL 2/3 and the
legacy suites, so "rejected" means the server refused them, not that the client could not offer
them. Nothing leaves loopback: the host name comes with its address, and the chains are verified
against the store's root given as a custom trust store.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from security.tls import TLS12_CIPHERS

pytest.importorskip("sslyze", reason="sslyze is in the 'test' extra")

from sslyze import (
    CertificateInfoExtraArgument,
    CertificateInfoScanResult,
    CipherSuitesScanResult,
    ClientAuthRequirementEnum,
    CompressionScanResult,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)

SERVER_NAME = "localhost"  # tls.server_name's default: the CN and SAN of the dev server chains

# The OCPP TLS 1.2 suites (IANA names; sslyze reports these) and their OpenSSL names (security.tls).
TLS12_IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
}
# TLS 1.3 suites are all AEAD; CCM_8 (a 64-bit tag) is not accepted either.
TLS13_AEAD = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
}
# No CBC, RC4, 3DES (or DES), NULL, EXPORT or anonymous suite in any protocol.
WEAK = re.compile(r"CBC|RC4|RC2|3DES|DES|NULL|EXPORT|anon|MD5|IDEA|SEED|CCM_8")

PROTOCOL_COMMANDS = {
    "SSL 2.0": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSL 3.0": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLS 1.0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLS 1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLS 1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLS 1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}
SCAN_SECONDS = 20.0
NETWORK_TIMEOUT = 2  # seconds; loopback answers in milliseconds, and it bounds the probe above

# sslyze loads its bundled public trust stores too; one of their roots has a negative serial.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


def scan(port: int, trust_anchor: Path) -> ServerScanResult:
    """Scan 127.0.0.1:`port` (SNI `localhost`) with sslyze; blocking, run it in a thread."""
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(SERVER_NAME, port, ip_address="127.0.0.1"),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=SERVER_NAME,
            network_timeout=NETWORK_TIMEOUT,
            network_max_retries=1,
        ),
        scan_commands={
            *PROTOCOL_COMMANDS.values(),
            ScanCommand.TLS_COMPRESSION,
            ScanCommand.CERTIFICATE_INFO,
        },
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=trust_anchor)
        ),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=10)
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    assert len(results) == 1
    return results[0]


def _result(scan_result: ServerScanResult, command: ScanCommand) -> Any:
    """The result of one scan command, which must have completed."""
    assert scan_result.scan_result is not None
    attempt = getattr(scan_result.scan_result, command.value)
    assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (
        f"{command.value}: {attempt.error_reason} {attempt.error_trace}"
    )
    return attempt.result


def _suites(scan_result: ServerScanResult, command: ScanCommand) -> CipherSuitesScanResult:
    result = _result(scan_result, command)
    assert isinstance(result, CipherSuitesScanResult)
    return result


@dataclass
class Scanned:
    """One sslyze scan of the secure gateway's wss port."""

    result: ServerScanResult
    certs_dir: Path

    @property
    def trust_anchor(self) -> Path:
        return self.certs_dir / "trust" / "dev-root.pem"


@pytest.fixture
async def scanned(secure: Any) -> Scanned:
    """Scan the wss port in a worker thread while the gateway serves in this event loop."""
    port = secure.server.wss_port
    anchor = secure.certs_dir / "trust" / "dev-root.pem"
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await asyncio.wait_for(asyncio.to_thread(scan, port, anchor), SCAN_SECONDS + 10)
    elapsed = loop.time() - started
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, (
        f"sslyze could not connect to 127.0.0.1:{port}: {result.connectivity_error_trace}"
    )
    assert elapsed < SCAN_SECONDS, f"the scan took {elapsed:.1f} s"
    return Scanned(result, secure.certs_dir)


async def test_only_tls12_and_tls13_with_the_ocpp_suites_no_weak_cipher_no_compression(
    scanned: Scanned,
) -> None:
    """A00.FR.317/319/320, TC_A_06_CSMS: protocols, suites and compression as sslyze sees them."""
    results = {name: _suites(scanned.result, cmd) for name, cmd in PROTOCOL_COMMANDS.items()}
    accepted = {
        name: {suite.cipher_suite.name for suite in result.accepted_cipher_suites}
        for name, result in results.items()
    }
    assert {name for name, suites in accepted.items() if suites} == {"TLS 1.2", "TLS 1.3"}, accepted

    # Exactly the configured TLS 1.2 suites: the ECDHE_ECDSA ones need the ECDSA certificate, the
    # RSA and ECDHE_RSA ones the RSA certificate, so both chains are served.
    assert set(TLS12_IANA) == set(TLS12_CIPHERS)
    assert accepted["TLS 1.2"] == set(TLS12_IANA.values())
    openssl_names = {
        suite.cipher_suite.openssl_name for suite in results["TLS 1.2"].accepted_cipher_suites
    }
    assert openssl_names == set(TLS12_CIPHERS)

    assert accepted["TLS 1.3"] <= TLS13_AEAD, accepted["TLS 1.3"]
    assert {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"} <= accepted["TLS 1.3"]

    for name, result in results.items():
        for suite in result.accepted_cipher_suites:
            cipher = suite.cipher_suite
            assert not WEAK.search(cipher.name), f"{name}: {cipher.name}"
            assert cipher.key_size >= 128, f"{name}: {cipher}"
            assert not cipher.is_anonymous, f"{name}: {cipher}"

    compression = _result(scanned.result, ScanCommand.TLS_COMPRESSION)
    assert isinstance(compression, CompressionScanResult)
    assert compression.supports_compression is False


async def test_server_chains_verify_against_the_store_root_with_the_configured_name(
    scanned: Scanned,
) -> None:
    """A00.FR.312, TC_A_04_CSMS: RSA and ECDSA chains, each verified to dev-root, CN localhost."""
    info = _result(scanned.result, ScanCommand.CERTIFICATE_INFO)
    assert isinstance(info, CertificateInfoScanResult)
    root = x509.load_pem_x509_certificate(scanned.trust_anchor.read_bytes())
    kinds: set[str] = set()
    for deployment in info.certificate_deployments:
        leaf = deployment.received_certificate_chain[0]
        common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [name.value for name in common_names] == [SERVER_NAME]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert SERVER_NAME in sans.get_values_for_type(x509.DNSName)

        # sslyze verifies with cryptography's server verifier: chain to the anchor and host name.
        by_store = {r.trust_store.path.resolve(): r for r in deployment.path_validation_results}
        custom = by_store.pop(scanned.trust_anchor.resolve())
        assert custom.was_validation_successful, custom.validation_error
        assert custom.verified_certificate_chain is not None
        assert custom.verified_certificate_chain[0] == leaf
        assert custom.verified_certificate_chain[-1] == root
        # A private CA: none of sslyze's public trust stores (Mozilla, Apple, ...) vouches for it.
        assert not any(r.was_validation_successful for r in by_store.values())

        key = leaf.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            kinds.add("rsa")
        elif isinstance(key, ec.EllipticCurvePublicKey):
            kinds.add("ecdsa")
    assert kinds == {"rsa", "ecdsa"}, kinds

    # Profile 3 needs the certificate request; profiles 2 clients must still get in without one.
    connectivity = scanned.result.connectivity_result
    assert connectivity is not None
    assert connectivity.client_auth_requirement == ClientAuthRequirementEnum.OPTIONAL
