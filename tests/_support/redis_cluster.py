"""A real local Redis Cluster (and Redis Sentinel) on loopback ports, for the Cluster tests.

Usage::

    with RedisClusterServers(primaries=3, replicas=1) as cluster:
        connect_to(cluster.url)          # "redis://127.0.0.1:<first node's port>/0"
        cluster.failover()               # a replica takes over its primary's slots

Every node is a `RedisServer` (no data on disk, 127.0.0.1 only), stopped by PID at the end.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from types import TracebackType

from . import free_port
from .redis_server import RedisServer, RedisServerError

__all__ = ["RedisClusterServers", "RedisSentinels", "cluster_port"]

_NODE_TIMEOUT_MS = 1000


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RedisServerError("no free port pair (port, port + 10000) for a cluster node")


def redis_cli(*args: str, timeout: float = 30.0) -> str:
    """Run ``redis-cli`` with ``args``; its output (RedisServerError when it fails)."""
    executable = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    done = subprocess.run(
        [executable, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RedisServerError(f"redis-cli {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def _info(port: int, *command: str) -> dict[str, str]:
    text = redis_cli("-h", "127.0.0.1", "-p", str(port), *command, timeout=5)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            fields[name] = value
    return fields


class RedisClusterServers:
    """``primaries`` Redis Cluster primaries, each with ``replicas`` replicas, on 127.0.0.1."""

    def __init__(self, primaries: int = 3, replicas: int = 0) -> None:
        self.primaries = primaries
        self.replicas = replicas
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """The URL of the first node (any node leads to the whole cluster)."""
        return self.nodes[0].url

    def start(self) -> RedisClusterServers:
        """Start every node, join them in a cluster, and wait until every node says ok."""
        for _ in range(self.primaries * (1 + self.replicas)):
            node = RedisServer(
                cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(_NODE_TIMEOUT_MS),
                    "--cluster-require-full-coverage",
                    "yes",
                    # A replica's first sync starts at once (the default waits 5 s for more).
                    "--repl-diskless-sync-delay",
                    "0",
                ),
            )
            self.nodes.append(node)
            node.start()
        redis_cli(
            "--cluster",
            "create",
            *(f"127.0.0.1:{node.port}" for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas),
            "--cluster-yes",
            timeout=60,
        )
        self.wait_ok()
        self.wait_synced()
        return self

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until every replica's link to its primary is up (a replica that never synced
        cannot take over)."""
        deadline = time.monotonic() + timeout
        while True:
            links = [
                _info(node.port, "INFO", "replication").get("master_link_status")
                for node in self.replica_nodes()
            ]
            if all(link == "up" for link in links):
                return
            if time.monotonic() > deadline:
                raise RedisServerError(f"the replicas did not sync: {links}")
            time.sleep(0.1)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` and knows every node."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.running]
        while True:
            states = [_info(node.port, "CLUSTER", "INFO") for node in running]
            if all(
                state.get("cluster_state") == "ok"
                and state.get("cluster_slots_assigned") == "16384"
                and int(state.get("cluster_known_nodes", "0")) >= len(self.nodes)
                for state in states
            ):
                return
            if time.monotonic() > deadline:
                raise RedisServerError(f"the cluster did not settle: {states}")
            time.sleep(0.1)

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave``, as the node says."""
        return (
            _info(node.port, "ROLE").get("role", "")
            or redis_cli("-h", "127.0.0.1", "-p", str(node.port), "ROLE", timeout=5).split("\n", 1)[
                0
            ]
        )

    def primary_nodes(self) -> list[RedisServer]:
        """The running nodes that are primaries now."""
        return [node for node in self.nodes if node.running and self.role(node) == "master"]

    def replica_nodes(self) -> list[RedisServer]:
        """The running nodes that are replicas now."""
        return [node for node in self.nodes if node.running and self.role(node) == "slave"]

    def failover(self, replica: RedisServer, timeout: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica``: it takes over its primary's slots (no write
        is lost: the primary stops taking writes until the replica has them all)."""
        redis_cli("-h", "127.0.0.1", "-p", str(replica.port), "CLUSTER", "FAILOVER")
        deadline = time.monotonic() + timeout
        while self.role(replica) != "master":
            if time.monotonic() > deadline:
                raise RedisServerError(f"{replica} did not become a primary")
            time.sleep(0.05)
        self.wait_ok(timeout)

    def close(self) -> None:
        """Stop every node (by its PID) and remove their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisSentinels:
    """A primary, one replica, and ``count`` Sentinels watching them as ``service``."""

    def __init__(self, count: int = 1, service: str = "hub") -> None:
        self.service = service
        self.primary = RedisServer()
        self.replica = RedisServer()
        self.sentinels = [RedisServer() for _ in range(count)]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every Sentinel, and the service name."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> RedisSentinels:
        """Start the primary, its replica, and the Sentinels; wait until they see both."""
        self.primary.start()
        self.replica._extra_args = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        config = (
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 1000\n"
            f"sentinel failover-timeout {self.service} 5000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        for sentinel in self.sentinels:
            sentinel._config = config
            sentinel._extra_args = ("--sentinel",)
            sentinel.start()
        # A failover needs a replica the Sentinel has seen in sync (its INFO, its link up).
        deadline = time.monotonic() + 30
        while True:
            replicas = redis_cli(
                "-p", str(self.sentinels[0].port), "SENTINEL", "REPLICAS", self.service, timeout=5
            ).split("\n")
            pairs = dict(zip(replicas[::2], replicas[1::2], strict=False))
            if pairs.get("master-link-status") == "ok" and pairs.get("runid"):
                break
            if time.monotonic() > deadline:
                raise RedisServerError(f"the Sentinel did not see the replica in sync: {pairs}")
            time.sleep(0.1)
        return self

    def primary_port(self) -> int:
        """The port of the primary the Sentinels name now."""
        text = redis_cli(
            "-p",
            str(self.sentinels[0].port),
            "SENTINEL",
            "get-master-addr-by-name",
            self.service,
            timeout=5,
        )
        return int(text.split()[1])

    def failover(self, timeout: float = 30.0) -> None:
        """``SENTINEL FAILOVER``: the replica becomes the primary; wait until it is."""
        old = self.primary_port()
        answer = redis_cli("-p", str(self.sentinels[0].port), "SENTINEL", "FAILOVER", self.service)
        if not answer.startswith("OK"):
            raise RedisServerError(f"SENTINEL FAILOVER: {answer}")
        deadline = time.monotonic() + timeout
        while True:
            port = self.primary_port()
            if port != old:
                role = redis_cli("-p", str(port), "ROLE", timeout=5).split("\n", 1)[0]
                if role == "master":
                    return
            if time.monotonic() > deadline:
                raise RedisServerError("the Sentinel failover did not complete")
            time.sleep(0.1)

    def close(self) -> None:
        """Stop every process by its PID."""
        for server in (*self.sentinels, self.replica, self.primary):
            server.close()

    def __enter__(self) -> RedisSentinels:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
