"""Peer `echo`: the transport floor of the gateway's stack, a bare Hypercorn + Quart echo.

One Quart websocket route, `/ocpp/<identity>`: it accepts the first of `ocpp1.6`/`ocpp2.0.1`
the client offers (HTTP 400 when it offers neither, Quart's 404 for other paths) and sends every
message back unchanged. No middleware, no parsing, no logging per message.

Hypercorn (the gateway's pinned 0.18.0) runs it exactly as `hypercorn --worker-class uvloop
--workers 0 bench.peers.echo:app` would: its own uvloop worker (`uvloop_worker`) in this process,
its own TLS (`certfile`/`keyfile`, and `ca_certs` with `verify_mode = CERT_REQUIRED` for mutual
TLS), its own SIGTERM handling. The only differences from that command line: the sockets are
bound and put into listening state here, so that port 0 can be resolved and announced, and
`graceful_timeout` is 0.5 s (default 3 s) so a SIGTERM with open connections ends within 2 s. Other
settings stay at Hypercorn's defaults: no server pings (`websocket_ping_interval` None),
16 MiB message limit, backlog 100, no access log.

permessage-deflate: Hypercorn 0.18 accepts it whenever a client offers it (the gateway patches
that off, `gateway/hypercorn_compat.py`); this bare echo does not, so it stays uncompressed only
because the load generator never offers it.

SIGTERM with connections still open: Hypercorn does not close WebSockets itself; after
`graceful_timeout` it cancels them (the client sees close code 1011) and asyncio logs a
CancelledError traceback from the stream callback on stderr. Exit status 0 all the same.

Run: `python -m bench.peers.echo --host 127.0.0.1 --port 0 [--cert F --key F [--client-ca F]]`.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Sequence

from hypercorn.asyncio.run import uvloop_worker
from hypercorn.config import Config
from quart import Quart, websocket

from .startup import (
    PeerOptions,
    announce_listening,
    choose_subprotocol,
    parse_options,
    raise_fd_limit,
)

PEER = "echo"
APPLICATION_PATH = "bench.peers.echo:app"

app = Quart(__name__)


@app.websocket("/ocpp/<identity>")
async def echo(identity: str) -> tuple[str, int] | None:
    """Accept the OCPP subprotocol asked for, then send every message back as it came."""
    subprotocol = choose_subprotocol(websocket.requested_subprotocols)
    if subprotocol is None:
        return "expected subprotocol ocpp1.6 or ocpp2.0.1\n", 400
    await websocket.accept(subprotocol=subprotocol)
    while True:
        await websocket.send(await websocket.receive())


def hypercorn_config(options: PeerOptions) -> Config:
    """Hypercorn's defaults, with the uvloop worker in this process and the peer's address/TLS."""
    config = Config()
    config.application_path = APPLICATION_PATH
    config.worker_class = "uvloop"
    config.workers = 0  # serve in this process (the runner reads this PID's CPU time)
    config.bind = [f"{options.host}:{options.port}"]
    config.graceful_timeout = 0.5
    if options.tls is not None:
        config.certfile = str(options.tls.cert)
        config.keyfile = str(options.tls.key)
        if options.tls.client_ca is not None:
            config.ca_certs = str(options.tls.client_ca)
            config.verify_mode = ssl.CERT_REQUIRED
    return config


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(PEER, argv)
    raise_fd_limit()
    config = hypercorn_config(options)
    sockets = config.create_sockets()
    listening = [*sockets.secure_sockets, *sockets.insecure_sockets]
    for sock in listening:  # accept into the backlog now; the worker serves it once started
        sock.listen(config.backlog)
    announce_listening(PEER, listening[0].getsockname()[1])
    uvloop_worker(config, sockets)  # returns after SIGTERM/SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
