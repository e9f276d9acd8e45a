"""OCPP version negotiation over Sec-WebSocket-Protocol (OCPP-J part 4, 3.1.2 and 3.2)."""

from __future__ import annotations

import pytest

from gateway.negotiation import negotiate_subprotocol

PREFERENCE = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")


@pytest.mark.parametrize(
    ("offered", "preference", "expected"),
    [
        (["ocpp1.6", "ocpp2.0.1"], PREFERENCE, "ocpp2.0.1"),
        (["ocpp2.0.1", "ocpp1.6"], PREFERENCE, "ocpp2.0.1"),
        (["ocpp1.6", "ocpp2.0.1", "ocpp2.1"], PREFERENCE, "ocpp2.1"),
        (["ocpp1.6", "ocpp2.0.1"], ("ocpp1.6", "ocpp2.0.1"), "ocpp1.6"),
        (["ocpp2.0.1", "ocpp1.6"], ("ocpp1.6", "ocpp2.0.1"), "ocpp1.6"),
        (["ocpp1.2", "ocpp1.6"], PREFERENCE, "ocpp1.6"),
        (["ocpp1.6", "ocpp1.6"], PREFERENCE, "ocpp1.6"),
    ],
)
def test_server_preference_wins_over_client_order(
    offered: list[str], preference: tuple[str, ...], expected: str
) -> None:
    """3.2: the server picks one of the offered subprotocols; the gateway picks by its order."""
    assert negotiate_subprotocol(offered, preference) == expected


@pytest.mark.parametrize(
    ("offered", "allowed", "expected"),
    [
        (["ocpp2.1", "ocpp1.6"], {"ocpp1.6"}, "ocpp1.6"),
        (["ocpp2.1", "ocpp2.0.1", "ocpp1.6"], {"ocpp2.0.1", "ocpp1.6"}, "ocpp2.0.1"),
        (["ocpp2.1"], {"ocpp1.6"}, None),
        (["ocpp2.1", "ocpp1.6"], frozenset(), None),
        (["ocpp1.5"], {"ocpp1.5"}, None),  # allowed never adds what the server does not support
        (["ocpp2.1"], None, "ocpp2.1"),
    ],
)
def test_allowed_versions_narrow_the_choice(
    offered: list[str], allowed: set[str] | None, expected: str | None
) -> None:
    """An empty allowed set allows nothing; None means no narrowing."""
    assert negotiate_subprotocol(offered, PREFERENCE, allowed) == expected


@pytest.mark.parametrize(
    "offered", [[], ["ocpp1.5"], ["ocpp1.2", "ocpp1.5", "ocpp2.0"], ["wamp", "mqtt"]]
)
def test_no_header_or_no_overlap_gives_none(offered: list[str]) -> None:
    assert negotiate_subprotocol(offered, PREFERENCE) is None


@pytest.mark.parametrize(
    "offered",
    [["OCPP1.6"], ["Ocpp2.0.1"], ["ocpp1.6 "], [" ocpp1.6"], ["ocpp16"], ["ocpp2.0.1,ocpp1.6"]],
)
def test_subprotocols_compare_exactly_and_case_sensitively(offered: list[str]) -> None:
    """RFC 6455 4.1: subprotocol tokens are compared as exact strings."""
    assert negotiate_subprotocol(offered, PREFERENCE) is None


def test_empty_preference_accepts_nothing() -> None:
    assert negotiate_subprotocol(["ocpp1.6"], ()) is None
