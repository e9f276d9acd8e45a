"""Charge point identity from the connection URL (OCPP 2.0.1 / 2.1 part 4, 3.1.1).

The identity is the last path segment, percent-encoded as needed (RFC 3986); its type is
identifierString (a-z A-Z 0-9 * - _ = : + | @ .) without ':' (the Basic-auth username), at most
48 characters.
"""

from __future__ import annotations

import pytest

from gateway.identity import (
    IDENTIFIER_STRING_CHARACTERS,
    MAX_IDENTITY_LENGTH,
    IdentityError,
    IdentityRules,
)

RULES = IdentityRules("/ocpp")


def refused(raw_path: bytes, rules: IdentityRules = RULES) -> str:
    result = rules.parse(raw_path)
    assert isinstance(result, IdentityError), result
    assert result.reason
    return result.reason


@pytest.mark.parametrize(
    ("raw_path", "identity"),
    [
        (b"/ocpp/CS001", "CS001"),  # 3.1.1 example 1
        (b"/ocpp/cs001", "cs001"),
        (b"/ocpp/a", "a"),
        (b"/ocpp/0", "0"),
        (b"/ocpp/EVB-P1234567.01", "EVB-P1234567.01"),
        (b"/ocpp/x*-_=+|@.y", "x*-_=+|@.y"),
    ],
)
def test_identifier_string_identity_is_accepted(raw_path: bytes, identity: str) -> None:
    assert RULES.parse(raw_path) == identity


def test_every_identifier_string_character_except_colon_is_allowed() -> None:
    """identifierString: a-z, A-Z, 0-9, '*', '-', '_', '=', ':', '+', '|', '@', '.'; 3.1.1
    removes ':' because the identity is also the Basic-auth username."""
    expected = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=+|@.")
    assert set(IDENTIFIER_STRING_CHARACTERS) == expected
    for start in range(0, len(expected), MAX_IDENTITY_LENGTH):
        chunk = "".join(sorted(expected))[start : start + MAX_IDENTITY_LENGTH]
        assert RULES.parse(b"/ocpp/" + chunk.encode()) == chunk


@pytest.mark.parametrize("raw_path", [b"/ocpp/CP:1", b"/ocpp/CP%3A1", b"/ocpp/CP%3a1"])
def test_colon_is_refused_raw_or_percent_encoded(raw_path: bytes) -> None:
    """3.1.1: the colon separates the Basic-auth username and password."""
    assert "not allowed" in refused(raw_path)


def test_identity_of_48_characters_is_accepted() -> None:
    identity = "A" * 48
    assert RULES.parse(b"/ocpp/" + identity.encode()) == identity
    assert MAX_IDENTITY_LENGTH == 48


def test_identity_of_49_characters_is_refused() -> None:
    """3.1.1: the maximum length of the Charging Station identity is 48."""
    assert "48" in refused(b"/ocpp/" + b"A" * 49)


def test_length_is_counted_after_percent_decoding() -> None:
    """46 + 1 + 1 = 48 decoded characters from 50 bytes of path: accepted."""
    raw = b"/ocpp/" + b"A" * 46 + b"%2D" + b"B"
    assert RULES.parse(raw) == "A" * 46 + "-B"


def test_length_over_48_after_percent_decoding_is_refused() -> None:
    raw = b"/ocpp/" + b"%41" * 49
    assert "48" in refused(raw)


@pytest.mark.parametrize(
    ("raw_path", "identity"),
    [
        (b"/ocpp/CP%2D1", "CP-1"),
        (b"/ocpp/CP%2d1", "CP-1"),
        (b"/ocpp/%43%50%31", "CP1"),
        (b"/ocpp/a%2Bb", "a+b"),
        (b"/ocpp/a+b", "a+b"),  # '+' is not a space in a path (that is form encoding)
    ],
)
def test_identity_is_percent_decoded(raw_path: bytes, identity: str) -> None:
    """3.1.1: the identity is percent-encoded as necessary as described in RFC 3986."""
    assert RULES.parse(raw_path) == identity


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/ocpp/CP%2F1",
        b"/ocpp/CP%2f1",
        b"/ocpp/a/b",
        b"/ocpp/CP1/",
        b"/ocpp//CP1",
        b"/ocpp/%2F",
    ],
)
def test_slash_literal_or_percent_encoded_is_refused(raw_path: bytes) -> None:
    """The identity is the single last path segment; '/' is no identifierString character."""
    refused(raw_path)


def test_empty_identity_is_refused() -> None:
    assert "no charge point identity" in refused(b"/ocpp/")


@pytest.mark.parametrize(
    "raw_path", [b"/ocpp/CP%FF", b"/ocpp/%C3", b"/ocpp/%C3%28", b"/ocpp/%ED%A0%80"]
)
def test_invalid_utf8_after_decoding_is_refused(raw_path: bytes) -> None:
    assert "UTF-8" in refused(raw_path)


def test_raw_non_ascii_bytes_are_refused() -> None:
    refused(b"/ocpp/CP\xff1")


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/ocpp/RDAM%20123",
        b"/ocpp/CP%00",
        b"/ocpp/CP%0A",
        b"/ocpp/CP%25",
        b"/ocpp/CP%",
        b"/ocpp/CP%zz",
        b"/ocpp/CP%3F",
        b"/ocpp/CP%23",
        b"/ocpp/CP%5C",
        b"/ocpp/CP%22",
        b"/ocpp/CP%27",
        b"/ocpp/CP%3C",
        b"/ocpp/CP,1",
        b"/ocpp/CP~1",
        b"/ocpp/CP%C3%A9",
    ],
)
def test_characters_outside_identifier_string_are_refused(raw_path: bytes) -> None:
    assert "not allowed" in refused(raw_path)


def test_refusal_reason_is_printable_even_for_control_characters() -> None:
    """The reason is logged and returned: a NUL or newline must appear escaped."""
    reason = refused(b"/ocpp/CP%00%0A%1B")
    assert reason.isprintable()
    assert "\\x00" in reason


def test_space_is_refused_by_default() -> None:
    """' ' is no identifierString character."""
    refused(b"/ocpp/RDAM%20123")


def test_space_is_allowed_as_an_extra_character() -> None:
    """3.1.1 example 2: identity "RDAM 123" connects to wss://csms.example.com/ocppj/RDAM%20123."""
    rules = IdentityRules("/ocppj", extra_characters=" ")
    assert rules.parse(b"/ocppj/RDAM%20123") == "RDAM 123"


def test_extra_characters_extend_and_do_not_replace_the_set() -> None:
    rules = IdentityRules("/ocpp", extra_characters="é#")
    assert rules.parse(b"/ocpp/Caf%C3%A9-1%23") == "Café-1#"
    assert isinstance(rules.parse(b"/ocpp/a%20b"), IdentityError)


def test_extra_characters_do_not_allow_a_literal_slash_segment() -> None:
    rules = IdentityRules("/ocpp", extra_characters="/")
    assert isinstance(rules.parse(b"/ocpp/a/b"), IdentityError)


@pytest.mark.parametrize(
    ("prefix", "raw_path", "expected"),
    [
        ("/ocpp", b"/ocpp/CP1", True),
        ("/ocpp", b"/ocpp/", True),
        ("/ocpp", b"/ocpp/a/b", True),
        ("/ocpp", b"/ocpp", False),
        ("/ocpp", b"/ocppx/CP1", False),
        ("/ocpp", b"/OCPP/CP1", False),
        ("/ocpp", b"/other/CP1", False),
        ("/ocpp", b"/", False),
        ("/ocpp", b"", False),
        ("/ocpp", b"/x/ocpp/CP1", False),
        ("/csms/v2/ocpp", b"/csms/v2/ocpp/CP1", True),
        ("/csms/v2/ocpp", b"/csms/v2/CP1", False),
    ],
)
def test_matches_only_paths_below_the_prefix(prefix: str, raw_path: bytes, expected: bool) -> None:
    assert IdentityRules(prefix).matches(raw_path) is expected


def test_identity_below_a_multi_segment_prefix_is_parsed() -> None:
    assert IdentityRules("/csms/v2/ocpp").parse(b"/csms/v2/ocpp/CP%2D9") == "CP-9"


@pytest.mark.parametrize("raw_path", [b"/abcd/CP1", b"/other/CP1", b"/ocpp"])
def test_path_outside_the_prefix_names_no_identity(raw_path: bytes) -> None:
    """parse(): "the identity of `{prefix}/{identity}`, or why it is not one" - a path of the
    same length under another prefix is not `{prefix}/{identity}`."""
    refused(raw_path)
