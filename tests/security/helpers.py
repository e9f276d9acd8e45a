"""Building blocks for security-profile tests: CA material, TLS clients, connection attempts."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from gateway.events import GatewayEvent
from security.ca import (
    Issued,
    issue_client_certificate,
    load_certificates,
    load_private_key,
    write_certificates,
    write_private_key,
)

HEARTBEAT = '[2,"hb","Heartbeat",{}]'
PASSWORD = "S3cure-Passw0rd-0123456789"  # a 2.x BasicAuthPassword (16-40 characters)
AUTH_KEY_HEX = "00112233445566778899aabbccddeeff00112233"  # a 1.6 AuthorizationKey (20 bytes)


def basic(username: str | bytes, password: str | bytes) -> str:
    """An Authorization header value for HTTP Basic auth over raw bytes."""
    user = username.encode() if isinstance(username, str) else username
    secret = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(user + b":" + secret).decode()


def load_issuer(certs_dir: Path, name: str = "issuing") -> Issued:
    """The dev CA's issuing (or root) CA from the store."""
    ca = certs_dir / "ca"
    return Issued(load_certificates(ca / f"{name}.pem")[0], load_private_key(ca / f"{name}.key"))


@dataclass
class ClientCertificate:
    """A charge point certificate on disk (chain with the issuing CA, and key)."""

    issued: Issued
    chain: Path
    key: Path

    @property
    def serial(self) -> int:
        return self.issued.certificate.serial_number


def client_certificate(
    directory: Path, issuer: Issued, name: str, common_name: str, **options: Any
) -> ClientCertificate:
    """Issue a client certificate with `security.ca` and write it for a TLS client."""
    issued = issue_client_certificate(issuer, common_name, **options)
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    write_certificates(chain, [issued.certificate, issuer.certificate])
    write_private_key(key, issued.key)
    return ClientCertificate(issued, chain, key)


def client_context(
    certs_dir: Path,
    certificate: ClientCertificate | None = None,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
    legacy: bool = False,
) -> ssl.SSLContext:
    """A TLS client trusting the dev root, optionally presenting `certificate`.

    `legacy` lowers the client's own security level (to present weak keys or old protocols).
    """
    context = ssl.create_default_context(cafile=str(certs_dir / "trust" / "dev-root.pem"))
    if legacy or minimum is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if certificate is not None:
        context.load_cert_chain(certificate.chain, certificate.key)
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


@dataclass
class Attempt:
    """The outcome of one connection attempt as the client saw it."""

    status: int | None  # 101 when upgraded, else the HTTP status; None when TLS failed
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""
    close_code: int | None = None


async def attempt(
    url: str,
    *,
    auth: str | None = None,
    context: ssl.SSLContext | None = None,
    subprotocol: str = "ocpp2.0.1",
    headers: dict[str, str] | None = None,
) -> Attempt:
    """Connect, send a Heartbeat if upgraded, and report what happened."""
    extra = dict(headers or {})
    if auth is not None:
        extra["Authorization"] = auth
    try:
        async with websockets.connect(
            url, subprotocols=[subprotocol], additional_headers=extra, ssl=context, open_timeout=5
        ) as ws:
            await ws.send(HEARTBEAT)
            answer = await asyncio.wait_for(ws.recv(), 5)
            assert answer.startswith('[3,"hb"'), answer
            return Attempt(101)
    except InvalidStatus as refused:
        response = refused.response
        return Attempt(
            response.status_code,
            response.body or b"",
            {k.lower(): v for k, v in response.headers.raw_items()},
        )
    except (ssl.SSLError, OSError, websockets.exceptions.InvalidMessage, EOFError) as exc:
        return Attempt(None, error=f"{type(exc).__name__}: {exc}")


class EventLog:
    """Collects the router's security events."""

    def __init__(self) -> None:
        self.events: list[GatewayEvent] = []

    def __call__(self, event: GatewayEvent) -> None:
        if event.kind == "security":
            self.events.append(event)

    def reasons(self) -> list[str]:
        return [e.reason or "" for e in self.events]

    async def wait_for(self, reason: str, timeout: float = 3.0) -> GatewayEvent:
        for _ in range(int(timeout / 0.02)):
            for item in self.events:
                if item.reason == reason:
                    return item
            await asyncio.sleep(0.02)
        raise AssertionError(f"no security event {reason!r}; got {self.reasons()}")
