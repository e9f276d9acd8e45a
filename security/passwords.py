"""Charge point passwords: generation, per-version rules, and hashing with argon2id.

Cost choice: OCPP passwords are machine-generated secrets (1.6 AuthorizationKey: 16-20 random
bytes; 2.x BasicAuthPassword: 16-40 characters), so their entropy, not the hash cost, is what
defeats guessing: 16 random bytes are 2^128 guesses whatever the hash costs. The hash only has to
make a stolen record file useless and verification safe (constant time). argon2id at its library
default (t=3, m=64 MiB) costs about 150 ms per check here: a reconnect storm of 10,000 charge points
would be 25 minutes of CPU. t=1, m=1 MiB, p=1 costs about 0.5 ms (measured in docs/security.md), so
the same storm costs about 5 s, less than its TLS handshakes. Parameters live in each hash, so
`needs_rehash` upgrades old hashes after a change.
"""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, hash_len=32, salt_len=16)

# 2.0.1 part 2 (BasicAuthPassword, passwordString) and TC_A_*: alphanumerics and the special
# characters of identifierString; 16 to 40 characters.
PASSWORD_ALPHABET = string.ascii_letters + string.digits + "*-_=:+|@."
GENERATED_ALPHABET = string.ascii_letters + string.digits  # safest for every firmware


class PasswordRuleError(ValueError):
    """A password that the OCPP version does not allow; says which rule."""


def generate_password(length: int = 32) -> str:
    """A random 2.x BasicAuthPassword (letters and digits, `length` of 16-40)."""
    if not 16 <= length <= 40:
        raise PasswordRuleError("a BasicAuthPassword has 16 to 40 characters")
    return "".join(secrets.choice(GENERATED_ALPHABET) for _ in range(length))


def generate_authorization_key() -> str:
    """A random 1.6 AuthorizationKey: 20 bytes, as the 40 hex digits it is configured with."""
    return secrets.token_hex(20)


def password_bytes_v2(password: str) -> bytes:
    """The Basic-auth password bytes of a 2.0.1/2.1 BasicAuthPassword, checked against its rules."""
    if not 16 <= len(password) <= 40:
        raise PasswordRuleError("a BasicAuthPassword has 16 to 40 characters (A00.FR.xxx, TC_A)")
    bad = set(password) - set(PASSWORD_ALPHABET)
    if bad:
        raise PasswordRuleError("a BasicAuthPassword may only use letters, digits and *-_=:+|@.")
    return password.encode()


def password_bytes_v16(authorization_key_hex: str) -> bytes:
    """The Basic-auth password bytes of a 1.6 AuthorizationKey configured as hex (A00.FR.205).

    The charge point sends the raw key bytes (16 to 20 bytes), not the hex text.
    """
    try:
        raw = bytes.fromhex(authorization_key_hex)
    except ValueError:
        raise PasswordRuleError("an AuthorizationKey is written as hexadecimal digits") from None
    if not 16 <= len(raw) <= 20:
        raise PasswordRuleError("an AuthorizationKey has 16 to 20 bytes (32 to 40 hex digits)")
    return raw


def hash_password(password: bytes) -> str:
    """An argon2id hash of the password bytes (salted; parameters encoded in the string)."""
    return HASHER.hash(password)


def verify_password(password_hash: str, password: bytes) -> bool:
    """True when `password` matches; constant-time within argon2; False on any malformed hash."""
    try:
        return HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError, TypeError):
        return False
