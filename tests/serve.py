"""Start `python -m gateway serve --config FILE` as a real process (its own process group)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def spawn_serve(
    config: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """The gateway process, JSON logs on stdout (stderr merged), killable as a group."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
