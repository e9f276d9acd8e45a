"""Time one worker needs to refresh its charge points' claims in Redis.

Run: `python -m bench.claim_refresh [--claims 15000] [--redis-url URL]`. Starts a throwaway
`redis-server` on loopback unless a URL is given, claims `--claims` identities for one node, then
refreshes them one script at a time (the baseline, how the gateway did it) and pipelined in
batches (`RedisDirectory.refresh_many`, what `Gateway.refresh_claims` does), in the same run, and
prints one JSON object. The refresh must fit in a third of the claim TTL (5 s by default), on a
remote Redis too: each round trip there costs what hundreds of scripts cost on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from typing import Any

from gateway.cluster.client import connect
from gateway.cluster.directory import BATCH, RedisDirectory

NODE = "bench-node"


async def measure(url: str, claims: int) -> dict[str, Any]:
    """Seconds to refresh `claims` claims one by one, and pipelined; both must all hold."""
    client = connect(url)
    directory = RedisDirectory(client, prefix=f"bench-{time.time_ns()}:", ttl=60)
    try:
        held: list[tuple[str, int]] = []
        for start in range(0, claims, BATCH):
            names = [f"CP{n}" for n in range(start, min(claims, start + BATCH))]
            made = await asyncio.gather(*(directory.claim(name, NODE) for name in names))
            held += [(name, claim.epoch) for name, claim in zip(names, made, strict=True)]
        started = time.perf_counter()
        one_by_one = [await directory.refresh(name, NODE, epoch) for name, epoch in held]
        sequential = time.perf_counter() - started
        started = time.perf_counter()
        pipelined = await directory.refresh_many(NODE, held)
        batched = time.perf_counter() - started
        if not (all(one_by_one) and all(pipelined)):
            raise RuntimeError("a claim did not hold during the benchmark")
        return {
            "claims": claims,
            "batch": BATCH,
            "one_by_one_seconds": round(sequential, 3),
            "pipelined_seconds": round(batched, 3),
            "speedup": round(sequential / batched, 1),
            "python": platform.python_version(),
        }
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.claim_refresh", description=__doc__)
    parser.add_argument("--claims", type=int, default=15_000)
    parser.add_argument("--redis-url", default="", help="default: a throwaway redis-server")
    args = parser.parse_args()
    if args.redis_url:
        print(json.dumps(asyncio.run(measure(args.redis_url, args.claims))))
        return
    from tests.redis_server import start_redis

    server = start_redis()
    try:
        print(json.dumps(asyncio.run(measure(server.url, args.claims))))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
