"""Guards on the Hypercorn internals the gateway uses: these fail on a Hypercorn upgrade."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypercorn.protocol.ws_stream import Handshake

from gateway import hypercorn_compat
from gateway.hypercorn_compat import (
    PINNED_VERSION,
    HypercornIncompatible,
    check_compatible,
    set_permessage_deflate,
)

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_pins_exactly_the_reviewed_hypercorn_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"hypercorn=={PINNED_VERSION}" in project["project"]["dependencies"]


def test_installed_hypercorn_is_compatible():
    check_compatible()  # raises on a moved internal or another version


def test_another_hypercorn_version_refuses_to_start(monkeypatch):
    monkeypatch.setattr(hypercorn_compat, "version", lambda _name: "0.19.0")
    with pytest.raises(HypercornIncompatible, match=r"pinned to 0\.18\.0"):
        check_compatible()


def test_moved_handshake_internals_refuse_to_start(monkeypatch):
    monkeypatch.setattr(Handshake, "accept", lambda self, subprotocol, headers: None)
    with pytest.raises(HypercornIncompatible, match="no longer negotiates"):
        check_compatible()


HEADERS = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
]


@pytest.mark.parametrize(("enabled", "negotiated"), [(False, False), (True, True)])
def test_permessage_deflate_switch_controls_hypercorns_handshake(enabled, negotiated):
    set_permessage_deflate(enabled)
    try:
        _, headers, _ = Handshake(HEADERS, "1.1").accept(None, [])
    finally:
        set_permessage_deflate(False)
    names = {name for name, _ in headers}
    assert (b"sec-websocket-extensions" in names) is negotiated


def test_moved_close_reporting_refuses_to_start(monkeypatch):
    """`report_peer_close_codes` replaces WSStream.handle's StreamClosed branch."""

    async def handle(self, event):  # a Hypercorn whose close handling changed
        return None

    monkeypatch.setattr(hypercorn_compat, "_original_stream_handle", handle)
    with pytest.raises(HypercornIncompatible, match="no longer closes"):
        check_compatible()


def test_connection_server_mirrors_hypercorns_tcp_server(monkeypatch):
    """`connection_server` copies TCPServer's protocol handling: a changed TCPServer refuses."""
    from hypercorn.asyncio import tcp_server

    class Changed:
        async def run(self) -> None:
            return None

    monkeypatch.setattr(tcp_server, "TCPServer", Changed)
    with pytest.raises(HypercornIncompatible):
        check_compatible()


def test_a_changed_app_queue_refuses_to_start(monkeypatch):
    """`ConnectionTaskGroup.spawn_app` mirrors TaskGroup.spawn_app with an `AppInbox`."""
    from hypercorn.asyncio.task_group import TaskGroup

    async def spawn_app(self, app, config, scope, send):  # e.g. a queue of another kind
        return None

    monkeypatch.setattr(TaskGroup, "spawn_app", spawn_app)
    with pytest.raises(HypercornIncompatible, match="spawn_app changed"):
        check_compatible()


def test_changed_pings_refuse_to_start(monkeypatch):
    """`PingScheduler` sends what Hypercorn's own ping loop sends, as long as it sends that."""
    from hypercorn.protocol.ws_stream import WSStream

    async def _send_pings(self):  # e.g. pings with a payload, or a pong check of its own
        return None

    monkeypatch.setattr(WSStream, "_send_pings", _send_pings)
    with pytest.raises(HypercornIncompatible, match="pings differently"):
        check_compatible()
