"""CALLs to charge points held by another node: request over the node bus, answer back.

The requesting node finds the holder in the directory and sends it a `call` message; the holder
runs the CALL on its live session (so the one-outstanding-CALL queue of that charge point is the
only queue, cluster-wide) and answers with `call_result`. A lost message shows as a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..logs import event
from ..ocppj.codec import CallError, CallResult
from ..router import CallFailed
from .bus import RedisBus
from .directory import SessionDirectory

log = logging.getLogger("gateway.cluster")
LocalCall = Callable[[str, str, dict[str, Any], float | None], Awaitable[CallResult | CallError]]
REPLY_SLACK_SECONDS = 2.0


class ClusterCalls:
    """Sends CALLs to the holder node and serves CALLs other nodes send here."""

    def __init__(
        self, directory: SessionDirectory, bus: RedisBus, node: str, default_timeout: float
    ) -> None:
        self._directory = directory
        self._bus = bus
        self._node = node
        self._default_timeout = default_timeout
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    async def holder_node(self, identity: str) -> str | None:
        """The node holding `identity` (None when nobody does)."""
        holder = await self._directory.holder(identity)
        return holder.node if holder is not None else None

    async def call(
        self, identity: str, action: str, payload: dict[str, Any], timeout: float | None
    ) -> CallResult | CallError:
        """The CALL's answer from whichever node holds `identity`."""
        holder = await self._directory.holder(identity)
        if holder is None or holder.node == self._node:
            raise CallFailed("offline", f"charge point {identity} is not connected")
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        wait = timeout or self._default_timeout
        try:
            await self._bus.publish(
                holder.node,
                {
                    "type": "call",
                    "request_id": request_id,
                    "reply_to": self._node,
                    "identity": identity,
                    "action": action,
                    "payload": payload,
                    "timeout": wait,
                },
            )
            answer = await asyncio.wait_for(future, wait + REPLY_SLACK_SECONDS)
        except TimeoutError:
            raise CallFailed("timeout", f"no answer from node {holder.node}") from None
        finally:
            self._waiting.pop(request_id, None)
        kind = answer.get("outcome")
        if kind == "callresult":
            return CallResult(answer["message_id"], answer["payload"])
        if kind == "callerror":
            return CallError(
                answer["message_id"], answer["error_code"], answer["description"], answer["details"]
            )
        raise CallFailed(answer.get("reason", "offline"), answer.get("detail", ""))

    def on_message(self, message: dict[str, Any], local_call: LocalCall) -> bool:
        """Handle `call`/`call_result` messages; False for other types."""
        kind = message.get("type")
        if kind == "call_result":
            future = self._waiting.get(str(message.get("request_id")))
            if future is not None and not future.done():
                future.set_result(message)
            return True
        if kind == "call":
            task = asyncio.get_running_loop().create_task(self._serve(message, local_call))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            return True
        return False

    async def _serve(self, message: dict[str, Any], local_call: LocalCall) -> None:
        reply: dict[str, Any] = {"type": "call_result", "request_id": message["request_id"]}
        try:
            result = await local_call(
                message["identity"], message["action"], message["payload"], message.get("timeout")
            )
        except CallFailed as failed:
            reply.update(outcome="failed", reason=failed.reason, detail=failed.detail)
        except Exception as exc:  # the requester must get an answer, not a timeout
            reply.update(outcome="failed", reason="offline", detail=f"{type(exc).__name__}")
        else:
            if isinstance(result, CallError):
                reply.update(
                    outcome="callerror",
                    message_id=result.message_id,
                    error_code=result.error_code,
                    description=result.description,
                    details=result.details,
                )
            else:
                reply.update(
                    outcome="callresult", message_id=result.message_id, payload=result.payload
                )
        try:
            await self._bus.publish(message["reply_to"], reply)
        except Exception as exc:  # Redis went away: the requester times out, said here
            event(
                log,
                "cluster_reply_lost",
                logging.WARNING,
                identity=message["identity"],
                to_node=message["reply_to"],
                error=str(exc)[:200],
            )
