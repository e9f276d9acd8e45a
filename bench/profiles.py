"""Where a profile's time goes, by part of the stack: `python -m bench.profiles FILE [--top N]`.

FILE holds collapsed stacks (`py-spy record --format raw`, as `bench.compare --profile` writes
them: one line per stack, frames separated by `;`, then the sample count). Prints a Markdown
table of own samples by module (the frame where the time was spent), the modules grouped into
the parts named in docs/benchmarks.md, then the top functions.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # this checkout: its frames are named from here
FRAME = re.compile(r"(?P<function>.*) \((?P<path>.*?):\d+\)$")
# First match wins: (part, start of the module path as `location_of` gives it).
PARTS: tuple[tuple[str, str], ...] = (
    ("Hypercorn and h11", "hypercorn/"),
    ("Hypercorn and h11", "h11/"),
    ("the event loop (uvloop, asyncio)", "asyncio/"),
    ("the event loop (uvloop, asyncio)", "uvloop/"),
    ("the gateway's transport", "gateway/transport.py"),
    ("the gateway's transport", "gateway/connection_server.py"),
    ("the gateway's transport", "gateway/listener.py"),
    ("the gateway's transport", "gateway/app_inbox.py"),
    ("the gateway's transport", "gateway/pings.py"),
    ("TLS (ssl.py)", "ssl.py"),
    ("password hashing (argon2, connects)", "argon2/"),
    ("wsproto", "wsproto/"),
    ("metrics (prometheus_client)", "prometheus_client/"),
    ("the gateway's OCPP work", "gateway/"),
)


def location_of(frame: str) -> tuple[str, str]:
    """(function, module) of a collapsed-stack frame, the module shortened to its package path
    (relative to site-packages, this checkout or the standard library)."""
    match = FRAME.match(frame)
    if match is None:  # py-spy's root frame of a process: a sample without a Python frame
        return frame, "(native code, no Python frame)" if frame.startswith("process ") else frame
    path = match["path"]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = path.split("/", 1)[-1]
            break
    return match["function"], path


def part_of(module: str) -> str:
    for part, prefix in PARTS:
        if module.startswith(prefix):
            return part
    return "other (dataclass __init__, codecs, abc, logging, ...)"


def summarize(lines: list[str]) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    total = 0
    parts: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        function, module = location_of(stack.rpartition(";")[2])
        modules[module] += samples
        parts[part_of(module)] += samples
        functions[f"{function} ({module})"] += samples
    return total, parts, modules, functions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    total, parts, modules, functions = summarize(args.file.read_text().splitlines())
    if not total:
        print(f"{args.file}: no samples", file=sys.stderr)
        return 1
    print(f"{total} samples\n\n| part | share |\n|---|---|")
    for part, samples in parts.most_common():
        print(f"| {part} | {100 * samples / total:.0f}% |")
    print("\n| module | share |\n|---|---|")
    for module, samples in modules.most_common(args.top):
        print(f"| `{module}` | {100 * samples / total:.1f}% |")
    print("\n| function | share |\n|---|---|")
    for function, samples in functions.most_common(args.top):
        print(f"| `{function}` | {100 * samples / total:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
