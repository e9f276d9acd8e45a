"""Load generator: simulate N OCPP charge points against an OCPP-J server and measure it.

    python -m bench.load --url ws://127.0.0.1:9000/ocpp/ --scenario heartbeat \\
        --connections 1000 --processes 2 --duration 10 --server-pid PID --plot run.png

Charge point i is `{prefix}{i:06d}` at URL + identity. Scenarios: idle (open and hold: connect
rate, server RSS per connection), heartbeat (Heartbeat round trips back to back or at --rate:
calls/s, latency percentiles, server CPU per call), session (boot, status, authorize and a
transaction with meter values, in a loop), storm (all reconnect at once and boot: time until all
are booted, refusals, peak RSS). The server's figures need --server-pid (each pid with all its
descendants). One JSON line is printed (and appended to --out); the exit status is 1 when any
error was counted (a CALLERROR, an unexpected close, a timeout, a failed connection, a bad
reply), unless --allow-errors.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import orjson

from .frames import EXPECTS
from .payloads import VERSIONS
from .run import run_load
from .spec import PROGRAM, SCENARIOS, LoadSpec


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d = LoadSpec(url="")
    p.add_argument("--url", required=True, help="server URL; the identity is appended to it")
    p.add_argument("--scenario", choices=SCENARIOS, default=d.scenario)
    p.add_argument("--connections", type=int, default=d.connections, help="charge points")
    p.add_argument("--processes", type=int, default=d.processes, help="client processes")
    p.add_argument(
        "--duration", type=float, default=d.duration, help="seconds held (idle) or measured"
    )
    p.add_argument("--subprotocol", choices=VERSIONS, default=d.subprotocol)
    p.add_argument("--identity-prefix", default=d.identity_prefix)
    p.add_argument("--password", help="HTTP Basic auth password (user = identity)")
    p.add_argument("--ca-file", help="CA certificate(s) to verify a wss server with")
    p.add_argument(
        "--client-certs", help="mutual TLS: DIR/{identity}.pem (chain) and DIR/{identity}.key"
    )
    p.add_argument(
        "--server-pid",
        dest="server_pids",
        type=int,
        nargs="+",
        default=[],
        help="server process(es); each is read with all its descendants from /proc",
    )
    p.add_argument("--expect", choices=EXPECTS, default=d.expect, help="ocpp or a raw echo")
    p.add_argument("--out", help="append the JSON result line to this file")
    p.add_argument("--plot", help="write a PNG figure of the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--deadline", type=float, default=d.deadline, help="bound on the whole run")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even with errors")
    p.add_argument("--warmup", type=float, default=d.warmup, help="seconds before measuring")
    p.add_argument("--rate", type=float, help="total calls per second (default: back to back)")
    p.add_argument(
        "--heartbeat-check", action="store_true", help="idle: one Heartbeat each at the end"
    )
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=d.connect_concurrency,
        help="handshakes in flight per process",
    )
    p.add_argument(
        "--storm-concurrency", type=int, help="storm: handshakes in flight per process (no limit)"
    )
    p.add_argument("--call-timeout", type=float, default=d.call_timeout)
    p.add_argument("--connect-timeout", type=float, default=d.connect_timeout)
    p.add_argument(
        "--max-retry-wait",
        type=float,
        default=d.max_retry_wait,
        help="storm: longest wait after a refusal",
    )
    p.add_argument(
        "--meter-values", type=int, default=d.meter_values, help="session: per transaction"
    )
    p.add_argument(
        "--payload-version",
        choices=VERSIONS,
        help="send this version's payloads whatever the subprotocol (a negative test)",
    )
    p.add_argument("--server-name", default=d.server_name, help="TLS SNI and certificate name")
    p.add_argument(
        "--settle", type=float, default=d.settle, help="idle: seconds before the first RSS"
    )
    p.add_argument(
        "--source-addresses",
        type=int,
        default=d.source_addresses,
        help="loopback: spread connections over 127.0.0.1..N (one ephemeral port range each)",
    )
    return p


def masked_command(argv: list[str]) -> str:
    """The command line as typed, with the password's value masked."""
    shown = list(argv)
    for index, arg in enumerate(shown):
        if arg == "--password" and index + 1 < len(shown):
            shown[index + 1] = "***"
        elif arg.startswith("--password="):
            shown[index] = "--password=***"
    return shlex.join([*PROGRAM, *shown])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cli = parser()
    spec = LoadSpec(**vars(cli.parse_args(argv)))
    spec.command = masked_command(argv)
    try:
        spec.check()
    except ValueError as exc:
        cli.error(str(exc))
    record = run_load(spec)
    print(orjson.dumps(record).decode(), flush=True)
    if record["ok"]:
        return 0
    counts = ", ".join(f"{kind}={count}" for kind, count in record["errors"].items())
    examples = "\n  ".join(record["error_examples"])
    print(
        f"\n*** LOAD RUN FAILED: {record['error_count']} errors ({counts})\n  {examples}\n",
        file=sys.stderr,
    )
    return 0 if spec.allow_errors else 1


if __name__ == "__main__":
    sys.exit(main())
