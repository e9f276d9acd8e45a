"""The gateway of one worker process: wires the handshake, sessions, router and handler together.

`serve_charge_point` is the ASGI WebSocket entry of the charge point route; `drain` is the graceful
shutdown (refuse new upgrades, close sessions with 1012 in batches, bounded wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis

from security.cadb import CaDatabase
from security.certcheck import CertRejected, check_client_certificate
from security.policy import Authenticator, PolicySettings
from security.records import RecordStore
from security.throttle import FailureLimiter
from security.tokens import TokenStore

from .admission import OffloadSettings, ProfilePolicy
from .broker.service import BrokerService
from .capacity import AdmissionControl, CapacitySettings
from .certificates import CertificateService
from .cluster.bus import RedisBus
from .cluster.client import connect as connect_redis
from .cluster.directory import Holder, InMemoryDirectory, RedisDirectory, SessionDirectory
from .cluster.events import ClusterEvents
from .cluster.presence import ClusterPresence
from .cluster.remote import ClusterCalls
from .config import GatewayConfig
from .connection import (
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_SERVICE_RESTART,
    ChargePointConnection,
    ConnectionSettings,
)
from .drain import DrainPlan, close_in_batches
from .embedded.base import EmbeddedSettings, EmbeddedState
from .events import GatewayEvent
from .handler import CallHandler, EmbeddedCentralSystem, GatewayHandler
from .handshake import (
    Admit,
    HandshakeFacts,
    HandshakePipeline,
    NoCommonVersion,
    Refuse,
    SecurityPolicy,
)
from .identity import IdentityRules
from .logs import event
from .metrics import GatewayMetrics
from .registry import InMemoryRegistry, SessionInfo, SessionRegistry
from .router import Router
from .security_actions import SecurityActions
from .security_events import SecurityEvents
from .session import OcppSession
from .stores import open_stores
from .tls_listener import TlsTermination
from .trust import TrustState
from .ui.service import UiService
from .versions import VERSIONS

log = logging.getLogger("gateway")
REDIS_GONE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError, OSError)
REDIS_TIMEOUT = 5.0  # a blackholed Redis must not stall reloads, claims or closes
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: control frame payload <= 125 bytes, 2 for the code


def node_id(config: GatewayConfig) -> str:
    """This worker's name in the cluster: the configured one (plus the process id when several
    workers share it), else host name and process id."""
    base = config.redis.node_id
    if not base:
        return f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}-{os.getpid()}" if config.server.workers > 1 else base


def close_reason(text: str) -> str:
    """`text` cut to what fits a WebSocket close frame, on a character boundary."""
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


class Gateway:
    """Everything one worker needs to serve charge points."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        registry: SessionRegistry | None = None,
        records: RecordStore | None = None,
        tokens: TokenStore | None = None,
        security: SecurityPolicy | None = None,
        handler: CallHandler | None = None,
    ) -> None:
        self.config = config
        self.identity_rules = IdentityRules(
            config.server.path_prefix, config.ocpp.identity_extra_characters
        )
        self.registry = registry if registry is not None else InMemoryRegistry()
        self.router = Router(self.registry)
        self.events = SecurityEvents(self.router)
        self._redis: Any = None
        if config.redis.url:
            self._redis = connect_redis(config.redis.url, REDIS_TIMEOUT)
        self.stores = open_stores(config, self._redis, records, tokens)
        self.records = self.stores.records
        self.ui = UiService(self.stores.tokens, config.ui)
        self.trust = TrustState(Path(config.tls.certs_dir), with_tls=bool(config.tls.wss_bind))
        versions = [VERSIONS[name] for name in config.ocpp.versions]
        self.pipeline = HandshakePipeline(
            self.identity_rules,
            versions,
            security or self._profile_policy(),
            config.ocpp.validation,
        )
        self.security_actions = SecurityActions(
            self.records,
            self.router,
            lambda: self._recheck_sessions(),
            lambda: self.stores.mirror is None or self.redis_healthy,
        )
        self.certificates = CertificateService(
            Path(config.tls.certs_dir),
            self.records,
            self.router,
            self.events,
            config.security.cpo_name,
            config.security.renew_days_before,
        )
        self.certificates.on_issued = CaDatabase.of_store(config.tls.certs_dir).on_issued
        self.connection_settings = ConnectionSettings(
            call_timeout=config.limits.call_timeout_seconds,
            close_timeout=config.limits.close_timeout_seconds,
        )
        self.draining = False
        self.listening = False  # the charge point listeners are served (readiness)
        self.metrics = GatewayMetrics(redis=bool(config.redis.url))
        # Limits and counts of TLS handshakes, connections and boots (read by metrics).
        self.admission = AdmissionControl(CapacitySettings.of(config))
        self.node_id = node_id(config)
        self.router.node_id = self.node_id
        self.directory: SessionDirectory = InMemoryDirectory(config.redis.claim_ttl_seconds)
        self.bus: RedisBus | None = None
        self.redis_healthy = True  # false after a failed Redis operation, true after a good one
        # Takeovers announced by other nodes while a claim of ours is in flight.
        self._in_flight: Counter[str] = Counter()
        self._claim_locks: dict[str, asyncio.Lock] = {}
        self._claim_waiters: Counter[str] = Counter()
        self._announced: dict[str, int] = {}
        if config.redis.url:
            self.directory = RedisDirectory(
                self._redis, config.redis.key_prefix, config.redis.claim_ttl_seconds
            )
            self.bus = RedisBus(self._redis, config.redis.key_prefix, self.node_id)
            self.router.cluster_events = ClusterEvents(
                self._redis, config.redis.key_prefix, self.node_id
            )
            self.router.remote = ClusterCalls(
                self.directory, self.bus, self.node_id, config.limits.call_timeout_seconds
            )
            self.router.presence = ClusterPresence(
                self._redis,
                config.redis.key_prefix,
                self.node_id,
                config.redis.claim_ttl_seconds,
                self._live_sessions,
            )
        inner = handler or EmbeddedCentralSystem(
            EmbeddedSettings(
                boot_status=config.embedded.boot_status,
                heartbeat_interval_s=config.embedded.heartbeat_interval_seconds,
            ),
            EmbeddedState(pace_boot=self.admission.pace_boot),
        )
        self.broker: BrokerService | None = None
        if config.broker.mode == "forward":  # config validation guarantees Redis
            prefix = config.redis.key_prefix
            self.broker = BrokerService(
                self._redis, config.broker, prefix, self.node_id, self.router, inner
            )
            inner = self.broker.handler
        self.handler = GatewayHandler(inner, self.certificates)
        self.tls_termination: TlsTermination | None = None  # set when wss listeners serve
        self.ui_connections: set[Any] = set()  # closed with 1001 on drain
        self._background: set[asyncio.Task[Any]] = set()  # closes, renewals, takeover messages

    @property
    def redis_healthy(self) -> bool:
        """False after a failed Redis operation, true after a good one (also a metric)."""
        return self._redis_healthy

    @redis_healthy.setter
    def redis_healthy(self, healthy: bool) -> None:
        self._redis_healthy = healthy
        self.metrics.set_redis_up(healthy)

    async def _claim_cluster_wide(self, identity: str, connection: ChargePointConnection) -> None:
        """Claim `identity` for this node; tell a previous holder on another node to let go."""
        self._in_flight[identity] += 1
        try:
            claim = await asyncio.wait_for(
                self.directory.claim(identity, self.node_id), REDIS_TIMEOUT
            )
        except Exception as exc:  # Redis unreachable: keep serving, log it
            self.redis_healthy = False
            event(log, "claim_failed", logging.ERROR, identity=identity, error=str(exc)[:200])
            connection.claim_epoch = None  # claimed again by the refresh loop once Redis is back
            return
        finally:
            self._in_flight[identity] -= 1
            announced = self._announced.get(identity, 0)
            if not self._in_flight[identity]:
                del self._in_flight[identity]
                self._announced.pop(identity, None)
        connection.claim_epoch = claim.epoch
        self.redis_healthy = True
        if self.router.presence is not None:
            self.router.presence.add(connection.info)
        if announced > claim.epoch:  # a newer session elsewhere announced itself meanwhile
            self._close_later(
                connection, CLOSE_REPLACED, "replaced by a newer connection elsewhere"
            )
            return
        previous = claim.previous_node
        if previous is not None and previous != self.node_id and self.bus is not None:
            event(
                log, "session_taken_over", identity=identity, from_node=previous, epoch=claim.epoch
            )
            # in the background: a Redis gone dark now must not hold up this charge point's
            # session (its lock, its first messages); the old node's refresh is the backstop
            message = {"type": "takeover", "identity": identity, "epoch": claim.epoch}
            self._in_background(self._tell(previous, message))

    async def _tell(self, node: str, message: dict[str, Any]) -> None:
        assert self.bus is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bus.publish(node, message), REDIS_TIMEOUT)

    def _on_cluster_message(self, message: dict[str, Any]) -> None:
        """A newer session of an identity lives on another node: close ours."""
        remote = self.router.remote
        if remote is not None and remote.on_message(message, self.router.call_local):
            return
        if message.get("type") != "takeover":
            return
        identity, announced = str(message.get("identity")), int(message.get("epoch", 0))
        if self._in_flight.get(identity):  # a claim of ours is in flight: it decides on return
            self._announced[identity] = max(self._announced.get(identity, 0), announced)
        session = self.registry.get(identity)
        epoch = getattr(session, "claim_epoch", None)
        if session is not None and epoch is not None and epoch < announced:
            self._close_later(session, CLOSE_REPLACED, "replaced by a newer connection elsewhere")

    def _close_later(self, session: Any, code: int, reason: str) -> None:
        self._in_background(session.close(code, reason))

    def _in_background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)  # referenced until done
        task.add_done_callback(self._background.discard)

    async def start_cluster(self) -> None:
        """Listen for other nodes' messages (no-op without Redis)."""
        mirror = self.stores.mirror
        if mirror is not None:
            mirror.on_change = self._state_changed
            mirror.on_reload = self._reload_announced
            await mirror.start()
        if self.bus is not None:
            await self.bus.start(self._on_cluster_message)
            await self.router.cluster_events.start(self.router.deliver)
            await self.router.presence.start()
        if self.broker is not None:
            await self.broker.start()

    async def stop_cluster(self) -> None:
        """Stop listening and close the Redis connection."""
        if self.broker is not None:
            await self.broker.stop()
        if self.stores.mirror is not None:
            await self.stores.mirror.stop()
        if self.stores.boots is not None:
            await self.stores.boots.stop()
        if self.bus is not None:
            await self.router.presence.stop()
            await self.bus.stop()
            await self.router.cluster_events.stop()
            await self._redis.aclose()

    def _live_sessions(self) -> list[SessionInfo]:
        """The facts of this node's sessions that are not closing."""
        return [s.info for s in self.registry.local_sessions() if not getattr(s, "closed", False)]

    def _state_changed(self, kind: str, keys: set[str]) -> None:
        """Records changed in Redis (another node or the CLI): re-check those sessions here."""
        if kind == "records":
            self._recheck_sessions(keys)

    def _reload_announced(self) -> None:
        """The CLI changed the CA store and told every node: apply it now."""
        try:
            self.apply_changes()
        except Exception:
            log.exception("reload failed")

    async def refresh_claims(self) -> None:
        """Extend this node's claims. A session taken over elsewhere is closed; a session without
        a claim (Redis was unreachable, restarted or lost its data) is claimed again."""
        if self.bus is not None:
            try:
                await asyncio.wait_for(self._redis.ping(), REDIS_TIMEOUT)
            except Exception as exc:
                if self.redis_healthy:
                    event(log, "redis_unavailable", logging.ERROR, error=str(exc)[:200])
                self.redis_healthy = False
                return
            if not self.redis_healthy:
                event(log, "redis_available")
            self.redis_healthy = True
        claimed, settle = [], []  # settle: (session, True when it has no claim)
        for session in self.registry.local_sessions():
            if getattr(session, "closed", False):
                continue
            identity, epoch = session.info.identity, getattr(session, "claim_epoch", None)
            if epoch is not None:
                claimed.append((session, epoch))
            elif not self._in_flight.get(identity):  # else being claimed right now: not lost
                settle.append((session, True))
        try:
            held_now = await self.directory.refresh_many(
                self.node_id, [(session.info.identity, epoch) for session, epoch in claimed]
            )
        except Exception as exc:
            event(log, "claim_refresh_failed", logging.ERROR, error=str(exc)[:200])
            return
        for (session, _), held in zip(claimed, held_now, strict=True):
            if held is None:  # expired, or Redis lost it: restored unless someone holds it
                settle.append((session, True))
            elif held is False:  # a newer epoch holds it: taken over, unless our own lost claim
                settle.append((session, False))
        reclaimed = 0
        for session, is_unclaimed in settle:
            try:
                reclaimed += await self._settle_claim(session, is_unclaimed)
            except REDIS_GONE as exc:  # Redis went away
                event(log, "claim_refresh_failed", logging.ERROR, error=str(exc)[:200])
                break  # the next round goes on
            except Exception as exc:  # this identity's keys only (e.g. a foreign value)
                event(
                    log,
                    "claim_refresh_failed",
                    logging.ERROR,
                    identity=session.info.identity,
                    error=str(exc)[:200],
                )
        if reclaimed:
            event(log, "claims_restored", sessions=reclaimed)

    async def _settle_claim(self, session: Any, unclaimed: bool) -> int:
        """A session whose claim is gone (`unclaimed`: restored unless someone holds it, never
        a takeover) or held by a newer epoch (taken over, unless that claim is this worker's
        own lost one): 1 when a claim was restored, else 0 (adopted, or the session closed)."""
        restored = None
        if unclaimed:
            restored = await self.directory.claim_if_free(session.info.identity, self.node_id)
        own = restored or await self._own_lost_claim(session)
        if own is None:
            self._close_later(session, CLOSE_REPLACED, "replaced by a newer connection")
            return 0
        if getattr(session, "closed", False):
            return 0
        session.claim_epoch = own.epoch  # type: ignore[attr-defined]
        return 1 if unclaimed else 0

    async def _own_lost_claim(self, session: Any) -> Holder | None:
        """The claim of this worker whose answer never arrived (Redis took the claim, the reply
        came after the timeout, or a refresh was cancelled after it): adopted by `session`, not
        a takeover, if it is still the identity's session here and no other claim is underway."""
        identity = session.info.identity

        def current() -> bool:
            return self.registry.get(identity) is session and not self._in_flight.get(identity)

        if not current():
            return None
        holder = await self.directory.holder(identity)
        if holder is None or holder.node != self.node_id or not current():
            return None
        return holder

    def _profile_policy(self) -> ProfilePolicy:
        settings = self.config.security
        authenticator = Authenticator(
            self.records,
            lambda: self.trust.store,
            PolicySettings(settings.unknown_identity_status, settings.dev_auto_register),  # type: ignore[arg-type]
            FailureLimiter(
                settings.max_auth_failures,
                settings.failure_window_seconds,
                settings.lockout_seconds,
            ),
        )
        tls = self.config.tls
        offload = (
            OffloadSettings.build(
                tls.offload_trusted_proxies,
                tls.offload_scheme_header,
                tls.offload_client_cert_header,
            )
            if tls.offload
            else None
        )
        return ProfilePolicy(authenticator, self.events, offload)

    def last_message_at(self, identity: str) -> float:
        """When the live session of `identity` last received a message (0 when offline)."""
        session = self.registry.get(identity)
        return getattr(session, "last_message_at", 0.0) if session is not None else 0.0

    def _charge_point_security_event(self, info: SessionInfo, payload: dict[str, Any]) -> None:
        """A charge point's SecurityEventNotification joins the gateway's security stream."""
        kind = str(payload.get("type", ""))[:50]
        tech = str(payload.get("techInfo") or payload.get("tech_info") or "")[:255]
        self.events.emit(
            "charge_point_reported",
            identity=info.identity,
            remote=info.remote,
            detail=f"{kind}: {tech}" if tech else kind,
            event_type=kind,
        )

    def tls_failure(self, peer: str, reason: str, detail: str) -> None:
        """A TLS handshake failed before any HTTP: a security event with the peer address."""
        self.metrics.refused(reason, "tls")
        self.events.emit(reason, identity=None, remote=peer, detail=detail, layer="tls")

    async def watch(self) -> None:
        """Apply changes to the CA store and the records while running (every reload interval);
        refresh this node's claims at a third of their TTL."""
        refresh_every = self.config.redis.claim_ttl_seconds / 3
        next_refresh = time.monotonic() + refresh_every
        while True:
            await asyncio.sleep(min(self.config.tls.reload_interval_seconds, refresh_every))
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + refresh_every
                try:
                    await asyncio.wait_for(self.refresh_claims(), refresh_every)
                except TimeoutError:
                    event(log, "claim_refresh_failed", logging.ERROR, error="timed out")
            if self.stores.mirror is not None:
                await self.stores.mirror.sync_or_log()
            try:
                self.apply_changes()
                self.check_renewals()
            except Exception:
                log.exception("reload failed")

    def check_renewals(self, now: float | None = None) -> None:
        """Ask charge points whose certificate expires soon for a new CSR (time injectable)."""
        now = time.time() if now is None else now
        for session in self.registry.local_sessions():
            if self.certificates.due_for_renewal(session.info, now):
                version = session.session.version  # type: ignore[attr-defined]
                self._in_background(self.certificates.request_renewal(session.info, version, now))

    def apply_changes(self) -> None:
        """Reload records and trust material if they changed; close sessions no longer allowed."""
        refresh = getattr(self.records, "refresh", None)
        records_changed = bool(refresh()) if refresh is not None else False
        reloaded = self.trust.reload_if_changed()
        termination = self.tls_termination
        changed = reloaded is not None and reloaded.context_changed
        if changed and termination is not None and self.trust.context is not None:
            termination.context = self.trust.context
        if records_changed or (reloaded is not None and reloaded.store_changed):
            self._recheck_sessions()

    def _recheck_sessions(self, identities: set[str] | None = None) -> None:
        """Close the local sessions (of `identities`, or all) that are no longer allowed."""
        now = datetime.now(UTC)
        for session in self.registry.local_sessions():
            info = session.info
            if identities is not None and info.identity not in identities:
                continue
            record = self.records.get(info.identity)
            reason, detail = None, ""
            if record is None or not record.enabled:
                reason = "record_removed" if record is None else "record_disabled"
                detail = "the charge point record was removed or disabled"
            elif record.security_profile > info.security_profile:
                reason, detail = "profile_raised", "the record now demands a higher profile"
            else:
                chain = getattr(session, "client_chain", ())
                if chain:
                    checked = check_client_certificate(
                        chain, self.trust.store, now, record.certificate_cn, record.expected_o
                    )
                    if isinstance(checked, CertRejected):
                        reason, detail = checked.reason, checked.detail
            if reason is not None:
                self.events.emit(
                    reason,
                    identity=info.identity,
                    remote=info.remote,
                    detail=f"live session closed: {detail}",
                )
                self._in_background(
                    session.close(CLOSE_POLICY_VIOLATION, f"no longer allowed: {reason}")
                )

    async def serve_charge_point(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI WebSocket application of the charge point route (counted connections)."""
        admitted = self.admission.open_connection()  # False above limits.max_connections
        try:
            # The handshake's frame (scope, facts, verdict) ends before the session begins: one
            # coroutine frame less held per open session.
            accepted = await self._serve_charge_point(scope, receive, send, admitted)
            if accepted is not None:
                await self._serve(*accepted, send, receive)
        finally:
            if admitted:
                self.admission.close_connection()

    async def _serve_charge_point(
        self, scope: dict[str, Any], receive: Any, send: Any, admitted: bool
    ) -> tuple[Admit, str] | None:
        """Judge the handshake: the verdict and the peer's address to serve, or None when the
        connection was refused or closed here."""
        if (await receive())["type"] != "websocket.connect":
            return None
        client = scope.get("client")
        remote = f"{client[0]}:{client[1]}" if client else "unknown"
        if (
            not self.redis_healthy
            and self.config.redis.when_unavailable == "refuse"
            and self.bus is not None
        ):
            refusal = Refuse(
                503,
                "redis_unavailable",
                "the gateway cannot reach its cluster state: retry later",
                headers=((b"retry-after", b"10"),),
            )
            await self._refuse(send, refusal, remote)
            return None
        if self.draining:
            refusal = Refuse(
                503,
                "draining",
                "the gateway is shutting down: reconnect to another node",
                headers=((b"retry-after", b"5"),),
            )
            await self._refuse(send, refusal, remote)
            return None
        if not admitted:
            await self._refuse_full(send, remote)
            return None
        facts = HandshakeFacts(
            raw_path=scope.get("raw_path") or scope["path"].encode(),
            subprotocols=tuple(scope.get("subprotocols") or ()),
            headers=tuple(scope.get("headers") or ()),
            client=remote,
            scheme=scope.get("scheme", "ws"),
            tls=(scope.get("extensions") or {}).get("tls"),
        )
        verdict = self.pipeline.evaluate(facts)
        if isinstance(verdict, Refuse):
            await self._refuse(send, verdict, remote)
        elif isinstance(verdict, NoCommonVersion):
            event(
                log,
                "handshake_refused",
                logging.WARNING,
                identity=verdict.identity,
                remote=remote,
                status=101,
                reason="no_common_version",
                detail=verdict.detail,
            )
            self.metrics.refused("no_common_version", "http")
            await send({"type": "websocket.accept"})  # no Sec-WebSocket-Protocol header
            await send(
                {
                    "type": "websocket.close",
                    "code": CLOSE_PROTOCOL_ERROR,
                    "reason": close_reason(verdict.detail),
                }
            )
        else:
            return verdict, remote
        return None

    async def _serve(self, admit: Admit, remote: str, send: Any, receive: Any) -> None:
        version = admit.version
        # What the handshake judged by: if either changes before the session is registered (and
        # so reachable by re-checks), it is re-checked right after.
        judged_by = (self.records.get(admit.identity), self.trust.store)
        await send({"type": "websocket.accept", "subprotocol": version.subprotocol})
        self.metrics.handshakes_accepted[version.subprotocol].inc()
        info = SessionInfo(
            admit.identity,
            version.subprotocol,
            time.time(),
            remote,
            admit.profile,
            admit.certificate_not_after,
        )
        boot, boots = self.registry.boot_record(admit.identity), self.stores.boots
        if boots is not None and self.redis_healthy:  # booted on another node: not asked again
            shared = await boots.load(admit.identity)
            if shared is not None:
                boot.status = shared
        session = OcppSession(
            admit.identity,
            version,
            boot,
            validation=admit.validation,
            max_bad_messages=self.config.limits.max_bad_messages,
            gate_unknown_boot=self.config.ocpp.gate_unknown_boot,
            on_boot_status=None if boots is None else partial(boots.store, admit.identity),
        )
        connection = ChargePointConnection(
            info,
            session,
            send,
            self.handler,
            self.router,
            self.connection_settings,
            self.metrics,
        )
        connection.client_chain = admit.client_chain
        connection.on_security_notice = self._charge_point_security_event
        # One claim at a time per identity on this node: the local replacement order is then the
        # cluster's epoch order (the newest epoch always survives).
        lock = self._claim_locks.setdefault(admit.identity, asyncio.Lock())
        self._claim_waiters[admit.identity] += 1
        try:
            async with lock:
                previous = self.registry.claim(connection)
                if judged_by != (self.records.get(admit.identity), self.trust.store):
                    self._recheck_sessions({admit.identity})
                await self._claim_cluster_wide(admit.identity, connection)
        finally:
            self._claim_waiters[admit.identity] -= 1
            if not self._claim_waiters[admit.identity]:
                del self._claim_waiters[admit.identity], self._claim_locks[admit.identity]
        del lock, judged_by  # not held for the life of the session
        event(
            log,
            "connected",
            identity=admit.identity,
            remote=remote,
            subprotocol=version.subprotocol,
            profile=admit.profile,
            validation=admit.validation,
        )
        if previous is not None:
            event(
                log,
                "session_replaced",
                identity=admit.identity,
                old_remote=previous.info.remote,
                new_remote=remote,
            )
            await previous.close(CLOSE_REPLACED, "replaced by a newer connection of this identity")
        del previous  # the replaced connection is not kept alive by this one
        if self.router.has_listeners:
            self.router.publish(
                GatewayEvent("connected", admit.identity, version.subprotocol, info.connected_at)
            )
        open_sessions = self.metrics.connection(version.subprotocol, admit.profile)
        open_sessions.inc()
        code = 1006
        try:
            if self.draining:  # accepted before the drain began, registered after its last look
                self._close_later(
                    connection, CLOSE_SERVICE_RESTART, "the gateway restarts: reconnect later"
                )
            code = await connection.run(receive)
        finally:
            open_sessions.dec()
            self.registry.release(connection)
            if self.router.presence is not None and self.registry.get(admit.identity) is None:
                self.router.presence.remove(admit.identity)
            if connection.claim_epoch is not None:
                with contextlib.suppress(Exception):  # Redis down: the claim expires by itself
                    await asyncio.wait_for(
                        self.directory.release(
                            admit.identity, self.node_id, connection.claim_epoch
                        ),
                        REDIS_TIMEOUT,
                    )
            event(
                log,
                "disconnected",
                identity=admit.identity,
                remote=remote,
                code=connection.close_code or code,
                seconds=round(time.time() - info.connected_at, 3),
            )
            if self.router.has_listeners:
                self.router.publish(
                    GatewayEvent(
                        "disconnected",
                        admit.identity,
                        version.subprotocol,
                        time.time(),
                        close_code=code,
                    )
                )

    async def _refuse_full(self, send: Any, remote: str) -> None:
        """503 with a jittered Retry-After above max_connections; in a storm one log line per
        second says how many were refused since the previous one."""
        refusal = self.admission.full()
        await self._refuse(send, refusal, remote, logged=False)
        count = self.admission.log_due("max_connections")
        if count:
            event(
                log,
                "admission_refused",
                logging.WARNING,
                reason="max_connections",
                remote=remote,
                refused=count,
                total=self.admission.refused["max_connections"],
                connections=self.admission.connections,
                limit=self.config.limits.max_connections,
                retry_after=dict(refusal.headers)[b"retry-after"].decode(),
            )

    async def _refuse(self, send: Any, refusal: Refuse, remote: str, logged: bool = True) -> None:
        self.metrics.refused(refusal.reason, "http")
        if refusal.status == 503:  # the node cannot take it now: counted by reason
            self.admission.refused[refusal.reason] += 1
        if logged:
            event(
                log,
                "handshake_refused",
                logging.WARNING,
                identity=refusal.identity,
                remote=remote,
                status=refusal.status,
                reason=refusal.reason,
                detail=refusal.detail,
            )
        body = ((refusal.body or refusal.detail) + "\n").encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            *refusal.headers,
        ]
        await send(
            {"type": "websocket.http.response.start", "status": refusal.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": body})

    async def drain(self, timeout: float) -> None:
        """Refuse new upgrades (readiness turns false), close UI clients (1001) and the sessions
        (1012, in batches spread over `timeout`), wait for them to end (at most `timeout`)."""
        self.draining = True
        sessions = self.registry.local_sessions()
        plan = DrainPlan.of(
            len(sessions),
            self.config.server.drain_batch_size,
            timeout,
            self.config.limits.close_timeout_seconds,
        )
        event(
            log,
            "drain_started",
            sessions=len(sessions),
            timeout=timeout,
            batch_size=plan.batch_size,
            pause=round(plan.pause, 3),
        )
        for ui in list(self.ui_connections):
            ui.shutdown()
        await close_in_batches(
            self.registry.local_sessions,
            lambda session: self._close_later(
                session, CLOSE_SERVICE_RESTART, "the gateway restarts: reconnect later"
            ),
            plan,
            timeout,
        )
        event(log, "drain_finished", remaining=len(self.registry.local_sessions()))
