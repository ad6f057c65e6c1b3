"""What Redis holds per channel and per retained event, and how long a broadcast takes.

Run with ``python -m bench.redis_keys`` (``--smoke`` for small sizes). It starts a real
``redis-server`` (and, with ``--cluster``, a local 3-primary Redis Cluster) on free loopback
ports and measures, through `ssehub.redis.RedisBackend`:

- bytes per channel: ``used_memory`` grown by N one-event channels, over N (a stream, its index
  hash and their key entries, with one event);
- bytes per retained event: ``used_memory`` grown by E more events on one channel, over E;
- the time of `Hub.broadcast` over C channels that hold history (pipelined: a few round trips).

The event is ``--data-bytes`` of data, published without an id (the hub assigns it). Prints a
Markdown table and one JSON line (``--json PATH`` writes it to a file too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import redis.asyncio as aioredis

from ssehub import Hub, Message
from ssehub.redis import RedisBackend
from tests._support.redis_cluster import RedisClusterServers
from tests._support.redis_server import RedisServer


async def _used_memory(urls: list[str]) -> int:
    total = 0
    for url in urls:
        client = aioredis.Redis.from_url(url)
        try:
            info: Any = await client.info("memory")
            total += int(info["used_memory"])
        finally:
            await client.aclose()
    return total


async def measure(
    url: str, node_urls: list[str], channels: int, events: int, broadcast: int, data: str
) -> dict[str, Any]:
    """The three figures on the Redis (or Cluster) at ``url``."""
    hub = Hub(history=events + 1, backend=RedisBackend(url, prefix="size"))
    caster = Hub(backend=RedisBackend(url, prefix="broadcast"))
    await hub.start()
    await caster.start()
    try:
        message = Message(data)
        before = await _used_memory(node_urls)
        names = [f"/size/{i}" for i in range(channels)]
        for start in range(0, channels, 1000):
            await hub.backend.publish_each(names[start : start + 1000], message)
        per_channel = (await _used_memory(node_urls) - before) / channels
        before = await _used_memory(node_urls)
        for _ in range(events):
            await hub.publish("/size/many", message)
        per_event = (await _used_memory(node_urls) - before) / events
        targets = [f"/broadcast/{i}" for i in range(broadcast)]
        for start in range(0, broadcast, 1000):
            await caster.backend.publish_each(targets[start : start + 1000], message)
        started = time.perf_counter()
        ids = await caster.broadcast(message)
        took = time.perf_counter() - started
        return {
            "bytes_per_channel": round(per_channel),
            "bytes_per_event": round(per_event),
            "broadcast_channels": len(ids),
            "broadcast_seconds": round(took, 3),
        }
    finally:
        await hub.shutdown(timeout=1)
        await caster.shutdown(timeout=1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = "x" * args.data_bytes
    sizes = (args.channels, args.events, args.broadcast, data)
    results: dict[str, Any] = {
        "cores": os.cpu_count(),
        "data_bytes": args.data_bytes,
        "channels": args.channels,
        "events": args.events,
    }
    with contextlib.ExitStack() as stack:
        single = stack.enter_context(RedisServer())
        results["redis"] = await measure(single.url, [single.url], *sizes)
        if args.cluster:
            cluster = stack.enter_context(RedisClusterServers(primaries=3))
            urls = [node.url for node in cluster.nodes]
            results["cluster"] = await measure(cluster.url, urls, *sizes)
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and the JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.redis_keys", description=__doc__)
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--broadcast", type=int, default=10_000)
    parser.add_argument("--data-bytes", type=int, default=100)
    parser.add_argument("--cluster", action="store_true", help="also on a 3-primary Cluster")
    parser.add_argument("--smoke", action="store_true", help="small sizes")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if args.smoke:
        args.channels = args.events = args.broadcast = 500
    results = asyncio.run(run(args))
    print("| Redis | bytes per channel | bytes per retained event | broadcast, channels | s |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("redis", "cluster"):
        if kind in results:
            r = results[kind]
            print(
                f"| {kind} | {r['bytes_per_channel']:,} | {r['bytes_per_event']:,} "
                f"| {r['broadcast_channels']:,} | {r['broadcast_seconds']:.3f} |"
            )
    line = json.dumps(results)
    print(line)
    if args.json:
        with open(args.json, "w") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
