"""The gateway's server TLS context (`security.tls.server_context`), handshakes in memory."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest

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
    return c


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_no_session_tickets_and_no_tls13_sessions_in_the_server_cache(
    tmp_path: Path, version: ssl.TLSVersion
) -> None:
    files = make_tls_files(tmp_path)
    server = server_context([(files["cert"], files["key"])], None)
    client = client_context(files)
    client.minimum_version = client.maximum_version = version
    for _ in range(5):
        tls = handshake(server, client)
        assert tls.version() == version.name.replace("v1_", "v1.")
        assert tls.session is not None and not tls.session.has_ticket
    assert server.session_stats()["number"] == 0, "no session kept after the handshakes"
