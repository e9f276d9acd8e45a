"""Re-sent CALLs in forward mode (OCPP-J 4.1.3: a message id identifies one CALL): a charge point
that re-sends a message after a reconnect gets the backend's answer to it, whichever session or
node the first delivery went through, and the message id is free again once it is answered."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
import websockets

from examples.backend_consumer import BOOT_INTERVAL
from gateway.broker.forwarding import ForwardingHandler

from .support import BOOT16, connect, envelopes, exchange, running_backend


def _logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name]


async def _until_logged(caplog: pytest.LogCaptureFixture, name: str, **fields: str) -> None:
    for _ in range(60):
        if any(fields.items() <= f.items() for f in _logged(caplog, name)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} {fields} within 3 s")


async def _forwarded(redis_client, prefix: str) -> dict:
    """The one CALL in the call stream (waiting for it)."""
    for _ in range(60):
        calls = await envelopes(redis_client, prefix, "call")
        if calls:
            (call,) = calls
            return call
        await asyncio.sleep(0.05)
    raise AssertionError("nothing was forwarded")


async def test_a_resend_joined_to_a_delivery_whose_session_is_force_ended_gets_the_answer(
    gateways, redis_server, redis_client, prefix, caplog
):
    """The link goes half-open while BootNotification waits for the backend; the charge point
    reconnects and re-sends it; the old session never answers the close and is force-ended.
    The re-send still gets the backend's answer, and its message id is not refused afterwards."""
    caplog.set_level(logging.INFO, logger="gateway")
    gateway = await gateways.start(
        redis={"url": redis_server.url, "key_prefix": prefix, "node_id": "node-a"},
        broker={"mode": "forward", "answer_timeout_seconds": 4.0, "commands": False},
        limits={"close_timeout_seconds": 0.3},
    )
    boot = [2, "b1", "BootNotification", BOOT16]
    old = await websockets.connect(gateway.url("HALF-1"), subprotocols=["ocpp1.6"])
    try:
        await old.send(orjson.dumps(boot).decode())
        await _forwarded(redis_client, prefix)
        old.transport.pause_reading()  # half-open: the close of the old session goes unanswered
        async with connect(gateway, "HALF-1") as new:
            await new.send(orjson.dumps(boot).decode())
            await _until_logged(caplog, "broker_duplicate", identity="HALF-1")
            await _until_logged(caplog, "close_timeout", identity="HALF-1")  # force-ended
            async with running_backend(redis_client, prefix):
                answer = orjson.loads(await asyncio.wait_for(new.recv(), 3))
            again = await exchange(new, boot)
    finally:
        old.transport.abort()
    assert _logged(caplog, "broker_duplicate")[0]["answer"] == "joined"  # shared the wait
    assert answer[:2] == [3, "b1"] and answer[2]["interval"] == BOOT_INTERVAL
    assert again == answer  # remembered; not "a CALL with this MessageId is already handled"
    assert not _logged(caplog, "broker_answer_late")


async def test_a_call_whose_handler_is_cancelled_from_within_gets_an_internal_error(
    forward_gateway, backend, monkeypatch, caplog
):
    """A CancelledError out of the handler that did not cancel the session's worker is a
    CALLERROR InternalError, and the message id can be sent again."""
    caplog.set_level(logging.INFO, logger="gateway")
    forward = ForwardingHandler._forward
    seen: list[str] = []

    async def interrupted(self, info, version, call):  # type: ignore[no-untyped-def]
        seen.append(call.message_id)
        if len(seen) == 1:
            raise asyncio.CancelledError  # e.g. a future it awaited was cancelled
        return await forward(self, info, version, call)

    monkeypatch.setattr(ForwardingHandler, "_forward", interrupted)
    gateway = await forward_gateway()
    async with connect(gateway, "CANCELLED-1") as ws:
        first = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
        second = await exchange(ws, [2, "b1", "BootNotification", BOOT16])
    assert first[:3] == [4, "b1", "InternalError"]
    assert second[:2] == [3, "b1"] and second[2]["interval"] == BOOT_INTERVAL
    (logged,) = _logged(caplog, "call_handler_cancelled")
    assert logged["action"] == "BootNotification" and logged["message_id"] == "b1"


@pytest.mark.parametrize("first_node", ["alive", "restarted"])
async def test_a_message_resent_through_another_node_gets_the_answer_to_its_first_delivery(
    gateways, forward_gateway, redis_client, prefix, caplog, first_node
):
    """The first delivery of an Authorize went through node-a, which answered from the fallback
    (the backend was slow); the charge point re-sends it through node-b; the backend's answer
    goes to node-a's reply stream. node-b still answers it: the idTag the backend blocks stays
    blocked. Also when node-a is gone (a restart gives a node a new id)."""
    caplog.set_level(logging.INFO, logger="gateway.broker")
    a = await forward_gateway(node="node-a", answer_timeout_seconds=0.3)
    b = await forward_gateway(node="node-b")
    authorize = [2, "a1", "Authorize", {"idTag": "STOLEN-CARD"}]
    async with connect(a, "ROAM-1") as ws:
        first = await exchange(ws, authorize)
    if first_node == "restarted":
        await gateways.stop(a)
    async with connect(b, "ROAM-1") as ws:
        await ws.send(orjson.dumps(authorize).decode())
        await _until_logged(caplog, "broker_duplicate", answer="awaited")
        call = await _forwarded(redis_client, prefix)  # the backend answers now
        blocked = {"id": call["id"], "payload": {"idTagInfo": {"status": "Blocked"}}}
        await redis_client.xadd(call["reply_to"], {"answer": orjson.dumps(blocked)})
        second = orjson.loads(await asyncio.wait_for(ws.recv(), 3))
    assert first == [3, "a1", {"idTagInfo": {"status": "Accepted"}}]  # the embedded fallback
    assert call["reply_to"] == f"{prefix}broker:replies:node-a"
    assert second == [3, "a1", {"idTagInfo": {"status": "Blocked"}}]
    assert not _logged(caplog, "broker_answer_timeout")[1:]  # only node-a's first wait
