"""Which address of X-Forwarded-For a trusted proxy vouches for (gateway/admission.py)."""

from __future__ import annotations

import pytest

from gateway.admission import OffloadSettings

PROXY = OffloadSettings.build(["10.0.0.0/8"], "x-forwarded-proto", "x-ssl-client-cert")


@pytest.mark.parametrize(
    ("lines", "client"),
    [
        ([b"203.0.113.9"], "203.0.113.9"),
        ([b"198.51.100.1, 203.0.113.9"], "203.0.113.9"),
        ([b"198.51.100.1", b"203.0.113.9"], "203.0.113.9"),  # HAProxy: its own line last
        ([b"203.0.113.9:4711"], "203.0.113.9"),  # with a port
        ([b"[2001:db8::1]:4711"], "2001:db8::1"),
        ([b"2001:DB8:0::1"], "2001:db8::1"),  # one key however it is written
        ([b"198.51.100.1, unknown"], ""),  # not an address: per identity only
        ([b"198.51.100.1", b""], ""),  # the proxy's own line is what counts, even empty
        ([b"198.51.100.1, 10.1.2.3"], "10.1.2.3"),  # never what the client wrote before it
        ([], ""),
    ],
)
def test_the_client_is_the_last_entry_of_all_forwarded_for_lines(lines, client):
    headers = [(b"X-Forwarded-For", line) for line in lines]
    assert PROXY.client_address([(b"host", b"gw"), *headers]) == client
