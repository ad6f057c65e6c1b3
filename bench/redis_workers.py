"""Scale-out on Redis: delivered events/s with 1, 2 and 4 workers against one in-memory process.

Run with ``python -m bench.redis_workers`` (``--smoke`` for a few seconds of tiny sizes). It
starts a real ``redis-server`` on a free loopback port (the test suite's `RedisServer`), then for
each configuration the standalone hub (``python -m ssehub serve``, with ``--redis URL
--workers N`` for the Redis ones) and measures the W1 fan-out workload of ``bench.run``: one
channel, S subscribers (spread over the workers by the kernel), events published back to back
over P keep-alive connections (which land on any worker). The figure is events received by all
subscribers / (last receipt - first publish); every run also checks that every subscriber got
every event exactly once.

With ``--cluster``, the same Redis configurations run again on a local Redis Cluster of three
primaries (``--redis`` names one node; the hub finds the others), next to the single-Redis rows.

On a machine with fewer cores than workers + load generator + Redis, the workers compete for
the same cores: read the figures with the core count printed above the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

import psutil

from bench import config as C
from bench.run import BenchError, Server, measure_fanout
from tests._support.redis_cluster import RedisClusterServers
from tests._support.redis_server import RedisServer


def hub_spec(redis_url: str | None, workers: int, *, cluster: bool = False) -> C.ServerSpec:
    """The standalone hub, in memory (``redis_url`` None) or on Redis (a Redis Cluster node
    when ``cluster``) with ``workers``."""
    argv: tuple[str, ...] = ("{python}", "-m", "ssehub", "serve", "--host", "{host}")
    argv += ("--port", "{port}")
    if redis_url is None:
        return C.ServerSpec("memory-1", "in-memory, 1 process", argv)
    argv += ("--redis", redis_url, "--workers", str(workers))
    if cluster:
        return C.ServerSpec(
            f"cluster-{workers}", f"Redis Cluster (3 primaries), {workers} worker(s)", argv
        )
    return C.ServerSpec(f"redis-{workers}", f"Redis, {workers} worker(s)", argv)


def wait_for_workers(server: Server, workers: int, timeout: float = 30.0) -> None:
    """Wait until ``workers`` processes listen on the server's port (all take connections)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = 0
        for proc in server.processes():
            try:
                conns = proc.net_connections("tcp")
            except psutil.Error:
                continue
            listening += any(
                c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == server.port
                for c in conns
            )
        if listening >= workers:
            return
        time.sleep(0.05)
    raise BenchError(f"{workers} workers were not all listening after {timeout:g}s")


def measure(
    redis_url: str | None,
    workers: int,
    subscribers: int,
    publishers: int,
    runs: int,
    *,
    cluster: bool = False,
) -> list[dict[str, Any]]:
    """``runs`` W1 measurements of one configuration, on a freshly started hub."""
    server = Server(hub_spec(redis_url, workers, cluster=cluster))
    server.start()
    try:
        wait_for_workers(server, workers)
        server.warm_up()
        return [measure_fanout(server, subscribers, publishers) for _ in range(runs)]
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Measure every configuration and print one table row each."""
    parser = argparse.ArgumentParser(prog="python -m bench.redis_workers", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument(
        "--cluster", action="store_true", help="also run on a local 3-primary Redis Cluster"
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="write the raw runs there")
    args = parser.parse_args(argv)
    if args.smoke:
        args.subscribers, args.runs = 20, 1
    counts = [int(n) for n in args.workers.split(",")]
    print(
        f"# {os.cpu_count()} cores, {args.subscribers} subscribers on one channel, "
        f"{args.publishers} publisher connections, {args.runs} run(s) each; "
        f"{C.w1_events(args.subscribers)} events per run",
        file=sys.stderr,
    )
    rows = []
    raw: dict[str, Any] = {"cores": os.cpu_count(), "argv": sys.argv[1:], "runs": {}}
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(RedisServer())
        configs: list[tuple[str | None, int, bool]] = [(None, 1, False)]
        configs += [(redis.url, n, False) for n in counts]
        if args.cluster:
            servers = stack.enter_context(RedisClusterServers(primaries=3))
            configs += [(servers.url, n, True) for n in counts]
        for url, workers, cluster in configs:
            label = hub_spec(url, workers, cluster=cluster).name
            print(f"# measuring {label} ...", file=sys.stderr)
            results = measure(
                url, workers, args.subscribers, args.publishers, args.runs, cluster=cluster
            )
            raw["runs"][label] = results
            rates = [r["rate"] for r in results]
            complete = all(r["complete"] and r["verified"] is not False for r in results)
            rows.append((label, statistics.median(rates), min(rates), max(rates), complete))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1, default=str)
            out.write("\n")
    base = rows[0][1]
    print("| configuration | delivered events/s (median) | min | max | vs in-memory | complete |")
    print("|---|---:|---:|---:|---:|---|")
    for label, median, low, high, complete in rows:
        print(
            f"| {label} | {median:,.0f} | {low:,.0f} | {high:,.0f} | {median / base:.2f}x "
            f"| {'yes' if complete else 'NO'} |"
        )
    return 0 if all(row[4] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
