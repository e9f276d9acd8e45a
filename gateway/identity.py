"""Charge point identities taken from the connection URL, validated before any other use.

OCPP-J (2.0.1 and 2.1 part 4, 3.1.1): the identity is the last path segment, percent-encoded as
needed; its type is identifierString (a-z A-Z 0-9 * - _ = : + | @ .) without ':' (it is also the
Basic-auth username), at most 48 characters. The same rule is applied to 1.6 charge points.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

MAX_IDENTITY_LENGTH = 48
IDENTIFIER_STRING_CHARACTERS = frozenset(string.ascii_letters + string.digits + "*-_=+|@.")


@dataclass(frozen=True, slots=True)
class IdentityError:
    """Why a path does not name a charge point (the text is safe to log and to return)."""

    reason: str


class IdentityRules:
    """Extracts and validates the identity from the raw request path below a prefix."""

    def __init__(self, path_prefix: str, extra_characters: str = "") -> None:
        self._prefix = path_prefix.encode("ascii") + b"/"
        self._allowed = IDENTIFIER_STRING_CHARACTERS | frozenset(extra_characters)

    def matches(self, raw_path: bytes) -> bool:
        """True when the path is under the charge point prefix (the route is ours)."""
        return raw_path.startswith(self._prefix)

    def parse(self, raw_path: bytes) -> str | IdentityError:
        """The percent-decoded identity of `{prefix}/{identity}`, or why it is not one."""
        if not raw_path.startswith(self._prefix):
            return IdentityError("the URL is not under the charge point path")
        segment = raw_path[len(self._prefix) :]
        if not segment:
            return IdentityError("the URL names no charge point identity")
        if b"/" in segment:
            return IdentityError("the identity must be the single last path segment")
        try:
            identity = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            return IdentityError("the identity is not valid percent-encoded UTF-8")
        if len(identity) > MAX_IDENTITY_LENGTH:
            return IdentityError(f"the identity is longer than {MAX_IDENTITY_LENGTH} characters")
        bad = {c for c in identity if c not in self._allowed}
        if bad:
            shown = "".join(sorted(repr(c)[1:-1] for c in bad))[:20]
            return IdentityError(f"the identity contains characters that are not allowed: {shown}")
        return identity
