"""TLS termination facts: the current server context, the ASGI TLS extension, failure reasons.

Hypercorn 0.18 neither exposes the client certificate to the app (hypercorn issue #62) nor reports
failed handshakes, so the gateway terminates TLS itself (`gateway/listener.py`). A failed handshake
becomes a security event with the peer address; a successful one adds the ASGI TLS extension to
every scope of the connection: `scope["extensions"]["tls"]` with `tls_version`, `cipher_suite`,
`client_cert_chain` (PEM) and the non-standard `client_cert_chain_der` (DER, leaf first),
`tls_version_name` and `cipher_name`.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from security.tls import CIPHER_SUITE_IDS, TLS_VERSION_IDS

FailureCallback = Callable[[str, str, str], None]  # (peer, reason, detail)


@dataclass
class TlsTermination:
    """The current server context (swapped on reload) and which local ports are wss."""

    context: ssl.SSLContext
    ports: frozenset[int]
    handshake_timeout: float = 10.0
    on_failure: FailureCallback = field(default=lambda peer, reason, detail: None)


def tls_extension(ssl_object: Any) -> dict[str, Any]:
    """The ASGI TLS extension of an established TLS connection."""
    chain_der: tuple[bytes, ...] = ()
    try:  # the verified chain (private API in 3.11, public as get_verified_chain in 3.13)
        chain_der = tuple(
            cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
            for cert in ssl_object._sslobj.get_verified_chain() or ()
        )
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        chain_der = ()
    if not chain_der:  # e.g. a resumed session: the leaf only; the policy completes the chain
        leaf = ssl_object.getpeercert(binary_form=True)
        chain_der = (leaf,) if leaf else ()
    cipher = ssl_object.cipher()
    cipher_name = cipher[0] if cipher else None
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der) for der in chain_der],
        "client_cert_chain_der": chain_der,
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": TLS_VERSION_IDS.get(version or ""),
        "tls_version_name": version,
        "cipher_suite": CIPHER_SUITE_IDS.get(cipher_name or ""),
        "cipher_name": cipher_name,
    }


class TlsScope:
    """Wraps Hypercorn's app wrapper of one connection to add the TLS extension to scopes."""

    def __init__(self, app: Any, extension: dict[str, Any]) -> None:
        self._app = app
        self._extension = extension

    async def __call__(self, scope: dict[str, Any], *args: Any) -> Any:
        extensions = scope.get("extensions")
        scope["extensions"] = {**(extensions or {}), "tls": self._extension}
        return await self._app(scope, *args)


# OpenSSL verify messages -> the policy's reason codes (same codes as the app-level check).
_VERIFY_REASONS = (
    ("expired", "cert_expired"),
    ("not yet valid", "cert_not_yet_valid"),
    ("key too weak", "cert_weak_key"),
    ("key too small", "cert_weak_key"),
    ("purpose", "cert_no_client_auth"),
    ("revoked", "cert_revoked"),
)


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """(reason code, detail) of a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        for needle, code in _VERIFY_REASONS:
            if needle in message:
                return code, message
        return "cert_untrusted", message
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or str(exc)
        if "VERSION" in reason.upper() or reason == "UNSUPPORTED_PROTOCOL":
            return "tls_version_refused", reason
        if "CIPHER" in reason.upper():
            return "tls_no_shared_cipher", reason
        if "CERTIFICATE" in reason.upper():
            return "cert_untrusted", reason
        return "tls_handshake_failed", reason
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, ConnectionAbortedError) and "taking longer" in str(exc)
    ):
        return "tls_handshake_timeout", "no TLS handshake within the timeout"
    return "tls_handshake_failed", f"{type(exc).__name__}: {exc}"[:200]
