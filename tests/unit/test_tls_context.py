"""The gateway's server TLS context (`security.tls.server_context`), handshakes in memory."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

from security.tls import server_context

from .pipes import client_context, make_tls_files


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A full handshake and one record each way over memory BIOs; the client's SSLObject."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    for _ in range(6):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    c.write(b"ping")
    s_in.write(c_out.read())
    assert s.read(64) == b"ping"
    s.write(b"pong")
    c_in.write(s_out.read())
    assert c.read(64) == b"pong"  # a NewSessionTicket, if any, has been read by now
    with contextlib.suppress(ssl.SSLError):  # close_notify, as ConnectionPipe.close sends it
        s.unwrap()
    return c


def sessions_cached_after(tmp_path: Path, version: ssl.TLSVersion, handshakes: int) -> int:
    """`handshakes` full handshakes at `version` (none with a ticket); sessions then cached."""
    files = make_tls_files(tmp_path)
    server = server_context([(files["cert"], files["key"])], None)
    client = client_context(files)
    client.minimum_version = client.maximum_version = version
    for _ in range(handshakes):
        tls = handshake(server, client)
        assert tls.version() == version.name.replace("v1_", "v1.")
        assert tls.session is not None and not tls.session.has_ticket
    return server.session_stats()["number"]


def test_tls13_issues_no_session_ticket_and_keeps_no_session(tmp_path: Path) -> None:
    """No TLS 1.3 resumption: nothing cached per handshake, no verification skipped."""
    assert sessions_cached_after(tmp_path, ssl.TLSVersion.TLSv1_3, 5) == 0


def test_tls12_keeps_session_ids_without_tickets(tmp_path: Path) -> None:
    """TLS 1.2 resumes by session id from OpenSSL's server cache (Python cannot turn it off);
    no stateless tickets. A resumed session skips certificate verification at the TLS layer,
    which is why the application checks every profile-3 connection again (docs/security.md)."""
    assert sessions_cached_after(tmp_path, ssl.TLSVersion.TLSv1_2, 3) == 3
