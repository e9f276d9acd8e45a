"""One simulated charge point's WebSocket: how it connects, calls, and what counts as an error.

Connections use `websockets` (asyncio client) as a lean charge point would: no compression, no
client pings (the server's pings are still answered), the negotiated subprotocol checked, HTTP Basic
auth (user = identity) when a password is given, TLS with SNI `server_name` for wss, and for mutual
TLS the identity's own certificate and key. A call sends one CALL and waits for its answer (one
outstanding call per charge point), judging every frame with `frames.judge_reply`.
"""

from __future__ import annotations

import asyncio
import base64
import random
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.protocol import State

from .frames import Expect, Reply, ReplyKind, call_frame, judge_reply, not_implemented_frame
from .spec import LoadSpec
from .tally import Tally

CLOSE_TIMEOUT = 2.0
RETRY_CLOSE_CODES = frozenset({1012, 1013})  # Service Restart, Try Again Later: come back later


class SubprotocolMismatch(Exception):
    """The server accepted the WebSocket without the subprotocol the charge point asked for."""


class Target:
    """Where and how the charge points connect (built once per process from the spec)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.secure = spec.scheme == "wss"
        self._ca_pem = Path(spec.ca_file).read_text() if spec.ca_file else None
        self._shared_tls: ssl.SSLContext | None = None
        if self.secure and not spec.client_certs:
            self._shared_tls = self._tls_context()

    def _tls_context(self) -> ssl.SSLContext:
        if self._ca_pem is None:
            return ssl.create_default_context()
        return ssl.create_default_context(cadata=self._ca_pem)

    def tls_context(self, identity: str) -> ssl.SSLContext | None:
        """The TLS client context of `identity` (its own with mutual TLS), None for ws."""
        if not self.secure:
            return None
        if self._shared_tls is not None:
            return self._shared_tls
        context = self._tls_context()
        folder = Path(self.spec.client_certs or ".")
        context.load_cert_chain(folder / f"{identity}.pem", folder / f"{identity}.key")
        return context

    def options(self, identity: str, number: int, open_timeout: float) -> dict[str, Any]:
        """`websockets.connect` options of charge point `number` (named `identity`)."""
        spec = self.spec
        options: dict[str, Any] = {
            "subprotocols": [spec.subprotocol],
            "compression": None,
            "ping_interval": None,
            "open_timeout": open_timeout,
            "close_timeout": CLOSE_TIMEOUT,
            "proxy": None,  # never through a proxy from the environment
            "user_agent_header": None,
        }
        if spec.password is not None:
            token = base64.b64encode(f"{identity}:{spec.password}".encode()).decode()
            options["additional_headers"] = {"Authorization": f"Basic {token}"}
        if self.secure:
            options["ssl"] = self.tls_context(identity)
            options["server_hostname"] = spec.server_name
        if spec.source_addresses > 1:  # more connections than one ephemeral port range holds
            options["local_addr"] = (f"127.0.0.{1 + number % spec.source_addresses}", 0)
        return options

    async def open(self, point: ChargePoint, open_timeout: float) -> ClientConnection:
        """Open the WebSocket of `point`; SubprotocolMismatch unless the subprotocol agreed."""
        options = self.options(point.identity, point.number, open_timeout)
        connection = await connect(self.spec.url + point.identity, **options)
        if connection.subprotocol != self.spec.subprotocol:
            await connection.close()
            raise SubprotocolMismatch(f"server chose {connection.subprotocol!r}")
        return connection


def connect_error_kind(exc: BaseException) -> str:
    """A short, stable name of a failed connection attempt (the error kind after `connect:`)."""
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, SubprotocolMismatch):
        return "subprotocol"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_verify"
    if isinstance(exc, ssl.SSLError):
        return f"tls:{exc.reason or type(exc).__name__}"
    return type(exc).__name__


def refusal_of(exc: BaseException) -> tuple[str, float | None] | None:
    """(reason, Retry-After seconds or None) when a failed connection is a refusal to retry.

    A 503 (admission control), a refused or reset TCP connection, or a connection closed before
    the HTTP answer is the server shedding load; anything else (401, a TLS error) is an error.
    """
    if isinstance(exc, InvalidStatus):
        if exc.response.status_code != 503:
            return None
        header = exc.response.headers.get("Retry-After")
        try:
            retry_after = float(header) if header is not None else None
        except ValueError:
            retry_after = None
        return "http_503", retry_after
    if isinstance(exc, ConnectionRefusedError):
        return "refused", None
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset", None
    if isinstance(exc, InvalidMessage):  # EOF before the HTTP response
        return "eof", None
    return None


def retry_wait(
    retry_after: float | None, attempt: int, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retrying: Retry-After plus up to 20 % jitter, else a jittered
    exponential backoff from 0.25 s; never above `cap`."""
    rng = rng or random
    if retry_after is not None:
        return min(cap, max(0.0, retry_after) * rng.uniform(1.0, 1.2))
    return min(cap, 0.25 * 2 ** min(attempt, 16) * rng.uniform(0.5, 1.0))


@dataclass(frozen=True, slots=True)
class CallSettings:
    """What every call of a process shares."""

    tally: Tally
    timeout: float
    expect: Expect


class ChargePoint:
    """One simulated charge point: its identity and (while connected) its WebSocket."""

    __slots__ = ("close_code", "identity", "lost", "next_id", "number", "settings", "stale", "ws")

    def __init__(self, identity: str, number: int, settings: CallSettings) -> None:
        self.identity = identity
        self.number = number
        self.settings = settings
        self.ws: ClientConnection | None = None
        self.next_id = 0
        self.stale: set[str] = set()  # ids of calls that timed out: their late answers are ignored
        self.lost = False  # the connection closed under it (counted once)
        self.close_code: int | None = None

    def connected(self, ws: ClientConnection) -> None:
        self.ws, self.lost, self.close_code = ws, False, None
        self.stale.clear()

    async def call(
        self, action: str, payload: dict[str, Any], count_close: bool = True
    ) -> Reply | None:
        """Send one CALL and wait for its answer: the Reply, or None after counting the error.

        A close is counted as `close:<code>` unless `count_close` is False (the caller decides);
        either way `lost` is set and `close_code` holds the code.
        """
        settings = self.settings
        tally = settings.tally
        ws = self.ws
        assert ws is not None
        self.next_id += 1
        message_id = self.next_id
        frame = call_frame(message_id, action, payload)
        sent = time.monotonic()
        try:
            await ws.send(frame, text=True)
            async with asyncio.timeout(settings.timeout):
                while True:
                    raw = await ws.recv(decode=False)
                    reply = judge_reply(raw, message_id, frame, settings.expect)
                    kind = reply.kind
                    if kind is ReplyKind.RESULT:
                        done = time.monotonic()
                        tally.record_call(action, done - sent, done)
                        return reply
                    if kind is ReplyKind.SERVER_CALL:
                        tally.server_calls[reply.detail] += 1
                        await ws.send(not_implemented_frame(reply.message_id), text=True)
                    elif kind is ReplyKind.OTHER_ID:
                        if reply.message_id in self.stale:
                            self.stale.discard(reply.message_id)
                        else:
                            tally.error("bad_reply:unexpected_id", f"{self.identity} {action}")
                    elif kind is ReplyKind.CALLERROR:
                        tally.error(f"callerror:{reply.detail}", f"{self.identity} {action}")
                        return None
                    else:
                        tally.error(f"bad_reply:{reply.detail}", f"{self.identity} {action}")
                        return None
        except TimeoutError:
            tally.error(f"timeout:{action}", self.identity)
            if len(self.stale) < 64:
                self.stale.add(str(message_id))
        except ConnectionClosed as exc:
            self.lost = True
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            if count_close:
                tally.error(f"close:{self.close_code}", f"{self.identity} during {action}")
        return None

    def closed_by_server(self) -> int | None:
        """The close code if the connection closed without the charge point closing it."""
        ws = self.ws
        if ws is None or self.lost:
            return None
        if ws.state is State.OPEN:
            return None
        return ws.close_code if ws.close_code is not None else 1006

    async def close(self) -> None:
        """Close the WebSocket (a stuck close is abandoned after CLOSE_TIMEOUT)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT + 1)
            except (TimeoutError, OSError, ConnectionClosed):
                ws.transport.abort()
