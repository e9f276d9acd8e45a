"""Install the `ocpp-rpc` peer's Node packages: `python -m bench.peers.setup [--timeout S]`.

Runs `npm ci` in bench/peers/ocpp_rpc (`npm install` when there is no package-lock.json), bounded
by a timeout, and only when needed: a stamp in node_modules records the hash of package.json and
package-lock.json of the last install, so a second run with nothing changed does nothing. Exits
0 when the peer is ready, 1 with the reason and the fix otherwise (node or npm missing, Node
too old, npm failed or timed out). node_modules is not committed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import NODE_PEER_DIR

MIN_NODE_MAJOR = 18  # ocpp-rpc 2.2 asks for >= 17.3 (AbortSignal, util.parseArgs needs 18.3)
DEFAULT_TIMEOUT = 300.0
STAMP = ".bench-peers-installed"  # inside node_modules: goes away with it


class SetupError(RuntimeError):
    """The Node peer cannot be installed here; the message says why and what to do."""


@dataclass(frozen=True)
class SetupResult:
    """What `ensure_node_peer` did: `installed` False means node_modules was already current."""

    installed: bool
    command: tuple[str, ...]
    ocpp_rpc_version: str


def _manifest_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = directory / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"(none)")
    return digest.hexdigest()


def installed_version(directory: Path = NODE_PEER_DIR) -> str | None:
    """The ocpp-rpc version in node_modules, or None when it is not installed."""
    manifest = directory / "node_modules" / "ocpp-rpc" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def is_up_to_date(directory: Path = NODE_PEER_DIR) -> bool:
    """True when node_modules was installed from the current package.json and lock."""
    stamp = directory / "node_modules" / STAMP
    try:
        current = stamp.read_text().strip() == _manifest_hash(directory)
    except OSError:
        return False
    return current and installed_version(directory) is not None


def node_major() -> int:
    """The major version of `node` on PATH; SetupError when it is missing or unreadable."""
    node = shutil.which("node")
    if node is None:
        raise SetupError(
            f"node is not on PATH: the ocpp-rpc peer needs Node.js >= {MIN_NODE_MAJOR} and npm "
            "(e.g. apt-get install nodejs npm), then run `python -m bench.peers.setup` again"
        )
    try:
        printed = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        return int(printed.lstrip("v").split(".", 1)[0])
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SetupError(f"`node --version` failed ({exc}): check the Node.js install") from exc


def ensure_node_peer(
    directory: Path = NODE_PEER_DIR, timeout: float = DEFAULT_TIMEOUT
) -> SetupResult:
    """Install the peer's packages unless node_modules is current; SetupError on any failure."""
    major = node_major()
    if major < MIN_NODE_MAJOR:
        raise SetupError(
            f"Node.js {major} is too old for the ocpp-rpc peer: need >= {MIN_NODE_MAJOR}"
        )
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError("npm is not on PATH: install it beside Node.js (e.g. apt-get install npm)")
    verb = "ci" if (directory / "package-lock.json").exists() else "install"
    command = (npm, verb, "--no-audit", "--no-fund", "--loglevel=error")
    if is_up_to_date(directory):
        return SetupResult(False, command, str(installed_version(directory)))
    try:
        completed = subprocess.run(
            command, cwd=directory, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SetupError(
            f"`npm {verb}` in {directory} did not finish within {timeout:g} s: check that the npm "
            "registry is reachable, or pass a longer --timeout"
        ) from exc
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip().splitlines()[-15:]
        raise SetupError(
            f"`npm {verb}` in {directory} failed (exit {completed.returncode}):\n"
            + "\n".join(output)
        )
    version = installed_version(directory)
    if version is None:
        raise SetupError(f"`npm {verb}` succeeded but node_modules/ocpp-rpc is missing")
    (directory / "node_modules" / STAMP).write_text(_manifest_hash(directory) + "\n")
    return SetupResult(True, command, version)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.setup", description=__doc__)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for npm")
    args = parser.parse_args(argv)
    try:
        result = ensure_node_peer(timeout=args.timeout)
    except SetupError as exc:
        print(f"bench.peers.setup: {exc}", file=sys.stderr)
        return 1
    state = f"installed with `npm {result.command[1]}`" if result.installed else "already current"
    print(f"bench.peers.setup: ocpp-rpc {result.ocpp_rpc_version} in {NODE_PEER_DIR}: {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
