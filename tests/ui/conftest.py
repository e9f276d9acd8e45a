"""A gateway with UI tokens of every role, and helpers for UI API clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
import pytest
import websockets

from security.tokens import InMemoryTokenStore, new_token

from ..conftest import RunningGateway


@dataclass
class UiGateway:
    server: RunningGateway
    tokens: InMemoryTokenStore
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def ui_url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ui"

    def cp_url(self, identity: str) -> str:
        return self.server.url(identity)

    def add_token(self, name: str, role: str, scopes=("*",), expires_in=None) -> str:
        secret, record = new_token(role, tuple(scopes), expires_in, name)  # type: ignore[arg-type]
        self.tokens.put(record)
        self.secrets[name] = secret
        return secret


class UiClient:
    """A UI API client over a real WebSocket."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._counter = 0

    async def send(self, message: dict) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = 3.0) -> dict:
        return orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, message: dict, timeout: float = 5.0) -> dict:
        """Send with a fresh id and return the answer carrying that id (events are skipped)."""
        self._counter += 1
        request_id = f"r{self._counter}"
        await self.send({**message, "id": request_id})
        while True:
            answer = await self.recv(timeout)
            if answer.get("id") == request_id:
                return answer

    async def next_event(self, predicate=lambda e: True, timeout: float = 3.0) -> dict:
        while True:
            message = await self.recv(timeout)
            if message["type"] == "event" and predicate(message):
                return message


@pytest.fixture
async def ui_gateway(start_gateway) -> UiGateway:
    tokens = InMemoryTokenStore()
    server = await start_gateway(tokens=tokens, ui={"auth_timeout_seconds": 0.5})
    gateway = UiGateway(server, tokens)
    for role in ("viewer", "operator", "admin"):
        gateway.add_token(role, role)
    gateway.add_token("scoped", "operator", scopes=("SCOPE-*",))
    return gateway


@pytest.fixture
def start_ui(start_gateway):
    """Factory: a gateway with one token per role named, e.g. `await start_ui("admin", ui={})`."""

    async def start(*roles: str, records=None, **sections) -> UiGateway:
        tokens = InMemoryTokenStore()
        server = await start_gateway(records=records, tokens=tokens, **sections)
        gateway = UiGateway(server, tokens)
        for role in roles:
            gateway.add_token(role, role)
        return gateway

    return start


async def connect_silent(gateway: UiGateway, name: str) -> UiClient:
    """A UI client whose socket buffers at most one message: it reads only when told to."""
    ws = await websockets.connect(
        gateway.ui_url,
        max_size=None,
        max_queue=1,
        additional_headers={"Authorization": f"Bearer {gateway.secrets[name]}"},
    )
    client = UiClient(ws)
    assert (await client.recv())["type"] == "welcome"
    return client


async def connect(gateway: UiGateway, name: str) -> UiClient:
    ws = await websockets.connect(
        gateway.ui_url, additional_headers={"Authorization": f"Bearer {gateway.secrets[name]}"}
    )
    client = UiClient(ws)
    welcome = await client.recv()
    assert welcome["type"] == "welcome", welcome
    return client
