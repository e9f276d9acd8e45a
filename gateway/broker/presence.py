"""Who is online, for the backend: this node's `connected`/`disconnected` events in the call stream.

A router listener (it must not block) queues the events of this node's own sessions; a background
task appends them in pipelined batches. The router also delivers other nodes' events: those are
recognised and skipped (each node reports its own sessions). Both events carry a `session` id, so a
backend can tell a late `disconnected` of a replaced session from the end of the current one.
Events are best-effort: when Redis is down they are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque

from ..events import GatewayEvent
from ..logs import event
from ..registry import SessionRegistry
from .envelope import event_envelope
from .streams import CallStream

log = logging.getLogger("gateway.broker")
MAX_BATCH = 500


class Presence:
    """Publishes this node's session events to the call stream."""

    def __init__(
        self, calls: CallStream, registry: SessionRegistry, node: str, capacity: int = 10_000
    ) -> None:
        self._calls = calls
        self._registry = registry
        self._node = node
        self._online: dict[str, float] = {}  # identity -> connected_at of our reported session
        self._queue: deque[bytes] = deque()
        self._capacity = capacity
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def on_event(self, gateway_event: GatewayEvent) -> None:
        """Router listener: queue `connected`/`disconnected` of this node's sessions."""
        kind = gateway_event.kind
        if kind != "connected" and kind != "disconnected":
            return
        connected_at = self._own_session(gateway_event)
        if connected_at is None:
            return
        if len(self._queue) >= self._capacity:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(
            event_envelope(
                uuid.uuid4().hex,
                kind,
                gateway_event.identity,
                gateway_event.subprotocol,
                gateway_event.at,
                self._node,
                session=f"{self._node}@{connected_at:.6f}",
                close_code=gateway_event.close_code,
            )
        )
        self._wakeup.set()

    def _own_session(self, gateway_event: GatewayEvent) -> float | None:
        """connected_at of the local session the event is about (None: another node's event, or
        a replaced session's late disconnect)."""
        identity = gateway_event.identity
        live = self._registry.get(identity)
        if gateway_event.kind == "connected":
            if live is None or live.info.connected_at != gateway_event.at:
                return None
            self._online[identity] = gateway_event.at
            return gateway_event.at
        if live is not None:  # a newer session of ours holds the identity
            return None
        return self._online.pop(identity, None)

    async def run(self) -> None:
        """Append queued events until cancelled."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Append every queued event now (what fails is dropped and counted)."""
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                await self._calls.append_events(batch)
            except Exception as exc:
                self.dropped += len(batch)
                event(
                    log,
                    "broker_events_dropped",
                    logging.WARNING,
                    count=len(batch),
                    error=str(exc)[:200] or type(exc).__name__,
                )
