"""What a load run does: the `LoadSpec` (one field per command-line option) and its checks."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .frames import EXPECTS, Expect
from .payloads import VERSIONS

Scenario = Literal["idle", "heartbeat", "session", "storm"]
SCENARIOS: tuple[Scenario, ...] = ("idle", "heartbeat", "session", "storm")
PROGRAM = ("python", "-m", "bench.load")


@dataclass
class LoadSpec:
    """A load run: N simulated charge points against `url` (identity appended to it)."""

    url: str
    scenario: Scenario = "heartbeat"
    connections: int = 100
    processes: int = 1
    duration: float = 10.0  # idle: hold time; heartbeat/session: measured window (after warmup)
    subprotocol: str = "ocpp1.6"
    identity_prefix: str = "BENCH"  # identities f"{prefix}{i:06d}"
    password: str | None = None  # HTTP Basic auth, user = identity
    ca_file: str | None = None  # server CA for wss (default: the system's trust store)
    client_certs: str | None = None  # mTLS: DIR/{identity}.pem and DIR/{identity}.key
    server_pids: list[int] = field(default_factory=list)  # roots of the server process trees
    expect: Expect = "ocpp"
    out: str | None = None  # JSON lines file the result is appended to
    plot: str | None = None  # PNG figure of the run
    no_progress: bool = False
    deadline: float = 600.0  # bound on the whole run, seconds
    allow_errors: bool = False  # CLI: exit 0 even when errors were counted
    warmup: float = 2.0  # heartbeat/session: seconds of load before the measured window
    rate: float | None = None  # heartbeat/session: total calls per second (None: back to back)
    heartbeat_check: bool = False  # idle: every connection sends one Heartbeat at the end
    connect_concurrency: int = 200  # handshakes in flight per process (storm: see below)
    storm_concurrency: int | None = None  # storm reconnect: handshakes in flight per process
    call_timeout: float = 10.0
    connect_timeout: float = 30.0
    max_retry_wait: float = 30.0  # storm: bound on one wait after a refusal (Retry-After)
    meter_values: int = 5  # session: periodic meter value messages per transaction
    payload_version: str | None = None  # send another version's payloads (a negative test)
    server_name: str = "localhost"  # TLS SNI and the name the server certificate must carry
    settle: float = 1.0  # idle: seconds after the warm-up connection before reading RSS
    source_addresses: int = 1  # loopback: spread over 127.0.0.1..N (a port range each, ~28k)
    command: str | None = None  # the exact command line; None: rebuilt from the fields

    def check(self) -> None:
        """Raise ValueError naming the first field that makes no sense, and the fix."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"url {self.url!r}: write ws://HOST:PORT/PATH/ or wss://...")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r}: use one of {', '.join(SCENARIOS)}")
        if self.subprotocol not in VERSIONS:
            raise ValueError(f"subprotocol {self.subprotocol!r}: use one of {', '.join(VERSIONS)}")
        if self.payload_version is not None and self.payload_version not in VERSIONS:
            raise ValueError(f"payload_version {self.payload_version!r}: use one of {VERSIONS}")
        if self.expect not in EXPECTS:
            raise ValueError(f"expect {self.expect!r}: use one of {', '.join(EXPECTS)}")
        if self.connections < 1 or self.processes < 1:
            raise ValueError("connections and processes must be at least 1")
        if self.processes > self.connections:
            raise ValueError(f"{self.processes} processes for {self.connections} connections")
        if self.connections > 1_000_000:
            raise ValueError("identities have 6 digits: at most 1,000,000 connections")
        for name in ("duration", "warmup", "settle"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("deadline", "call_timeout", "connect_timeout", "max_retry_wait"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive (or None: back to back)")
        if self.connect_concurrency < 1 or (self.storm_concurrency or 1) < 1:
            raise ValueError("concurrency limits must be at least 1")
        if not 1 <= self.source_addresses <= 250:
            raise ValueError("source_addresses must be 1 to 250")
        if self.meter_values < 0:
            raise ValueError("meter_values must not be negative")
        if parts.scheme == "ws" and (self.client_certs or self.ca_file):
            raise ValueError("ca_file and client_certs need a wss:// url")
        if self.client_certs and not Path(self.client_certs).is_dir():
            raise ValueError(f"client_certs {self.client_certs!r} is not a directory")

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def payloads(self) -> str:
        """The OCPP version whose payloads are sent (normally the subprotocol's)."""
        return self.payload_version or self.subprotocol

    def identity(self, index: int) -> str:
        return f"{self.identity_prefix}{index:06d}"

    def command_line(self) -> str:
        """The exact command if known, else the equivalent `python -m bench.load` command."""
        return self.command or shlex.join([*PROGRAM, *self.to_args()])

    def to_args(self) -> list[str]:
        """Command-line arguments equivalent to this spec (defaults left out, no password)."""
        defaults = LoadSpec(url="")
        args = ["--url", self.url]
        for spec_field in dataclasses.fields(self):
            name = spec_field.name
            value = getattr(self, name)
            if name in ("url", "command") or value == getattr(defaults, name):
                continue
            option = "--" + name.replace("_", "-")
            if name == "server_pids":
                args += ["--server-pid", *map(str, value)]
            elif name == "password":
                args += [option, "***"]  # never a secret in a result file
            elif isinstance(value, bool):
                args.append(option)
            else:
                args += [option, str(value)]
        return args
