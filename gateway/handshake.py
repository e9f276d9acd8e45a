"""The charge point handshake as a pure pipeline: connection facts in, a verdict out.

Order: identity from the path -> security policy (may refuse; may narrow versions) -> version
negotiation. A refusal is an HTTP status sent before the upgrade; only "no common version" is
answered after it, because OCPP-J (part 4, 3.2) requires completing the handshake without a
Sec-WebSocket-Protocol header and then closing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .identity import IdentityError, IdentityRules
from .negotiation import negotiate_subprotocol
from .session import ValidationMode
from .versions.base import OcppVersion


@dataclass(frozen=True, slots=True)
class HandshakeFacts:
    """What is known about a WebSocket upgrade request before answering it."""

    raw_path: bytes
    subprotocols: tuple[str, ...]
    headers: tuple[tuple[bytes, bytes], ...]
    client: str
    scheme: str
    tls: dict[str, Any] | None = None  # the ASGI TLS extension when the gateway terminated TLS


@dataclass(frozen=True, slots=True)
class Allow:
    """The security policy admits the identity, with what it knows of the charge point."""

    profile: int = 0
    allowed_versions: frozenset[str] | None = None
    validation: ValidationMode | None = None
    client_chain: tuple[bytes, ...] = ()  # profile 3: the checked chain, re-checked on reloads
    certificate_not_after: float | None = None  # profile 3: when the client certificate expires


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the upgrade request with an HTTP error: `reason` is a stable code for logs."""

    status: int
    reason: str
    detail: str
    identity: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: str | None = None  # what the client is told; `detail` when None (safe to show)


@dataclass(frozen=True, slots=True)
class Admit:
    """Upgrade with `version`'s subprotocol."""

    identity: str
    version: OcppVersion
    validation: ValidationMode
    profile: int
    client_chain: tuple[bytes, ...] = ()
    certificate_not_after: float | None = None


@dataclass(frozen=True, slots=True)
class NoCommonVersion:
    """Upgrade without a subprotocol, then close (OCPP-J 3.2)."""

    identity: str
    offered: tuple[str, ...]
    detail: str


Verdict = Admit | Refuse | NoCommonVersion


class SecurityPolicy(Protocol):
    """Decides from the facts whether `identity` may connect (security profiles plug in here)."""

    def check(self, identity: str, facts: HandshakeFacts) -> Allow | Refuse: ...


class OpenPolicy:
    """Security profile 0: every well-formed identity may connect (no credentials)."""

    def check(self, identity: str, facts: HandshakeFacts) -> Allow | Refuse:
        return Allow(profile=0)


class HandshakePipeline:
    """Evaluates an upgrade request into a verdict; no IO."""

    def __init__(
        self,
        identity_rules: IdentityRules,
        versions: Sequence[OcppVersion],
        security: SecurityPolicy,
        default_validation: ValidationMode = "strict",
    ) -> None:
        self._identity = identity_rules
        self._versions = {v.subprotocol: v for v in versions}
        self._preference = tuple(v.subprotocol for v in versions)
        self._security = security
        self._validation: ValidationMode = default_validation

    def evaluate(self, facts: HandshakeFacts) -> Verdict:
        """The verdict for one upgrade request."""
        identity = self._identity.parse(facts.raw_path)
        if isinstance(identity, IdentityError):
            return Refuse(400, "invalid_identity", identity.reason)
        allowed = self._security.check(identity, facts)
        if isinstance(allowed, Refuse):
            return allowed
        chosen = negotiate_subprotocol(
            facts.subprotocols, self._preference, allowed.allowed_versions
        )
        if chosen is None:
            supported = [
                p
                for p in self._preference
                if allowed.allowed_versions is None or p in allowed.allowed_versions
            ]
            offered = ", ".join(facts.subprotocols) or "none"
            detail = (
                f"no common OCPP version (offered: {offered}; supported: {', '.join(supported)})"
            )
            return NoCommonVersion(identity, facts.subprotocols, detail)
        return Admit(
            identity,
            self._versions[chosen],
            allowed.validation or self._validation,
            allowed.profile,
            allowed.client_chain,
            allowed.certificate_not_after,
        )
