"""Routes between charge point sessions and their consumers (UI, backends, the embedded system).

Consumers send CALLs to a charge point by identity and subscribe to session events; the router finds
the live session in the registry and fans events out to listeners.
"""

from __future__ import annotations

import logging
from typing import Any

from .events import GatewayEvent, Listener
from .ocppj.codec import CallError, CallResult
from .registry import SessionRegistry

log = logging.getLogger("gateway.router")


class CallFailed(Exception):
    """A gateway CALL got no answer from the charge point: why, in one word, and the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # offline | timeout | invalid | closed
        self.detail = detail


class Router:
    """Sends CALLs to charge points by identity and publishes session events."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self._listeners: list[tuple[Listener, bool]] = []  # (listener, wants messages)
        self._message_listeners = 0  # local listeners that want every OCPP message
        self.remote: Any = None  # ClusterCalls: CALLs for charge points held by other nodes
        self.cluster_events: Any = None  # ClusterEvents: events shared with the other nodes
        self.presence: Any = None  # ClusterPresence: the sessions every other node serves
        self.node_id = ""  # this worker's name in the cluster

    @property
    def has_listeners(self) -> bool:
        """True when someone listens here or on another node (else events are not built)."""
        return bool(self._listeners) or self._remote_watchers()

    @property
    def wants_messages(self) -> bool:
        """True when someone here or on another node watches OCPP messages (one per frame)."""
        return self._message_listeners > 0 or self._remote_watchers()

    def _remote_watchers(self) -> bool:
        return self.cluster_events is not None and self.cluster_events.remote_watchers

    def subscribe(self, listener: Listener, *, messages: bool = True) -> None:
        """Call `listener` for every event (it must not block); `messages=False`: the listener
        ignores "message" events, so they need not be built for it."""
        self._listeners.append((listener, messages))
        self._message_listeners += messages
        self._tell_cluster()

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling `listener`."""
        for entry in self._listeners:
            if entry[0] == listener:
                self._listeners.remove(entry)
                self._message_listeners -= entry[1]
                break
        else:
            raise ValueError("not subscribed")
        self._tell_cluster()

    def _tell_cluster(self) -> None:
        if self.cluster_events is not None:
            self.cluster_events.set_local_watchers(self._message_listeners)

    def publish(self, event: GatewayEvent) -> None:
        """Hand `event` to every listener (and to the other nodes); failures are only logged."""
        if self._remote_watchers():
            self.cluster_events.forward(event)
        self.deliver(event)

    def deliver(self, event: GatewayEvent) -> None:
        """Hand `event` to this node's listeners only (events that came from other nodes)."""
        messages_only = event.kind == "message"
        for listener, messages in tuple(self._listeners):
            if messages_only and not messages:
                continue
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed", extra={"fields": {"kind": event.kind}})

    async def call(
        self, identity: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> CallResult | CallError:
        """Send a CALL to the charge point and return its CALLRESULT or CALLERROR.

        Raises `CallFailed` (offline, timeout, invalid, closed).
        """
        session = self.registry.get(identity)
        if session is not None:
            return await session.call(action, payload, timeout)
        if self.remote is not None:
            return await self.remote.call(identity, action, payload, timeout)
        raise CallFailed("offline", f"charge point {identity} is not connected")

    async def subprotocol_of(self, identity: str) -> str | None:
        """The OCPP version of `identity`'s live session, on this node or another (None: offline).

        Raises when the cluster state cannot be read."""
        session = self.registry.get(identity)
        if session is not None:
            return session.info.subprotocol
        if self.remote is None or self.presence is None:
            return None
        node = await self.remote.holder_node(identity)
        if node is None or node == self.node_id:
            return None
        facts = await self.presence.facts(node, identity)
        return str(facts["subprotocol"]) if facts else None

    async def call_local(
        self, identity: str, action: str, payload: dict[str, Any], timeout: float | None = None
    ) -> CallResult | CallError:
        """A CALL to a charge point served by this process only (what other nodes ask of us)."""
        session = self.registry.get(identity)
        if session is None:
            raise CallFailed("offline", f"charge point {identity} is not connected here")
        return await session.call(action, payload, timeout)
