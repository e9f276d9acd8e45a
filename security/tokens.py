"""API tokens of UI clients: role, scopes, expiry; only a SHA-256 of each token is stored.

Tokens are 256-bit random strings, so a fast hash is the right one (nothing to slow down: guessing
is hopeless); lookups go by hash, so no comparison of secrets happens at all.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from .jsonfile import WatchedJsonFile

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
TOKEN_PREFIX = "ogw_"


def token_hash(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    """One UI token (the secret itself is never stored)."""

    token_id: str
    name: str
    role: Role
    scopes: tuple[str, ...]  # glob patterns over charge point identities
    created_at: float
    expires_at: float | None
    hash: str
    revoked: bool = False

    def allows(self, role: Role) -> bool:
        """True when this token's role includes `role`'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, identity: str) -> bool:
        """True when `identity` is within the token's scopes."""
        return any(fnmatch.fnmatchcase(identity, pattern) for pattern in self.scopes)

    def valid_at(self, now: float) -> bool:
        """Not revoked and not expired."""
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


class TokenStore(Protocol):
    """UI tokens by hash."""

    def by_hash(self, digest: str) -> ApiToken | None:
        """The token with this hash, if any."""

    def put(self, token: ApiToken) -> None:
        """Create or replace a token."""

    def all(self) -> list[ApiToken]:
        """Every token, oldest first."""


def new_token(
    role: Role, scopes: tuple[str, ...] = ("*",), expires_in: float | None = None, name: str = ""
) -> tuple[str, ApiToken]:
    """A new (secret, record) pair; the secret is shown once and never stored."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = time.time()
    record = ApiToken(
        token_id=secrets.token_hex(4),
        name=name,
        role=role,
        scopes=tuple(scopes) or ("*",),
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
        hash=token_hash(secret),
    )
    return secret, record


def revoke_in(store: TokenStore, token_id: str) -> bool:
    """Revoke the token with this id in `store`; True when it was found and valid."""
    for token in store.all():
        if token.token_id == token_id and not token.revoked:
            store.put(replace(token, revoked=True))
            return True
    return False


class InMemoryTokenStore:
    """Tokens in process memory."""

    def __init__(self) -> None:
        self._tokens: dict[str, ApiToken] = {}

    def by_hash(self, digest: str) -> ApiToken | None:
        return self._tokens.get(digest)

    def put(self, token: ApiToken) -> None:
        self._tokens[token.hash] = token

    def all(self) -> list[ApiToken]:
        return sorted(self._tokens.values(), key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> bool:
        """Revoke the token with this id; True when found."""
        return revoke_in(self, token_id)


class JsonFileTokenStore(InMemoryTokenStore):
    """Tokens persisted to a JSON file (0600); re-read when another process changed it."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._file = WatchedJsonFile(path)
        self.path = self._file.path
        self.refresh()

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when it did."""
        changed, data = self._file.changed()
        if changed:
            tokens = (
                ApiToken(**{**item, "scopes": tuple(item["scopes"])})
                for item in (data or {}).get("tokens", [])
            )
            self._tokens = {token.hash: token for token in tokens}
        return changed

    def by_hash(self, digest: str) -> ApiToken | None:
        self.refresh()
        return super().by_hash(digest)

    def revoke(self, token_id: str) -> bool:
        self.refresh()
        return super().revoke(token_id)

    def put(self, token: ApiToken) -> None:
        with self._file.locked():
            self.refresh()
            super().put(token)
            self._file.write({"version": 1, "tokens": [asdict(t) for t in self.all()]})
