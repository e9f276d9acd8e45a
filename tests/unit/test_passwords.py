"""Charge point passwords (security/passwords.py): hashing, generation and per-version rules.

1.6 security whitepaper A00.FR.205/304: the AuthorizationKey is at least 16 bytes, at most 20,
configured as up to 40 hexadecimal digits, and sent as the raw key bytes. 2.0.1 part 2
SecurityCtrlr.BasicAuthPassword (TC_A_01..03_CSMS tool validations): a passwordString of 16 to 40
alphanumerics and the special characters of identifierString, sent as UTF-8.
"""

from __future__ import annotations

import string
import time

import argon2
import pytest

from security.passwords import (
    GENERATED_ALPHABET,
    HASHER,
    PASSWORD_ALPHABET,
    PasswordRuleError,
    generate_authorization_key,
    generate_password,
    hash_password,
    password_bytes_v2,
    password_bytes_v16,
    verify_password,
)

V2_PASSWORD = b"Zq8-Kp3_Lm9*Wx2@Rt5.Vb7=Hs4:Nd6|"
V16_KEY = bytes(range(0xEC, 0x100))  # 20 raw bytes, including high bytes


@pytest.fixture(scope="module")
def stored_hash() -> str:
    return hash_password(V2_PASSWORD)


# -- hashing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [V2_PASSWORD, V16_KEY, b"\x00" * 16, "ÄÖÜäöüß-unicode-pw".encode()],
    ids=["v2-text", "v16-raw-bytes", "nul-bytes", "utf8"],
)
def test_hash_then_verify_round_trips(password: bytes) -> None:
    assert verify_password(hash_password(password), password) is True


@pytest.mark.parametrize(
    "attempt",
    [V2_PASSWORD[:-1], V2_PASSWORD + b"x", V2_PASSWORD.lower(), b"", V16_KEY],
    ids=["truncated", "extended", "case-changed", "empty", "other"],
)
def test_wrong_password_does_not_verify(stored_hash: str, attempt: bytes) -> None:
    assert verify_password(stored_hash, attempt) is False


@pytest.mark.parametrize(
    "broken",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=1024,t=1,p=1$!!!$!!!",
        "$2b$12$abcdefghijklmnopqrstuuJb2GZ0bK2KZ3pQJ7wqpD3E5F6G7H8I9",  # bcrypt
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$é",  # non-ASCII (hand-edited file)
        "\x00",
    ],
    ids=["empty", "garbage", "prefix-only", "bad-base64", "bcrypt", "non-ascii", "nul"],
)
def test_malformed_hash_verifies_false_and_never_raises(broken: str) -> None:
    assert verify_password(broken, V2_PASSWORD) is False


def test_truncated_or_retyped_hash_verifies_false(stored_hash: str) -> None:
    for broken in (
        stored_hash[:-5],
        stored_hash.replace("argon2id", "argon2i"),
        stored_hash.replace("m=1024", "m=1"),
        stored_hash.replace("t=1", "t=0"),
    ):
        assert verify_password(broken, V2_PASSWORD) is False, broken


def test_hashes_are_salted() -> None:
    first, second = hash_password(V2_PASSWORD), hash_password(V2_PASSWORD)
    assert first != second
    assert verify_password(first, V2_PASSWORD) and verify_password(second, V2_PASSWORD)


def test_hash_encodes_the_chosen_argon2id_parameters(stored_hash: str) -> None:
    assert stored_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    params = argon2.extract_parameters(stored_hash)
    assert params.type is argon2.Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (1, 1024, 1)
    assert (params.salt_len, params.hash_len) == (16, 32)
    assert V2_PASSWORD.decode() not in stored_hash


def test_hashes_with_other_parameters_still_verify_and_need_rehash() -> None:
    old = argon2.PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).hash(V2_PASSWORD)
    assert verify_password(old, V2_PASSWORD) is True
    assert HASHER.check_needs_rehash(old) is True
    assert HASHER.check_needs_rehash(hash_password(V2_PASSWORD)) is False


def test_verification_costs_under_5_ms(stored_hash: str) -> None:
    """The reconnect-storm cost choice: t=1, m=1 MiB is ~0.5 ms, far below the 5 ms bound."""
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        assert verify_password(stored_hash, V2_PASSWORD)
    average = (time.perf_counter() - start) / runs
    assert average < 0.005, f"{average * 1000:.2f} ms per verification"


# -- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [16, 17, 32, 40])
def test_generated_password_has_the_length_asked_for(length: int) -> None:
    password = generate_password(length)
    assert len(password) == length
    assert set(password) <= set(GENERATED_ALPHABET)
    assert password_bytes_v2(password) == password.encode()


def test_generated_password_defaults_to_32_letters_and_digits() -> None:
    password = generate_password()
    assert len(password) == 32
    assert set(password) <= set(string.ascii_letters + string.digits)
    assert password != generate_password()


@pytest.mark.parametrize("length", [-1, 0, 8, 15, 41, 64])
def test_generate_password_refuses_lengths_outside_16_to_40(length: int) -> None:
    with pytest.raises(PasswordRuleError):
        generate_password(length)


def test_generated_alphabet_is_within_the_basic_auth_alphabet() -> None:
    assert set(GENERATED_ALPHABET) <= set(PASSWORD_ALPHABET)


def test_generated_authorization_key_is_40_hex_digits_of_20_bytes() -> None:
    key = generate_authorization_key()
    assert len(key) == 40
    assert set(key) <= set("0123456789abcdef")
    assert len(password_bytes_v16(key)) == 20
    assert key != generate_authorization_key()


# -- 2.0.1 / 2.1 BasicAuthPassword --------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "a" * 16,
        "Z9" * 20,
        "Abc123*-_=:+|@.xyz",  # every special character of identifierString
        "0123456789012345",
    ],
    ids=["16-letters", "40-chars", "all-specials", "digits"],
)
def test_v2_password_within_rules_is_sent_as_utf8(password: str) -> None:
    assert password_bytes_v2(password) == password.encode("utf-8")


@pytest.mark.parametrize(
    "password",
    [
        "",
        "a" * 15,
        "a" * 41,
        "abcdefgh ijklmnop",  # space
        "abcdefgh#ijklmnop",
        "abcdefgh/ijklmnop",
        "abcdefgh%ijklmnop",
        "é" * 16,  # letters, but not alpha-numeric ASCII
        "\uff11" * 16,  # FULLWIDTH DIGIT ONE: a digit to str.isdigit, not to the rule
        "abcdefgh\nijklmnop",
    ],
    ids=[
        "empty",
        "15-chars",
        "41-chars",
        "space",
        "hash",
        "slash",
        "percent",
        "non-ascii-letters",
        "fullwidth-digits",
        "newline",
    ],
)
def test_v2_password_outside_rules_is_refused(password: str) -> None:
    with pytest.raises(PasswordRuleError):
        password_bytes_v2(password)


# -- 1.6 AuthorizationKey (A00.FR.205) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("key_hex", "raw"),
    [
        ("00" * 16, b"\x00" * 16),
        ("ff" * 20, b"\xff" * 20),
        ("AbCdEf0123456789" * 2, bytes.fromhex("abcdef0123456789" * 2)),
        ("0102030405060708090a0b0c0d0e0f1011", bytes(range(1, 18))),
    ],
    ids=["16-bytes", "20-bytes", "mixed-case", "17-bytes"],
)
def test_v16_key_hex_becomes_the_raw_key_bytes(key_hex: str, raw: bytes) -> None:
    """A00.FR.205: the charge point sends the raw key, not its hexadecimal text."""
    assert password_bytes_v16(key_hex) == raw


@pytest.mark.parametrize(
    "key_hex",
    ["", "00" * 15, "00" * 21, "0" * 33, "0" * 39, "zz" * 16, "0x" + "00" * 16, "é" * 32],
    ids=["empty", "15-bytes", "21-bytes", "odd-33", "odd-39", "non-hex", "0x-prefix", "unicode"],
)
def test_v16_key_that_is_not_16_to_20_bytes_of_hex_is_refused(key_hex: str) -> None:
    with pytest.raises(PasswordRuleError):
        password_bytes_v16(key_hex)
