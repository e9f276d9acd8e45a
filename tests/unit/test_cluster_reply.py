"""A node serving another node's CALL whose answer cannot be published says so in its log."""

from __future__ import annotations

import asyncio
import logging

from gateway.cluster.directory import InMemoryDirectory
from gateway.cluster.remote import ClusterCalls
from gateway.ocppj.codec import CallResult


class DeadBus:
    async def publish(self, node: str, message: dict) -> None:
        raise ConnectionError("Redis went away")


async def test_a_reply_that_cannot_be_published_is_logged_not_left_unretrieved(caplog):
    caplog.set_level(logging.WARNING, logger="gateway.cluster")
    calls = ClusterCalls(InMemoryDirectory(), DeadBus(), "node-b", 5.0)  # type: ignore[arg-type]

    async def local_call(identity, action, payload, timeout):
        return CallResult("m1", {"status": "Accepted"})

    message = {
        "type": "call",
        "request_id": "r1",
        "reply_to": "node-a",
        "identity": "CP1",
        "action": "ClearCache",
        "payload": {},
    }
    assert calls.on_message(message, local_call)
    (serving,) = calls._serving
    await asyncio.wait_for(serving, 2)
    assert serving.exception() is None
    (logged,) = [r.fields for r in caplog.records if r.msg == "cluster_reply_lost"]
    assert logged == {
        "identity": "CP1",
        "to_node": "node-a",
        "error": "Redis went away",
    }
