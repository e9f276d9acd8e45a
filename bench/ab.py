"""The gateway against an earlier version of itself: same case, same machine, runs alternating.

Run: `python -m bench.ab --base HEAD~1 --case session16-ws` (defaults: 4 rounds of 1,000
connections, 8 s windows). The base revision is exported with `git archive` into a temporary
directory and run from there (PYTHONPATH in front of this checkout); the head is this checkout as
it is on disk, uncommitted changes included. Each round runs both, each in a fresh gateway
process, base first in odd rounds and head first in even ones, so a slow spell of the shared
machine hits both and neither always goes first. Prints and writes
(`--out`, default `bench/results/ab-<time>.json`) one JSON object: every value, the medians and
head / base. The figure is the case's (`bench.compare`): server CPU per call, KiB per idle
connection, or seconds until a storm is booted again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.compare import CASES, load_spec
from bench.compare import parse_args as compare_args
from bench.targets import BenchPki, start_gateway

ROOT = Path(__file__).resolve().parents[1]


def export(revision: str, directory: Path) -> Path:
    """`revision` of this repository as files in `directory` (raises if git cannot)."""
    directory.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


async def measure(args: argparse.Namespace, tree: Path | None, work: Path, pki: BenchPki) -> Any:
    """One fresh gateway (from `tree`, or this checkout) under the case; its figure."""
    from bench.load.run import run_load

    case = CASES[args.case]
    options = compare_args(
        [
            *("--connections", str(args.connections), "--processes", str(args.processes)),
            *("--duration", str(args.duration), "--warmup", str(args.warmup)),
            *("--no-progress", "--no-plots"),
        ]
    )
    identities = [f"{options.identity_prefix}{n:06d}" for n in range(args.connections)]
    env = {"PYTHONPATH": str(tree)} if tree is not None else None
    directory = Path(tempfile.mkdtemp(dir=work))
    target = await start_gateway(directory, pki, case.scheme, identities, case.profile, env=env)
    try:
        certs = work / "client-certs"
        if case.mutual:
            pki.client_certificates(identities, certs)
        spec = load_spec(options, case, target, pki, work, certs)
        record = await asyncio.to_thread(run_load, spec)
    finally:
        await target.stop()
    if not record.get("ok"):
        raise SystemExit(f"bench.ab: the run had errors: {record.get('errors')}")
    return record.get(case.figure)


async def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    values: dict[str, list[Any]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory(prefix="ocpp-ab-") as temporary:
        work = Path(temporary)
        base = export(args.base, work / "base")
        pki = BenchPki.create(work)
        for round_number in range(args.rounds):
            order = [("base", base), ("head", None)]
            if round_number % 2:  # base, head, head, base, ...: neither always goes first
                order.reverse()
            for name, tree in order:
                value = await measure(args, tree, work, pki)
                values[name].append(value)
                print(f"round {round_number + 1}: {name} {value}", file=sys.stderr, flush=True)
    medians = {name: round(statistics.median(series), 2) for name, series in values.items()}
    return {
        "command": shlex.join(["python", "-m", "bench.ab", *argv]),
        "case": args.case,
        "figure": CASES[args.case].figure,
        "base": args.base,
        "values": values,
        "median": medians,
        "head_over_base": round(medians["head"] / medians["base"], 3) if medians["base"] else None,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--case", choices=sorted(CASES), default="session16-ws")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    result = asyncio.run(run(args, argv))
    out = args.out or ROOT / "bench" / "results" / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
