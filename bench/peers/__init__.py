"""The peer servers the gateway is benchmarked against (issue 8), each started as a subprocess.

- `ocpp-lib`: the canonical Python central system: the `ocpp` library's `ChargePoint` handlers
  (its jsonschema validation on) behind a `websockets` server (`bench/peers/ocpp_lib.py`).
- `ocpp-rpc`: Node's `ocpp-rpc` `RPCServer` in strict mode (schema validation of every inbound
  call and outbound answer), `bench/peers/ocpp_rpc/server.js`; installed by
  `python -m bench.peers.setup` (npm ci).
- `echo`: the transport floor of the gateway's stack: a bare Hypercorn + Quart app under
  Hypercorn's uvloop worker that echoes every message (`bench/peers/echo.py`).

The contract every peer keeps (the benchmark runner relies on it):
- arguments `--host H --port P [--cert FILE --key FILE [--client-ca FILE]]`; port 0 picks a free
  port. `--client-ca` means mutual TLS: a client certificate is required and verified against
  that CA bundle;
- once it accepts connections it prints exactly one JSON line on stdout,
  `{"event": "listening", "peer": NAME, "port": N, "pid": PID}`, and nothing per message;
- WebSocket URL path `/ocpp/{identity}`, subprotocols `ocpp1.6` and `ocpp2.0.1` (the server's
  order decides when a client offers both); a client offering neither is refused at the handshake;
- no permessage-deflate, no server-initiated pings, RLIMIT_NOFILE raised to the hard limit;
- SIGTERM: open connections are closed and the process exits 0 within 2 s.

The peers ask for no credentials. The gateway additionally checks Basic auth (profile 1 and 2) or a
client certificate against its records (profile 3); the runner accounts for that difference.

The python peers run as `python -m bench.peers.<module>`: start them with the repository root as
the working directory (or on PYTHONPATH), as the other benchmarks are.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

PEERS = ("ocpp-lib", "ocpp-rpc", "echo")

PEERS_DIR = Path(__file__).resolve().parent
NODE_PEER_DIR = PEERS_DIR / "ocpp_rpc"
NODE_SERVER = NODE_PEER_DIR / "server.js"

_PYTHON_MODULES = {"ocpp-lib": "bench.peers.ocpp_lib", "echo": "bench.peers.echo"}


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a wss listener; `client_ca` set means mutual TLS (client certificate required
    and verified against that CA bundle)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


def peer_command(name: str, *, host: str, port: int, tls: TlsFiles | None) -> list[str]:
    """The argv that starts peer `name` listening on `host:port` (ws, or wss with `tls`)."""
    if name in _PYTHON_MODULES:
        command = [sys.executable, "-m", _PYTHON_MODULES[name]]
    elif name == "ocpp-rpc":
        command = ["node", str(NODE_SERVER)]
    else:
        raise ValueError(f"unknown peer {name!r}: one of {', '.join(PEERS)}")
    command += ["--host", host, "--port", str(port)]
    if tls is not None:
        command += ["--cert", str(tls.cert), "--key", str(tls.key)]
        if tls.client_ca is not None:
            command += ["--client-ca", str(tls.client_ca)]
    return command
