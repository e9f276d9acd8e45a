"""OCPP version negotiation over the WebSocket subprotocol (OCPP-J part 4, 3.1.2 and 3.2)."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def negotiate_subprotocol(
    offered: Sequence[str],
    preference: Sequence[str],
    allowed: Collection[str] | None = None,
) -> str | None:
    """The server's most preferred subprotocol that the client offered, or None.

    `preference` is the gateway's order (most preferred first); `allowed` narrows it for one charge
    point (its record's allowed versions) when given. Tokens compare exactly, as RFC 6455 requires.
    """
    offered_set = set(offered)
    for subprotocol in preference:
        if subprotocol in offered_set and (allowed is None or subprotocol in allowed):
            return subprotocol
    return None
