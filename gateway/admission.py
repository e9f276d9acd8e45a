"""The security policy of the handshake: feeds the security core the facts of a connection.

Turns the HTTP/TLS facts (scheme, ASGI TLS extension, Authorization header, peer address, or the
headers of a trusted TLS-offloading proxy) into `security.policy.ConnectionFacts`, asks the
`Authenticator`, logs every refusal as a security event and maps the verdict for the handshake.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from security.policy import Authenticator, ConnectionFacts, Refused

from .handshake import Allow, HandshakeFacts, Refuse
from .security_events import SecurityEvents


@dataclass(frozen=True, slots=True)
class OffloadSettings:
    """TLS offload: which proxies are believed, and the headers they set."""

    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    scheme_header: bytes
    cert_header: bytes

    @classmethod
    def build(cls, proxies: Sequence[str], scheme_header: str, cert_header: str) -> OffloadSettings:
        """Settings from configuration values."""
        return cls(
            tuple(ipaddress.ip_network(p, strict=False) for p in proxies),
            scheme_header.lower().encode(),
            cert_header.lower().encode(),
        )

    def trusts(self, address: str) -> bool:
        """True when `address` is one of the trusted proxies."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.trusted)

    def client_address(self, headers: Sequence[tuple[bytes, bytes]]) -> str:
        """The address the trusted proxy appended last to X-Forwarded-For ("" when none).

        Every X-Forwarded-For line counts, in order, as one list (RFC 9110 5.3: repeated lines of
        a list header are one comma-joined list; HAProxy's `option forwardfor` adds its own line
        after the one the client sent). Only the last entry is the proxy's: the others were
        written by whoever connected to it. Not an address (e.g. "unknown"): "" as well.
        """
        last = ""
        for key, value in headers:
            if key.lower() == b"x-forwarded-for":
                last = value.decode("latin-1").rpartition(",")[2].strip()
        try:
            return str(ipaddress.ip_address(_without_port(last)))  # one key per address
        except ValueError:
            return ""


def _without_port(hop: str) -> str:
    """`hop` without a port some proxies add (`192.0.2.1:4711`, `[2001:db8::1]:4711`)."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The header's value; None when absent or repeated (a repeated security header is spoofed)."""
    values = [value for key, value in headers if key.lower() == name]
    return values[0] if len(values) == 1 else None


def _peer_ip(remote: str) -> str:
    return remote.rsplit(":", 1)[0].strip("[]")


class ProfilePolicy:
    """`handshake.SecurityPolicy` enforcing security profiles 0-3."""

    def __init__(
        self,
        authenticator: Authenticator,
        events: SecurityEvents,
        offload: OffloadSettings | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._events = events
        self._offload = offload

    def check(self, identity: str, facts: HandshakeFacts) -> Allow | Refuse:
        """Allow or refuse `identity` on this connection; refusals are security events."""
        connection = self._facts(identity, facts)
        verdict = self._authenticator.authenticate(connection)
        if isinstance(verdict, Refused):
            self._events.emit(
                verdict.reason,
                identity=identity,
                remote=facts.client,
                detail=verdict.detail,
                status=verdict.status,
                scheme=facts.scheme,
            )
            return Refuse(
                verdict.status,
                verdict.reason,
                verdict.detail,
                identity,
                verdict.headers,
                body=verdict.body,
            )
        record = verdict.record
        return Allow(
            profile=record.security_profile,
            allowed_versions=frozenset(record.allowed_versions)
            if record.allowed_versions is not None
            else None,
            validation=record.validation,
            client_chain=connection.client_chain if verdict.certificate else (),
            certificate_not_after=(
                verdict.certificate.not_after.timestamp() if verdict.certificate else None
            ),
        )

    def _facts(self, identity: str, facts: HandshakeFacts) -> ConnectionFacts:
        remote_ip = _peer_ip(facts.client)
        authorization = _header(facts.headers, b"authorization")
        tls = facts.tls
        if tls is not None:
            return ConnectionFacts(
                identity,
                True,
                remote_ip,
                authorization,
                tuple(tls.get("client_cert_chain_der") or ()),
                tls.get("tls_version_name"),
            )
        offload = self._offload
        if offload is not None:
            scheme = _header(facts.headers, offload.scheme_header)
            cert = _header(facts.headers, offload.cert_header)
            if offload.trusts(remote_ip):
                secure = scheme is not None and scheme.lower() in (b"https", b"wss")
                chain = _chain_from_header(cert) if secure and cert else ()
                # Lockouts count per client, not per proxy: the address the proxy appended last
                # to X-Forwarded-For, or none (identity-only counting) when it sent none.
                client_ip = offload.client_address(facts.headers)
                return ConnectionFacts(identity, secure, client_ip, authorization, chain)
            if scheme is not None or cert is not None:
                self._events.emit(
                    "offload_headers_from_untrusted_peer",
                    identity=identity,
                    remote=facts.client,
                    detail="TLS offload headers from a peer that is not a trusted proxy: ignored",
                )
        return ConnectionFacts(identity, False, remote_ip, authorization)


def _chain_from_header(value: bytes) -> tuple[bytes, ...]:
    """DER certificates from a URL-encoded PEM header value (nginx `$ssl_client_escaped_cert`)."""
    text = unquote(value.decode("latin-1"))
    marker = "-----END CERTIFICATE-----"
    chain = []
    for block in text.split(marker):
        start = block.find("-----BEGIN CERTIFICATE-----")
        if start < 0:
            continue
        try:
            chain.append(ssl.PEM_cert_to_DER_cert(block[start:] + marker + "\n"))
        except ValueError:
            return ()
    return tuple(chain)
