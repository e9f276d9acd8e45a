"""Run-once bookkeeping of the backend's commands in Redis: the command id, and who runs it.

`<prefix>broker:command:<command_id>` is set (NX, `idempotency_seconds`) to `running:<entry id>`
when a node starts the command, then to its result: a command posted twice runs once. While it
runs, `<prefix>broker:command-lease:<command_id>` names the node running it and expires after the
claim idle time unless that node extends it: a node that reclaims the entry runs it again only
once the lease has expired (its node is gone).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..logs import event
from .command_format import Command
from .keys import BrokerKeys

log = logging.getLogger("gateway.broker")
RUNNING = b"running:"


@dataclass(frozen=True, slots=True)
class Leased:
    """A reclaimed entry that still runs on a live node (which holds its lease)."""

    owner: str


class CommandLedger:
    """Marks commands running (with a lease) and remembers their results."""

    def __init__(self, redis: Any, keys: BrokerKeys, node: str, remember_seconds: float) -> None:
        self._redis = redis
        self._keys = keys
        self._node = node
        self._remember_seconds = max(1, int(remember_seconds))
        self._leases: dict[bytes, str] = {}  # entry -> its lease key, while it runs here

    async def mark_running(
        self, entry_id: bytes, command: Command, lease_ms: int
    ) -> bytes | Leased | None:
        """None: run it (this node holds its lease now). Else the remembered result, b"" when
        another entry of the command runs (acknowledge only), or Leased when this very entry
        still runs on a live node (leave it pending: that node acknowledges it)."""
        key = self._keys.command(command.command_id)
        marker = RUNNING + entry_id
        for _ in range(2):
            if await self._redis.set(key, marker, nx=True, ex=self._remember_seconds):
                return await self._take_lease(entry_id, command, lease_ms, fresh=True)
            previous = await self._redis.get(key)
            if previous is None:  # expired in between: try again
                continue
            if previous == marker:  # this very entry, reclaimed or taken back after a restart
                return await self._take_lease(entry_id, command, lease_ms, fresh=False)
            event(
                log,
                "broker_command_duplicate",
                command_id=command.command_id,
                entry=entry_id.decode(),
                running=previous.startswith(RUNNING),
            )
            return b"" if previous.startswith(RUNNING) else previous
        return await self._take_lease(entry_id, command, lease_ms, fresh=False)

    async def _take_lease(
        self, entry_id: bytes, command: Command, lease_ms: int, fresh: bool
    ) -> Leased | None:
        """None: this node holds the command's lease now. Leased: another node holds it (it is
        alive: it keeps extending the lease), so the command is not run again."""
        lease = self._keys.lease(command.command_id)
        owner = None if fresh else await self._redis.get(lease)
        if owner is None:  # a new command, or its node died (the lease expired)
            taken = await self._redis.set(lease, self._node, px=lease_ms, nx=not fresh)
        else:  # held under this node's name: by an earlier run of this node, which is gone
            taken = owner.decode() == self._node and await self._redis.set(
                lease, self._node, px=lease_ms
            )
        if not taken:
            owner = owner or await self._redis.get(lease) or b"?"
            event(
                log,
                "broker_command_leased",
                command_id=command.command_id,
                entry=entry_id.decode(),
                owner=owner.decode(),
            )
            return Leased(owner.decode())
        self._leases[entry_id] = lease
        return None

    def extend_leases(self, pipe: Any, lease_ms: int) -> None:
        """Queue the extension of every lease this node holds on `pipe`."""
        for lease in list(self._leases.values()):
            pipe.pexpire(lease, lease_ms)

    def release(self, entry_id: bytes) -> None:
        """The entry is no longer running here (done, or interrupted: its lease then expires)."""
        self._leases.pop(entry_id, None)

    def remember(self, pipe: Any, command_id: str, result: bytes) -> None:
        """Queue on `pipe`: the command's result kept under its id, its lease given up."""
        pipe.set(self._keys.command(command_id), result, xx=True, keepttl=True)
        pipe.delete(self._keys.lease(command_id))
