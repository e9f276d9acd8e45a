"""Hot reload without restart: server certificate, CRLs, anchors and records, while sessions run.

Also: TLS 1.2 session resumption after a revocation is refused (the leaf is re-checked by the
application on every connection), and the TLS-offload mode from trusted and untrusted peers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from security.ca import create_crl, issue_server_certificate, write_certificates, write_private_key
from security.records import JsonFileRecordStore

from .helpers import attempt, client_certificate, client_context

FAST_RELOAD = {"reload_interval_seconds": 0.1}


def _revoke(certs_dir, issuer, serial: int, name: str = "revoked.pem") -> None:
    crl = create_crl(issuer, [(serial, x509.ReasonFlags.key_compromise, datetime.now(UTC))])
    (certs_dir / "crl" / name).write_bytes(crl.public_bytes(Encoding.PEM))


async def _closed_within(ws, timeout: float = 3.0) -> websockets.ConnectionClosed:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), timeout)
    return closed.value


async def test_revoking_a_live_sessions_certificate_closes_it_and_refuses_it_after(start_secure):
    """A CRL published while a profile-3 session runs closes it at once; reconnects are refused."""
    gateway = await start_secure(tls=FAST_RELOAD)
    cert = client_certificate(gateway.tmp, gateway.issuer, "live", "CP3")
    context = client_context(gateway.certs_dir, cert)
    async with websockets.connect(
        gateway.wss("CP3"), subprotocols=["ocpp2.0.1"], ssl=context
    ) as ws:
        _revoke(gateway.certs_dir, gateway.issuer, cert.serial)
        closed = await _closed_within(ws)
    assert closed.rcvd.code == 1008
    assert "cert_revoked" in closed.rcvd.reason
    await gateway.events.wait_for("cert_revoked")
    assert (await attempt(gateway.wss("CP3"), context=context)).status == 401


async def test_removing_the_anchor_closes_live_sessions_and_fails_new_handshakes(start_secure):
    gateway = await start_secure(tls=FAST_RELOAD)
    cert = client_certificate(gateway.tmp, gateway.issuer, "anchor", "CP3")
    context = client_context(gateway.certs_dir, cert)
    async with websockets.connect(
        gateway.wss("CP3"), subprotocols=["ocpp2.0.1"], ssl=context
    ) as ws:
        (gateway.certs_dir / "trust" / "dev-root.pem").unlink()
        closed = await _closed_within(ws)
    assert closed.rcvd.code == 1008
    assert (await gateway.events.wait_for("cert_untrusted")).identity == "CP3"
    assert (await attempt(gateway.wss("CP3"), context=context)).status is None  # TLS refuses


async def test_new_server_certificate_is_served_to_new_connections_without_restart(start_secure):
    gateway = await start_secure(tls=FAST_RELOAD)
    context = client_context(gateway.certs_dir)
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")  # pin the ECDSA chain
    context.maximum_version = ssl.TLSVersion.TLSv1_2

    async def served_serial() -> int:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", gateway.server.wss_port, ssl=context, server_hostname="localhost"
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return x509.load_der_x509_certificate(der).serial_number

    before = await served_serial()
    renewed = issue_server_certificate(gateway.issuer, "localhost", ["localhost", "127.0.0.1"])
    server_dir = gateway.certs_dir / "server"
    write_private_key(server_dir / "ecdsa.key", renewed.key)
    write_certificates(server_dir / "ecdsa.pem", [renewed.certificate, gateway.issuer.certificate])
    for _ in range(50):
        await asyncio.sleep(0.1)
        if await served_serial() == renewed.certificate.serial_number:
            break
    assert before != renewed.certificate.serial_number
    assert await served_serial() == renewed.certificate.serial_number


async def test_broken_file_in_the_store_changes_nothing_and_says_why(start_secure, caplog):
    gateway = await start_secure(tls=FAST_RELOAD)
    cert = client_certificate(gateway.tmp, gateway.issuer, "ok", "CP3")
    context = client_context(gateway.certs_dir, cert)
    (gateway.certs_dir / "crl" / "broken.pem").write_text("not a CRL")
    for _ in range(30):
        await asyncio.sleep(0.1)
        failures = [r for r in caplog.records if r.getMessage() == "ca_reload_failed"]
        if failures:
            break
    assert failures and "broken.pem" in failures[0].fields["error"]
    assert (await attempt(gateway.wss("CP3"), context=context)).status == 101


async def test_removed_record_closes_its_live_session(start_gateway, tmp_path):
    records_file = tmp_path / "records.json"
    JsonFileRecordStore(records_file)  # empty file does not exist yet
    server = await start_gateway(
        records=JsonFileRecordStore(records_file),
        security={"dev_auto_register": True},
        tls={"reload_interval_seconds": 0.1},
    )
    async with websockets.connect(server.url("GONE1"), subprotocols=["ocpp1.6"]) as ws:
        await ws.send('[2,"1","Heartbeat",{}]')
        await asyncio.wait_for(ws.recv(), 2)
        assert JsonFileRecordStore(records_file).remove("GONE1")  # e.g. `ocpp-gateway cp remove`
        closed = await _closed_within(ws)
    assert closed.rcvd.code == 1008 and "record_removed" in closed.rcvd.reason


def _upgrade_over_tls(port: int, context: ssl.SSLContext, session=None):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
        tls.sendall(
            b"GET /ocpp/CP3 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp2.0.1\r\n\r\n"
        )
        response = tls.recv(4096)
        result = (response.split(b" ", 2)[1], tls.session, tls.session_reused)
        tls.close()
        return result


async def test_tls12_session_resumption_after_revocation_is_refused(start_secure):
    """A resumed TLS 1.2 session skips certificate verification; the app re-check refuses it."""
    gateway = await start_secure(tls=FAST_RELOAD)
    cert = client_certificate(gateway.tmp, gateway.issuer, "resume", "CP3")
    context = client_context(gateway.certs_dir, cert, maximum=ssl.TLSVersion.TLSv1_2)
    port = gateway.server.wss_port
    status, session, reused = await asyncio.to_thread(_upgrade_over_tls, port, context)
    assert (status, reused) == (b"101", False)
    _revoke(gateway.certs_dir, gateway.issuer, cert.serial)
    trust = gateway.server.gateway.trust
    for _ in range(100):  # the store is re-read (0.1 s interval)
        if any(
            crl.get_revoked_certificate_by_serial_number(cert.serial) for crl in trust.store.crls
        ):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the CRL was not loaded")
    status, _, reused = await asyncio.to_thread(_upgrade_over_tls, port, context, session)
    assert reused, "the TLS session was resumed (verification skipped at the TLS layer)"
    assert status == b"401"
    await gateway.events.wait_for("cert_revoked")


def _pem_header(cert) -> str:
    return quote(cert.issued.certificate.public_bytes(Encoding.PEM).decode())


async def test_offload_mode_believes_a_trusted_proxy(start_secure):
    gateway = await start_secure(tls={"offload": True, "offload_trusted_proxies": ["127.0.0.0/8"]})
    cert = client_certificate(gateway.tmp, gateway.issuer, "proxied", "CP3")
    headers = {"X-Forwarded-Proto": "https", "X-SSL-Client-Cert": _pem_header(cert)}
    assert (await attempt(gateway.ws("CP3"), headers=headers)).status == 101


async def test_offload_headers_from_an_untrusted_peer_are_ignored_and_logged(start_secure):
    gateway = await start_secure(tls={"offload": True, "offload_trusted_proxies": ["10.9.9.9"]})
    cert = client_certificate(gateway.tmp, gateway.issuer, "spoofed", "CP3")
    headers = {"X-Forwarded-Proto": "https", "X-SSL-Client-Cert": _pem_header(cert)}
    assert (await attempt(gateway.ws("CP3"), headers=headers)).status == 401
    await gateway.events.wait_for("offload_headers_from_untrusted_peer")
    await gateway.events.wait_for("downgrade_attempt")
