"""The gateway against an earlier version of itself: same case, same machine, runs alternating.

Run: `python -m bench.ab --base HEAD~1 --case session16-ws` (defaults: 4 rounds of 1,000
connections, 8 s windows). The base revision is exported with `git archive` into a temporary
directory and run from there (PYTHONPATH in front of this checkout); the head is this checkout as
it is on disk, uncommitted changes included. Each round runs both, each in a fresh gateway
process, base first in odd rounds and head first in even ones, so a slow spell of the shared
machine hits both and neither always goes first. Prints and writes
(`--out`, default `bench/results/ab-<time>.json`) one JSON object: every value, the medians and
head / base; the load records go to `results.jsonl` in the folder of the same name. The
figure is the case's (`bench.compare`): server CPU per call, KiB per idle connection, or
seconds until a storm is booted again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.compare import CASES, run_server, summarize
from bench.compare import parse_args as compare_args
from bench.targets import BenchPki

ROOT = Path(__file__).resolve().parents[1]


def export(revision: str, directory: Path) -> Path:
    """`revision` of this repository as files in `directory` (raises if git cannot)."""
    directory.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


async def run(args: argparse.Namespace, argv: list[str], records: Path) -> dict[str, Any]:
    """Every round (base and head, alternating who goes first); the summary. The load records
    are appended to `records`/results.jsonl."""
    case = CASES[args.case]
    options = compare_args(
        [
            *("--connections", str(args.connections), "--processes", str(args.processes)),
            *("--duration", str(args.duration), "--warmup", str(args.warmup)),
            *("--rounds", str(args.rounds), "--no-progress", "--no-plots"),
        ]
    )
    rounds = []
    with tempfile.TemporaryDirectory(prefix="ocpp-ab-") as temporary:
        work = Path(temporary)
        trees = {"base": {"PYTHONPATH": str(export(args.base, work / "base"))}, "head": None}
        pki = BenchPki.create(work)
        for number in range(args.rounds):
            order = ["base", "head"] if number % 2 == 0 else ["head", "base"]  # ABBA
            runs = {}
            for name in order:
                record = await run_server(
                    options, case, "gateway", pki, work, records, number, trees[name]
                )
                if not record.get("ok"):
                    raise SystemExit(f"bench.ab: the run had errors: {record.get('errors')}")
                print(f"round {number + 1}: {name} {record.get(case.figure)}", file=sys.stderr)
                runs[name] = record
            rounds.append({"base": runs["base"], "head": runs["head"]})
    summary = summarize(case, rounds)
    median = summary["values"]
    return {
        "command": shlex.join(["python", "-m", "bench.ab", *argv]),
        "case": args.case,
        "figure": case.figure,
        "base": args.base,
        "values": summary["rounds"],
        "median": median,
        "head_over_base": round(median["head"] / median["base"], 3) if median["base"] else None,
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
    out = args.out or ROOT / "bench" / "results" / f"ab-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(args, argv, out.with_suffix("")))
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
