"""Gateway configuration: a TOML file plus `OCPP_GATEWAY_<SECTION>_<KEY>` environment variables.

The environment wins over the file. Every value is checked at start; an error names the key, what is
wrong and how to fix it. `describe()` renders the effective configuration with secrets masked.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import string
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ENV_PREFIX = "OCPP_GATEWAY_"
ENV_CONFIG_FILE = "OCPP_GATEWAY_CONFIG"
# Variables with the prefix that are not configuration keys (read by the CLI and the CA code).
NON_CONFIG_ENV = frozenset({ENV_CONFIG_FILE, "OCPP_GATEWAY_CA_PASSPHRASE", "OCPP_GATEWAY_TOKEN"})
KNOWN_SUBPROTOCOLS = ("ocpp2.1", "ocpp2.0.1", "ocpp1.6")
_PATH_CHARACTERS = frozenset(string.ascii_letters + string.digits + "/-._~")


class ConfigError(ValueError):
    """A configuration value is invalid: says which key, why, and the fix."""

    def __init__(self, key: str, problem: str, fix: str, env: str | None = None) -> None:
        where = f"'{key}'" + (f" (set by {env})" if env else "")
        super().__init__(f"configuration error at {where}: {problem}. Fix: {fix}")
        self.key, self.problem, self.fix, self.env = key, problem, fix, env


def _opt(default: Any, help: str, *, secret: bool = False) -> Any:
    if isinstance(default, list):
        return field(
            default_factory=lambda: list(default), metadata={"help": help, "secret": secret}
        )
    return field(default=default, metadata={"help": help, "secret": secret})


@dataclass(frozen=True)
class ServerConfig:
    """Listeners, workers and shutdown."""

    ws_bind: list[str] = _opt(
        ["0.0.0.0:9000"], "host:port list for plain ws (profiles 0 and 1); [] disables it"
    )
    path_prefix: str = _opt("/ocpp", "URL path in front of /{chargePointId}")
    workers: int = _opt(1, "number of worker processes sharing the listeners")
    backlog: int = _opt(
        2048,
        "listen backlog per socket (connections the kernel accepts before a worker does; capped "
        "by net.core.somaxconn): a reconnect storm waits here instead of retrying SYNs",
    )
    worker_class: Literal["auto", "uvloop", "asyncio"] = _opt(
        "auto", "event loop: auto picks uvloop when installed"
    )
    permessage_deflate: bool = _opt(
        False, "negotiate permessage-deflate (costs about 100 KiB per connection)"
    )
    gc_threshold: int = _opt(
        7000,
        "net allocations before Python collects its young generation (Python's default: 700; "
        "each message allocates, so 700 means a collection every few hundred messages); 0 "
        "keeps Python's default",
    )
    drain_seconds: float = _opt(10.0, "bound on the graceful shutdown after SIGTERM")
    drain_batch_size: int = _opt(
        500,
        "sessions a worker closes at once (1012) when it drains, batches spread over the drain; "
        "0 closes all at once",
    )

    def __post_init__(self) -> None:
        for bind in self.ws_bind:
            _check_bind("server.ws_bind", bind)
        prefix = self.path_prefix
        if (
            not prefix.startswith("/")
            or prefix.endswith("/")
            or "//" in prefix
            or not set(prefix) <= _PATH_CHARACTERS
        ):
            raise ConfigError(
                "server.path_prefix",
                f"'{prefix}' is not a path like /ocpp",
                "start with '/', no trailing '/', only letters, digits and / - . _ ~",
            )
        _check_range("server.workers", self.workers, 1, 256)
        _check_range("server.backlog", self.backlog, 1, 65535)
        _check_range("server.gc_threshold", self.gc_threshold, 0, 10_000_000)
        _check_range("server.drain_seconds", self.drain_seconds, 0, 3600)
        _check_range("server.drain_batch_size", self.drain_batch_size, 0, 10_000_000)


@dataclass(frozen=True)
class OcppConfig:
    """OCPP versions, validation and boot gating."""

    versions: list[str] = _opt(
        list(KNOWN_SUBPROTOCOLS), "supported subprotocols, most preferred first"
    )
    validation: Literal["strict", "lenient"] = _opt(
        "strict", "default schema validation mode (lenient logs violations and passes them on)"
    )
    gate_unknown_boot: bool = _opt(
        False,
        "refuse CALLs (SecurityError) from a charge point not seen booting since start",
    )
    identity_extra_characters: str = _opt(
        "", "characters allowed in identities besides OCPP's identifierString set"
    )

    def __post_init__(self) -> None:
        if not self.versions:
            raise ConfigError(
                "ocpp.versions", "no OCPP version is enabled", f"list some of {KNOWN_SUBPROTOCOLS}"
            )
        for version in self.versions:
            if version not in KNOWN_SUBPROTOCOLS:
                raise ConfigError(
                    "ocpp.versions",
                    f"unknown subprotocol '{version}'",
                    f"use only {', '.join(KNOWN_SUBPROTOCOLS)}",
                )
        if len(set(self.versions)) != len(self.versions):
            raise ConfigError("ocpp.versions", "a version is listed twice", "list each once")
        bad = set(self.identity_extra_characters) & set(":/?#%\\")
        bad |= {c for c in self.identity_extra_characters if not c.isprintable()}
        if bad:
            raise ConfigError(
                "ocpp.identity_extra_characters",
                f"characters {sorted(bad)} can never be part of an identity",
                "remove them (':' separates Basic-auth user and password; '/', '?', '#', '%' "
                "are URL syntax)",
            )


@dataclass(frozen=True)
class LimitsConfig:
    """Frame size, timeouts, keepalive and abuse limits."""

    max_frame_bytes: int = _opt(262144, "largest accepted message; larger ones close with 1009")
    call_timeout_seconds: float = _opt(30.0, "how long a gateway-to-charge-point CALL may take")
    ping_interval_seconds: float = _opt(60.0, "WebSocket ping interval; 0 disables keepalive")
    pong_timeout_seconds: float = _opt(
        30.0, "a peer silent for ping_interval + pong_timeout is declared dead and closed"
    )
    close_timeout_seconds: float = _opt(
        5.0, "how long a peer may take to answer the gateway's close frame before it is dropped"
    )
    max_bad_messages: int = _opt(
        20, "refused messages a session may send before it is closed; 0 disables the cap"
    )
    max_tls_handshakes: int = _opt(
        256,
        "TLS handshakes a worker runs at once; at the limit it stops accepting (new connections "
        "wait in the listen backlog); 0 = unlimited",
    )
    max_connections: int = _opt(
        20000,
        "charge point connections per worker; above it upgrades get 503 with Retry-After; "
        "0 = unlimited",
    )
    retry_after_seconds: int = _opt(
        10, "Retry-After of a 503 for max_connections, before the jitter is added"
    )
    retry_after_jitter_seconds: int = _opt(
        20, "up to this many random seconds are added to each Retry-After, to spread a storm"
    )

    def __post_init__(self) -> None:
        _check_range("limits.max_frame_bytes", self.max_frame_bytes, 1024, 64 * 1024 * 1024)
        _check_range("limits.call_timeout_seconds", self.call_timeout_seconds, 0.1, 3600)
        _check_range("limits.ping_interval_seconds", self.ping_interval_seconds, 0, 86400)
        _check_range("limits.pong_timeout_seconds", self.pong_timeout_seconds, 0.1, 3600)
        _check_range("limits.close_timeout_seconds", self.close_timeout_seconds, 0.1, 600)
        _check_range("limits.max_bad_messages", self.max_bad_messages, 0, 1_000_000)
        _check_range("limits.max_tls_handshakes", self.max_tls_handshakes, 0, 1_000_000)
        _check_range("limits.max_connections", self.max_connections, 0, 10_000_000)
        _check_range("limits.retry_after_seconds", self.retry_after_seconds, 1, 86400)
        _check_range("limits.retry_after_jitter_seconds", self.retry_after_jitter_seconds, 0, 86400)


@dataclass(frozen=True)
class EmbeddedConfig:
    """Answers of the embedded central system (used when no backend is configured)."""

    boot_status: Literal["Accepted", "Pending", "Rejected"] = _opt(
        "Accepted", "status answered to BootNotification"
    )
    heartbeat_interval_seconds: int = _opt(300, "interval answered to BootNotification")
    boot_pending_above: int = _opt(
        0,
        "BootNotifications a worker answers Accepted per second; the ones above it get Pending "
        "with a retry interval; 0 = never (e.g. 100 spreads a fleet's reboot over minutes)",
    )
    boot_pending_interval_seconds: int = _opt(
        60, "interval answered with Pending under load, before the jitter is added"
    )
    boot_pending_jitter_seconds: int = _opt(
        60, "up to this many random seconds are added to a Pending interval"
    )

    def __post_init__(self) -> None:
        _check_range(
            "embedded.heartbeat_interval_seconds", self.heartbeat_interval_seconds, 0, 86400
        )
        _check_range("embedded.boot_pending_above", self.boot_pending_above, 0, 1_000_000)
        _check_range(
            "embedded.boot_pending_interval_seconds", self.boot_pending_interval_seconds, 1, 86400
        )
        _check_range(
            "embedded.boot_pending_jitter_seconds", self.boot_pending_jitter_seconds, 0, 86400
        )


@dataclass(frozen=True)
class TlsConfig:
    """The wss listener (profiles 2 and 3), the CA store and TLS offload."""

    wss_bind: list[str] = _opt(
        ["0.0.0.0:9443"], "host:port list for wss (profiles 2 and 3); [] disables it"
    )
    certs_dir: str = _opt("certs", "the CA store: trust anchors, CRLs, server chains and keys")
    dev_certificates: bool = _opt(
        True, "generate a dev CA and server certificates when certs_dir has no server chain"
    )
    server_name: str = _opt("localhost", "host name (CN and SAN) of generated server certificates")
    handshake_timeout_seconds: float = _opt(10.0, "bound on one TLS handshake")
    reload_interval_seconds: float = _opt(
        2.0, "how often the CA store and charge point records are checked for changes"
    )
    offload: bool = _opt(False, "trust TLS facts from a TLS-terminating proxy (see docs)")
    offload_trusted_proxies: list[str] = _opt(
        [], "addresses or networks (CIDR) of the proxies whose TLS headers are believed"
    )
    offload_scheme_header: str = _opt(
        "x-forwarded-proto", "header carrying https/wss when the proxy terminated TLS"
    )
    offload_client_cert_header: str = _opt(
        "x-ssl-client-cert", "header carrying the URL-encoded PEM client certificate"
    )

    def __post_init__(self) -> None:
        for bind in self.wss_bind:
            _check_bind("tls.wss_bind", bind)
        _check_range("tls.handshake_timeout_seconds", self.handshake_timeout_seconds, 0.1, 300)
        _check_range("tls.reload_interval_seconds", self.reload_interval_seconds, 0.1, 3600)
        for network in self.offload_trusted_proxies:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ConfigError(
                    "tls.offload_trusted_proxies",
                    f"'{network}' is not an address or network",
                    "write e.g. 10.0.0.5 or 10.0.0.0/24",
                ) from None
        if self.offload and not self.offload_trusted_proxies:
            raise ConfigError(
                "tls.offload",
                "offload is on but no proxy is trusted",
                "list the proxies in tls.offload_trusted_proxies",
            )


@dataclass(frozen=True)
class SecurityConfig:
    """Charge point records, unknown identities and brute-force protection."""

    records_file: str = _opt("data/charge-points.json", "where charge point records are persisted")
    unknown_identity_status: int = _opt(
        401, "401 answers unknown identities like bad credentials; 404 tells them apart"
    )
    dev_auto_register: bool = _opt(
        False, "development only: unknown identities on ws become profile-0 records"
    )
    max_auth_failures: int = _opt(
        5, "failed authentications per identity or address before a lockout; 0 disables"
    )
    failure_window_seconds: float = _opt(60.0, "window in which failures are counted")
    lockout_seconds: float = _opt(300.0, "how long a lockout lasts")
    audit_log: str = _opt(
        "data/audit.log", "JSON lines of every CA and record operation (never a key or password)"
    )
    cpo_name: str = _opt(
        "", "the CPO's organization name (O) required in charge point CSRs; empty: not checked"
    )
    renew_days_before: int = _opt(
        30, "days before a profile-3 certificate expires that the gateway asks for a new CSR"
    )

    def __post_init__(self) -> None:
        if self.unknown_identity_status not in (401, 404):
            raise ConfigError(
                "security.unknown_identity_status", "only 401 or 404 are allowed", "use 401 or 404"
            )
        _check_range("security.max_auth_failures", self.max_auth_failures, 0, 1_000_000)
        _check_range("security.failure_window_seconds", self.failure_window_seconds, 1, 86400)
        _check_range("security.lockout_seconds", self.lockout_seconds, 0, 86400 * 7)
        _check_range("security.renew_days_before", self.renew_days_before, 1, 3650)


@dataclass(frozen=True)
class UiConfig:
    """The operator UI API (`/ui`) and web console (`/console`)."""

    tokens_file: str = _opt("data/ui-tokens.json", "where UI API tokens (hashes) are persisted")
    auth_timeout_seconds: float = _opt(
        5.0, "a browser must send its token as the first message within this time"
    )
    queue_size: int = _opt(1000, "events buffered per UI connection for a slow reader")
    overflow: Literal["drop_oldest", "disconnect"] = _opt(
        "drop_oldest", "what a full queue does: drop the oldest events, or disconnect the client"
    )
    commands_per_minute: int = _opt(120, "commands one token may send per minute")
    max_message_bytes: int = _opt(65536, "largest UI message accepted")
    idempotency_seconds: float = _opt(600.0, "how long a command's idempotency key is remembered")
    token_check_seconds: float = _opt(
        5.0, "how often an idle connection's token is checked for revocation and expiry"
    )

    def __post_init__(self) -> None:
        _check_range("ui.auth_timeout_seconds", self.auth_timeout_seconds, 0.1, 300)
        _check_range("ui.queue_size", self.queue_size, 10, 1_000_000)
        _check_range("ui.commands_per_minute", self.commands_per_minute, 1, 100_000)
        _check_range("ui.max_message_bytes", self.max_message_bytes, 1024, 16 * 1024 * 1024)
        _check_range("ui.idempotency_seconds", self.idempotency_seconds, 1, 86400)
        _check_range("ui.token_check_seconds", self.token_check_seconds, 0.05, 3600)


@dataclass(frozen=True)
class RedisConfig:
    """Redis: many workers and nodes acting as one gateway (empty url: embedded, one process)."""

    url: str = _opt(
        "",
        "redis:// or rediss:// URL with ACL user/password; empty keeps everything embedded",
        secret=True,
    )
    key_prefix: str = _opt("ocppgw:", "prefix of every key and channel")
    node_id: str = _opt("", "this worker's name in the cluster; empty: host name and process id")
    claim_ttl_seconds: float = _opt(
        15.0, "how long a dead node's sessions stay claimed (refreshed at a third of it)"
    )
    when_unavailable: Literal["serve", "refuse"] = _opt(
        "serve", "while Redis is down: keep accepting charge points, or refuse them with 503"
    )
    state_store: Literal["redis", "files"] = _opt(
        "redis",
        "where records, UI tokens and boot states live with Redis: in Redis (every node shares "
        "them), or in security.records_file and ui.tokens_file (a shared volume)",
    )

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("redis.url", "not a Redis URL", "write redis://user:pass@host:6379/0")
        _check_range("redis.claim_ttl_seconds", self.claim_ttl_seconds, 1, 3600)


@dataclass(frozen=True)
class BrokerConfig:
    """The broker for a backend CSMS: charge point messages to a Redis Stream, answers back."""

    mode: Literal["off", "forward"] = _opt(
        "off", "forward: charge-point-initiated CALLs go to the backend through Redis Streams"
    )
    fallback: Literal["embedded", "error"] = _opt(
        "embedded",
        "without a backend answer in time: the embedded central system answers, or a CALLERROR",
    )
    answer_timeout_seconds: float = _opt(
        5.0, "how long a forwarded CALL waits for the backend's answer before the fallback"
    )
    forward_actions: list[str] = _opt(
        [], "actions to forward (empty: every charge-point-initiated action but SignCertificate)"
    )
    stream_maxlen: int = _opt(1_000_000, "approximate cap of each stream's length")
    idempotency_seconds: float = _opt(
        3600.0, "how long a forwarded message id is remembered, to drop duplicate deliveries"
    )
    commands: bool = _opt(True, "run the backend's commands from the command stream")
    wait_replicas: int = _opt(
        0, "replicas that must hold a message before it counts as stored (Redis WAIT)"
    )

    def __post_init__(self) -> None:
        _check_range("broker.answer_timeout_seconds", self.answer_timeout_seconds, 0.05, 300)
        _check_range("broker.stream_maxlen", self.stream_maxlen, 1000, 10**9)
        _check_range("broker.idempotency_seconds", self.idempotency_seconds, 1, 7 * 86400)
        _check_range("broker.wait_replicas", self.wait_replicas, 0, 16)


@dataclass(frozen=True)
class StatusConfig:
    """Health, readiness and Prometheus metrics (/healthz, /readyz, /metrics)."""

    bind: str = _opt(
        "",
        "host:port of a separate listener for /healthz, /readyz and /metrics (then not served on "
        "the charge point listeners); empty: served on the charge point listeners",
    )
    metrics: bool = _opt(True, "serve Prometheus metrics at /metrics")

    def __post_init__(self) -> None:
        if self.bind:
            _check_bind("status.bind", self.bind)


@dataclass(frozen=True)
class LogConfig:
    """Structured logging."""

    format: Literal["json", "kv"] = _opt("json", "json lines or key=value lines")
    level: Literal["debug", "info", "warning", "error"] = _opt(
        "info", "debug adds one line per OCPP message"
    )


@dataclass(frozen=True)
class GatewayConfig:
    """The whole configuration, one section per table of the TOML file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    ocpp: OcppConfig = field(default_factory=OcppConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.broker.mode == "forward" and not self.redis.url:
            raise ConfigError(
                "broker.mode", "forward mode needs Redis", "set redis.url or broker.mode = 'off'"
            )
        if not self.server.ws_bind and not self.tls.wss_bind:
            raise ConfigError(
                "server.ws_bind", "no listener is configured", "set server.ws_bind or tls.wss_bind"
            )
        ws_ports = {bind.rpartition(":")[2] for bind in self.server.ws_bind}
        clash = ws_ports & {bind.rpartition(":")[2] for bind in self.tls.wss_bind} - {"0"}
        if clash:
            raise ConfigError(
                "tls.wss_bind",
                f"port {sorted(clash)[0]} is used by both ws and wss",
                "give the wss listener its own port",
            )
        status_port = self.status.bind.rpartition(":")[2] if self.status.bind else "0"
        wss_ports = {bind.rpartition(":")[2] for bind in self.tls.wss_bind}
        if status_port != "0" and status_port in ws_ports | wss_ports:
            raise ConfigError(
                "status.bind",
                f"port {status_port} is also a charge point listener",
                "give the status listener its own port (e.g. 9100)",
            )


def _check_bind(key: str, bind: str) -> None:
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            key, f"'{bind}' is not host:port", "write e.g. '0.0.0.0:9000' or '[::]:9000'"
        )


def _check_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(key, f"{value} is out of range", f"use a value from {low} to {high}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(GatewayConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(GatewayConfig)}


def _coerce(key: str, annotation: Any, value: Any, from_env: bool) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(key, f"'{value}' is not allowed", f"use one of {', '.join(choices)}")
        return value
    if origin is list:
        if from_env:
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, "expected a list of strings", 'write e.g. ["a", "b"]')
        return value
    if annotation is bool:
        if from_env:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(key, f"'{value}' is not a boolean", "use true or false")
    if annotation in (int, float):
        try:
            number = annotation(value) if from_env else value
        except ValueError:
            number = None
        ok = isinstance(number, int | float) and not isinstance(number, bool)
        if annotation is int and not isinstance(number, int):
            ok = False
        if not ok:
            raise ConfigError(
                key,
                f"'{value}' is not {'an integer' if annotation is int else 'a number'}",
                "write a number",
            )
        return annotation(number)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(key, "expected a string", 'quote the value: "..."')
        return value
    raise TypeError(f"unsupported config type {annotation}")  # pragma: no cover


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return ConfigError(key, "unknown key", hint)


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read the TOML file (if any), apply the environment over it, validate, and return it."""
    environ = os.environ if environ is None else environ
    source = "--config" if path else ENV_CONFIG_FILE
    path = path or environ.get(ENV_CONFIG_FILE)
    raw: dict[str, Any] = {}
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                source, f"file {path} does not exist", "give an existing file"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                source, f"{path} is not valid TOML ({exc})", "fix the syntax"
            ) from None
    sections = _sections()
    values: dict[str, dict[str, tuple[Any, bool]]] = {name: {} for name in sections}
    for name, section in raw.items():
        if name not in sections:
            raise _unknown(name, list(sections))
        if not isinstance(section, dict):
            raise ConfigError(name, "expected a table", f"write [{name}] and keys under it")
        known = [f.name for f in dataclasses.fields(sections[name])]
        for key, value in section.items():
            if key not in known:
                raise _unknown(f"{name}.{key}", [f"{name}.{k}" for k in known])
            values[name][key] = (value, False)
    env_keys = {
        f"{ENV_PREFIX}{name}_{f.name}".upper(): (name, f.name)
        for name, cls in sections.items()
        for f in dataclasses.fields(cls)
    }
    for env_key, value in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key in NON_CONFIG_ENV:
            continue
        if env_key not in env_keys:
            raise _unknown(env_key, sorted(env_keys))
        name, key = env_keys[env_key]
        values[name][key] = (value, True)
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, (value, from_env) in values[name].items():
            try:
                kwargs[key] = _coerce(f"{name}.{key}", hints[key], value, from_env)
            except ConfigError as exc:
                if not from_env:
                    raise
                env = f"{ENV_PREFIX}{name}_{key}".upper()
                raise ConfigError(
                    exc.key, *str(exc).split(": ", 1)[1].split(". Fix: "), env
                ) from None
        try:
            built[name] = cls(**kwargs)
        except ConfigError as exc:
            key = exc.key.partition(".")[2]
            if exc.env or not values[name].get(key, (None, False))[1]:
                raise
            env = f"{ENV_PREFIX}{name}_{key}".upper()
            raise ConfigError(exc.key, exc.problem, exc.fix, env) from None
    try:
        return GatewayConfig(**built)
    except ConfigError as exc:
        section, _, key = exc.key.partition(".")
        if exc.env or not values.get(section, {}).get(key, (None, False))[1]:
            raise
        env = f"{ENV_PREFIX}{section}_{key}".upper()
        raise ConfigError(exc.key, exc.problem, exc.fix, env) from None


def describe(config: GatewayConfig) -> dict[str, dict[str, Any]]:
    """The effective configuration as plain data, secrets replaced by '***'."""
    result: dict[str, dict[str, Any]] = {}
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            values[f.name] = list(value) if isinstance(value, list) else value
        result[section_field.name] = values
    return result


def reference() -> list[tuple[str, str, Any, str]]:
    """(key, environment variable, default, help) for every option: the configuration reference."""
    rows = []
    for name, cls in _sections().items():
        default = cls()
        for f in dataclasses.fields(cls):
            env = f"{ENV_PREFIX}{name}_{f.name}".upper()
            rows.append((f"{name}.{f.name}", env, getattr(default, f.name), f.metadata["help"]))
    return rows


__all__ = ["ConfigError", "GatewayConfig", "describe", "load_config", "reference"]
