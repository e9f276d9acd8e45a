"""The broker's Redis key names, all under the configured prefix.

Redis Cluster: every command touches one key, except the append script, which reads and writes a
message's idempotency key and the call stream together; both carry the hash tag `{calls}` so they
live in one slot (a prefix that has its own `{tag}` puts every key in that slot, which works too).
"""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_GROUP = "gateways"  # the consumer group of the gateway nodes on the command stream


@dataclass(frozen=True, slots=True)
class BrokerKeys:
    """Key names of one gateway deployment (one prefix)."""

    prefix: str
    calls: str  # stream: charge point CALLs, SENDs and session events for the backend
    commands: str  # stream: the backend's commands to charge points
    results: str  # stream: the results of those commands
    _seen: str
    _replies: str
    _command: str
    _lease: str

    @classmethod
    def under(cls, prefix: str) -> BrokerKeys:
        """The key names under `prefix` (e.g. `ocppgw:`)."""
        base = f"{prefix}broker:"
        return cls(
            prefix,
            calls=f"{base}{{calls}}",
            commands=f"{base}commands",
            results=f"{base}results",
            _seen=f"{base}{{calls}}:seen:",
            _replies=f"{base}replies:",
            _command=f"{base}command:",
            _lease=f"{base}command-lease:",
        )

    def seen(self, message_key: str) -> str:
        """Idempotency key of a forwarded message (`identity:message_id`); holds its answer."""
        return self._seen + message_key

    def replies(self, node: str) -> str:
        """The stream where the backend writes answers for `node`."""
        return self._replies + node

    def command(self, command_id: str) -> str:
        """Idempotency key of a backend command; holds its result once it ran."""
        return self._command + command_id

    def lease(self, command_id: str) -> str:
        """The lease of a running command: the name of the node running it, with a TTL."""
        return self._lease + command_id
