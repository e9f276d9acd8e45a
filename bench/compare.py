"""The gateway beside its peers, in one run on one machine: CPU per call, latency, memory.

Run: `python -m bench.compare` (defaults: 1,000 connections, 2 load processes, 10 s windows), or
e.g. `python -m bench.compare --connections 200 --duration 3 --cases heartbeat-ws,idle-wss`.

For every case (a load scenario over ws or wss) and every server (the gateway, `ocpp-lib`,
`ocpp-rpc`, `echo`; see `bench.peers`), a fresh server process is started, the load generator
(`bench.load`) runs against it, and the server is stopped: no server carries state from one case
into the next. The load generator counts every error and a run with errors fails the comparison
(exit 1). The echo peer gets the same frames and must send them back unchanged: it is the cost of
the transport for messages of the same size.

The figures that matter are ratios measured in the same run (the machine is shared and noisy):
the gateway's server CPU time per call against each peer's, and its memory per idle connection.
With `--rounds N` every case runs N times (each time every server in turn) and the figures are
the medians, so a slow spell of the machine during one server's run weighs less.
Written to `--out` (default `bench/results/compare-<time>/`): every load record as a JSON line
(`results.jsonl`, with `server` and `case`), `summary.json` (figures and ratios per case),
`summary.md` (the table for docs/benchmarks.md), one PNG per load run and `compare.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load.spec import LoadSpec
from bench.peers import PEERS
from bench.profiler import WindowProfiler
from bench.targets import BENCH_PASSWORD, BenchPki, Target, start_gateway, start_peer

SERVERS = ("gateway", *PEERS)
CPU_FIGURE = "server_cpu_us_per_call"
MEMORY_FIGURE = "kib_per_connection"
STORM_FIGURE = "boot_all_seconds"
CONNECT_FIGURE = "server_cpu_ms_per_connection"
WINDOWED = ("heartbeat", "session")  # scenarios with a measured window (what --profile records)
FIGURES = {"idle": MEMORY_FIGURE, "storm": STORM_FIGURE}  # else CPU per call
UNITS = {
    CPU_FIGURE: "CPU us/call",
    MEMORY_FIGURE: "KiB/conn",
    STORM_FIGURE: "s to reboot all",
    CONNECT_FIGURE: "CPU ms/connect",
}


@dataclass(frozen=True)
class Case:
    """One load scenario over one scheme; `profile` is the gateway's security profile."""

    name: str
    scenario: str
    scheme: str
    subprotocol: str = "ocpp1.6"
    profile: int = 0
    mutual: bool = False
    meter_values: int = 5  # session: MeterValues per transaction

    @property
    def figure(self) -> str:
        return FIGURES.get(self.scenario, CPU_FIGURE)

    @property
    def figures(self) -> tuple[str, ...]:
        """Every figure reported for the case: idle runs also give the CPU of a connect."""
        return (self.figure, CONNECT_FIGURE) if self.scenario == "idle" else (self.figure,)


CASES = {
    case.name: case
    for case in (
        Case("heartbeat-ws", "heartbeat", "ws"),
        Case("heartbeat-wss", "heartbeat", "wss", profile=2),
        Case("session16-ws", "session", "ws"),
        Case("session201-ws", "session", "ws", "ocpp2.0.1"),
        Case("session16-wss", "session", "wss", profile=2),
        # an hour's charge sampled every minute: the traffic of a busy fleet is mostly MeterValues
        Case("hour16-ws", "session", "ws", meter_values=60),
        Case("hour201-ws", "session", "ws", "ocpp2.0.1", meter_values=60),
        Case("hour16-wss", "session", "wss", profile=2, meter_values=60),
        Case("idle-ws", "idle", "ws"),
        Case("idle-wss", "idle", "wss", profile=2),
        Case("heartbeat-mtls", "heartbeat", "wss", profile=3, mutual=True),
        Case("idle-mtls", "idle", "wss", profile=3, mutual=True),
        Case("storm-wss", "storm", "wss", profile=2),
        Case("storm-mtls", "storm", "wss", profile=3, mutual=True),
    )
}
DEFAULT_CASES = (
    "heartbeat-ws",
    "heartbeat-wss",
    "session16-ws",
    "session201-ws",
    "idle-ws",
    "idle-wss",
)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def load_spec(
    args: argparse.Namespace,
    case: Case,
    target: Target,
    pki: BenchPki,
    out: Path,
    certs: Path,
    suffix: str = "",
) -> LoadSpec:
    """The load run of `case` against `target`."""
    tls = case.scheme == "wss"
    return LoadSpec(
        url=target.url,
        scenario=case.scenario,  # type: ignore[arg-type]
        connections=args.connections,
        processes=args.processes,
        duration=args.duration,
        warmup=args.warmup,
        subprotocol=case.subprotocol,
        meter_values=case.meter_values,
        identity_prefix=args.identity_prefix,
        password=BENCH_PASSWORD if case.profile in (1, 2) and target.name == "gateway" else None,
        ca_file=str(pki.trust) if tls else None,
        client_certs=str(certs) if case.mutual else None,
        server_pids=target.pids,
        expect=target.expect,  # type: ignore[arg-type]
        out=None,  # written by run_case, with the server and the case
        plot=str(out / f"{case.name}-{target.name}{suffix}.png") if args.plots else None,
        no_progress=args.no_progress,
        deadline=args.deadline,
        heartbeat_check=case.scenario == "idle",
        rate=args.rate,
        source_addresses=max(1, -(-args.connections // 20_000)),  # ~28k ephemeral ports each
    )


async def run_case(
    args: argparse.Namespace, case: Case, pki: BenchPki, work: Path, out: Path, round_index: int = 0
) -> dict[str, dict[str, Any]]:
    """Every server under `case` (round `round_index`); the load records by server."""
    servers = list(args.servers)
    servers = servers[round_index % len(servers) :] + servers[: round_index % len(servers)]
    records: dict[str, dict[str, Any]] = {}
    for server in servers:  # each round starts with the next server: no server always first
        records[server] = await run_server(args, case, server, pki, work, out, round_index)
    return records


async def run_server(
    args: argparse.Namespace,
    case: Case,
    server: str,
    pki: BenchPki,
    work: Path,
    out: Path,
    round_index: int = 0,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One fresh process of `server` under `case`: its load record, also appended to
    `out`/results.jsonl. `env` goes to the gateway's process (e.g. another source tree)."""
    from bench.load.result import append_line
    from bench.load.run import run_load

    identities = [f"{args.identity_prefix}{index:06d}" for index in range(args.connections)]
    certs = work / "client-certs"
    if case.mutual:
        pki.client_certificates(identities, certs)
    suffix = f"-round{round_index + 1}" if args.rounds > 1 else ""
    directory = work / f"{case.name}-{server}{suffix}"
    if server == "gateway":
        extra = args.gateway_config.read_text() if args.gateway_config else ""
        target = await start_gateway(
            directory,
            pki,
            case.scheme,
            identities,
            case.profile,
            workers=args.workers,
            extra_config=extra,
            env=env,
        )
    else:
        target = await start_peer(server, pki, case.scheme, mutual=case.mutual)
    profiler = None
    try:
        spec = load_spec(args, case, target, pki, out, certs, suffix)
        spec.command = shlex.join(["python", "-m", "bench.load", *spec.to_args()])
        if args.profile and server == "gateway":
            if case.scenario in WINDOWED:
                profiler = WindowProfiler(target.pids[0], out / f"profile-{case.name}{suffix}")
            else:
                print(
                    f"bench.compare: no profile of {case.name}: no measured window", file=sys.stderr
                )
        on_window = profiler.on_window if profiler is not None else None
        record = await asyncio.to_thread(run_load, spec, on_window)
    finally:
        try:
            if profiler is not None:
                await profiler.finish()
        finally:
            await target.stop()
    record.update(server=server, case=case.name, round=round_index + 1)
    append_line(str(out / "results.jsonl"), record)
    print(json.dumps(_brief(record)), file=sys.stderr, flush=True)
    return record


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("case", "server", "ok", "calls_per_second", CPU_FIGURE, MEMORY_FIGURE, STORM_FIGURE)
    keys += (CONNECT_FIGURE, "refusals", "peak_rss_kib", "connect_seconds", "errors")
    return {key: record.get(key) for key in keys if key in record}


def summarize(
    case: Case, rounds: list[dict[str, dict[str, Any]]], figure: str | None = None
) -> dict[str, Any]:
    """One figure of the case (default: its main one) per server, the median over the rounds
    (each a record per server), and the gateway's ratio to each peer (lower is better)."""
    figure = figure or case.figure
    servers = list(rounds[0])

    def series(server: str, get: Any) -> list[Any]:
        return [get(records[server]) for records in rounds]

    def median(server: str, get: Any) -> Any:
        found = [value for value in series(server, get) if isinstance(value, int | float)]
        return round(statistics.median(found), 3) if found else None

    def field(name: str) -> Any:
        return lambda record: record.get(name)

    values = {server: median(server, field(figure)) for server in servers}
    summary: dict[str, Any] = {
        "case": case.name,
        "figure": figure,
        "values": values,
        "rounds": {s: series(s, field(figure)) for s in servers},
        "calls_per_second": {s: median(s, field("calls_per_second")) for s in servers},
        "latency_ms_p99": {
            s: median(s, lambda r: (r.get("latency_ms") or {}).get("p99")) for s in servers
        },
        "ok": {s: all(series(s, lambda r: bool(r.get("ok")))) for s in servers},
        "peak_rss_kib": {s: median(s, field("peak_rss_kib")) for s in servers},
        "refusals": {s: median(s, field("refusals")) for s in servers},
    }
    ours = values.get("gateway")
    if ours:
        summary["gateway_ratio"] = {
            server: round(ours / value, 3)
            for server, value in values.items()
            if server != "gateway" and value
        }
    return summary


def markdown(summaries: list[dict[str, Any]], servers: list[str], command: str) -> str:
    """The comparison table: one row per case, the gateway's ratio to each peer."""
    peers = [server for server in servers if server != "gateway"]
    head = ["case", "figure", *servers, *(f"gateway / {peer}" for peer in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for summary in summaries:
        values = summary["values"]
        ratios = summary.get("gateway_ratio", {})
        unit = UNITS[summary["figure"]]
        row = [summary["case"], unit]
        row += [_number(values.get(server)) for server in servers]
        row += [f"{ratios[peer]:.2f}" if peer in ratios else "-" for peer in peers]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + f"\n\nCommand: `{command}`\n"


def _number(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def plot_summary(summaries: list[dict[str, Any]], servers: list[str], path: Path) -> None:
    """Bars per case: each server's figure (CPU us per call, or KiB per idle connection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5))
    for axis, kind in zip(axes, (CPU_FIGURE, MEMORY_FIGURE), strict=True):
        chosen = [s for s in summaries if s["figure"] == kind]
        width = 0.8 / max(1, len(servers))
        for index, server in enumerate(servers):
            xs = [n + index * width for n in range(len(chosen))]
            ys = [s["values"].get(server) or 0 for s in chosen]
            axis.bar(xs, ys, width, label=server)
        axis.set_xticks([n + 0.4 - width / 2 for n in range(len(chosen))])
        axis.set_xticklabels([s["case"] for s in chosen], rotation=20)
        axis.set_ylabel(
            "server CPU time per call (us)" if kind == CPU_FIGURE else "KiB per idle connection"
        )
        axis.set_yscale("log")
        axis.legend()
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle("ocpp-gateway beside its peers (lower is better, same run)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


async def compare(args: argparse.Namespace, argv: list[str]) -> int:
    """Run every case against every server; write the results; 1 when any run had errors."""
    out = Path(args.out or f"bench/results/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "-m", "bench.compare", *argv])
    summaries = []
    with tempfile.TemporaryDirectory(prefix="ocpp-bench-") as temporary:
        work = Path(temporary)
        pki = BenchPki.create(work)
        for name in args.cases:
            case = CASES[name]
            rounds = [await run_case(args, case, pki, work, out, n) for n in range(args.rounds)]
            summaries += [summarize(case, rounds, figure) for figure in case.figures]
    result = {"command": command, "machine": machine(), "cases": summaries}
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    table = markdown(summaries, list(args.servers), command)
    (out / "summary.md").write_text(table)
    if args.plots:
        plot_summary(summaries, list(args.servers), out / "compare.png")
    print(table)
    failed = list(dict.fromkeys(s["case"] for s in summaries if not all(s["ok"].values())))
    if failed:
        print(f"bench.compare: errors in {', '.join(failed)} (see results.jsonl)", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of each case (every server in turn): medians"
    )
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--cases", type=_names(CASES), default=list(DEFAULT_CASES))
    parser.add_argument("--servers", type=_names(SERVERS), default=list(SERVERS))
    parser.add_argument("--identity-prefix", default="BENCH")
    parser.add_argument("--out", help="result folder (default bench/results/compare-TIME)")
    parser.add_argument("--no-plots", dest="plots", action="store_false")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--deadline", type=float, default=600.0, help="bound on one load run")
    parser.add_argument("--rate", type=float, help="heartbeat/session: total calls per second")
    parser.add_argument(
        "--gateway-config", type=Path, help="a TOML file appended to the gateway's configuration"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the gateway with py-spy: profile-CASE.svg and .txt in --out",
    )
    return parser.parse_args(argv)


def _names(known: Any) -> Any:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(known)}")
        return names

    return parse


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return asyncio.run(compare(parse_args(argv), argv))


if __name__ == "__main__":
    sys.exit(main())
