"""Readiness of one worker: may a load balancer send it new charge points? (`/readyz`)

`evaluate()` is pure: the facts in, the verdict and what is not ready out. `facts_of()` reads the
facts from a running gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import Gateway


@dataclass(frozen=True, slots=True)
class ReadinessFacts:
    """What readiness depends on."""

    listening: bool  # the charge point listeners are served
    ca_store_loaded: bool  # the CA store (and, with wss, the TLS server context) is loaded
    redis_required: bool  # Redis configured with redis.when_unavailable = "refuse"
    redis_reachable: bool  # the last Redis operation or health check succeeded
    draining: bool  # shutting down: new upgrades are refused


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict; `not_ready` names each failed check with what it means."""

    ready: bool
    not_ready: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, object]:
        """The JSON body of /readyz."""
        return {"ready": self.ready, "not_ready": dict(self.not_ready)}


def evaluate(facts: ReadinessFacts) -> Readiness:
    """Ready when listening, the CA store is loaded, Redis answers (when new charge points are
    refused without it: with `redis.when_unavailable = "serve"` a node without Redis still serves,
    so it stays ready), and not draining."""
    failed: list[tuple[str, str]] = []
    if not facts.listening:
        failed.append(("listening", "the charge point listeners are not served yet"))
    if not facts.ca_store_loaded:
        failed.append(("ca_store", "the CA store or the TLS server certificates are not loaded"))
    if facts.redis_required and not facts.redis_reachable:
        failed.append(("redis", "Redis is unreachable (redis.url)"))
    if facts.draining:
        failed.append(("draining", "the gateway is shutting down"))
    return Readiness(not failed, tuple(failed))


def facts_of(gateway: Gateway) -> ReadinessFacts:
    """The readiness facts of a running gateway."""
    trust = gateway.trust
    tls_ready = not gateway.config.tls.wss_bind or trust.context is not None
    return ReadinessFacts(
        listening=gateway.listening,
        ca_store_loaded=trust.store is not None and tls_ready,
        redis_required=bool(gateway.config.redis.url)
        and gateway.config.redis.when_unavailable == "refuse",
        redis_reachable=gateway.redis_healthy,
        draining=gateway.draining,
    )
