"""Behind a trusted TLS-offloading proxy, failed logins are counted per client address.

The proxy reports the client in X-Forwarded-For. HAProxy's `option forwardfor` adds its own
header line after any line the client sent, and RFC 9110 section 5.3 makes repeated lines of a
list header one comma-joined list: the client's address is the last entry of all lines together.
A client must not escape the per-address lockout by sending an X-Forwarded-For line of its own.
"""

from __future__ import annotations

import pytest
import websockets
from websockets.exceptions import InvalidStatus

CLIENT = "203.0.113.9"  # the address the proxy saw


async def attempt(server, identity: str, forwarded: list[str]) -> int:
    """An upgrade through the "proxy" (the test, from 127.0.0.1): its HTTP status."""
    headers = [("X-Forwarded-Proto", "https"), *(("X-Forwarded-For", f) for f in forwarded)]
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(
            server.url(identity), subprotocols=["ocpp1.6"], additional_headers=headers
        )
    return refused.value.response.status_code


@pytest.fixture
async def behind_proxy(start_gateway):
    return await start_gateway(
        tls={"offload": True, "offload_trusted_proxies": ["127.0.0.1"]},
        security={"dev_auto_register": False, "max_auth_failures": 3, "lockout_seconds": 60},
    )


async def test_client_with_its_own_forwarded_for_line_is_still_locked_out_by_its_address(
    behind_proxy,
):
    spoofed = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
    # Three unknown identities (their own counts stay below the limit): the address is locked.
    statuses = [await attempt(behind_proxy, f"GUESS{i}", [spoofed[i], CLIENT]) for i in range(3)]
    assert statuses == [401, 401, 401]
    assert await attempt(behind_proxy, "GUESS3", [spoofed[3], CLIENT]) == 429
    # The same address written in one comma-joined line is the same client.
    assert await attempt(behind_proxy, "GUESS4", [f"{spoofed[0]}, {CLIENT}"]) == 429


async def test_another_client_behind_the_same_proxy_is_not_locked_out(behind_proxy):
    for i in range(3):
        await attempt(behind_proxy, f"BAD{i}", [CLIENT])
    assert await attempt(behind_proxy, "BAD3", [CLIENT]) == 429
    assert await attempt(behind_proxy, "OTHER", ["192.0.2.77"]) == 401
