"""Listening sockets: one set per worker with SO_REUSEPORT, all on the same (resolved) ports."""

from __future__ import annotations

import socket

from gateway.server import create_listeners

from ..conftest import make_config


def test_each_worker_gets_its_own_sockets_on_the_same_ports(tmp_path):
    config = make_config(
        server={"ws_bind": ["127.0.0.1:0"]},
        tls={"wss_bind": ["127.0.0.1:0"], "certs_dir": str(tmp_path / "certs")},
    )
    listeners = create_listeners(config, workers=3)
    try:
        sets = [listeners.for_worker(index).sockets.insecure_sockets for index in range(3)]
        ports = [[sock.getsockname()[1] for sock in sockets] for sockets in sets]
        assert ports[0] == ports[1] == ports[2] and 0 not in ports[0]  # port 0 resolved once
        assert len({id(sock) for sockets in sets for sock in sockets}) == 6  # distinct sockets
        for sockets in sets:
            for sock in sockets:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert listeners.for_worker(1).wss_ports == listeners.wss_ports
        assert listeners.addresses() == listeners.for_worker(2).addresses()
    finally:
        for sock in {sock for sockets in sets for sock in sockets}:
            sock.close()


def test_one_worker_keeps_one_shared_set(tmp_path):
    config = make_config(server={"ws_bind": ["127.0.0.1:0"]}, tls={"wss_bind": []})
    listeners = create_listeners(config)
    try:
        assert listeners.for_worker(0) is listeners and not listeners.per_worker
    finally:
        for sock in listeners.sockets.insecure_sockets:
            sock.close()
