"""A real ``python -m ssehub serve`` subprocess on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

_START = re.compile(r"event=start url=(http://\S+)")
_counter = itertools.count()


class HubProcess:
    """A running ``ssehub serve``: its base URL, its process and its log."""

    def __init__(self, args: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_dir / f"ssehub-{next(_counter)}.log"
        self._log_file = self.log_path.open("wb")
        full_env = dict(os.environ)
        full_env.pop("SSEHUB_PUBLISH_TOKEN", None)
        full_env.pop("SSEHUB_SUBSCRIBE_TOKEN", None)
        full_env.pop("SSEHUB_ADMIN_TOKEN", None)
        for name in ("JWT_SECRET", "JWT_PUBLIC_KEY", "REQUIRE_SUBSCRIBER_TOKEN", "MERCURE"):
            full_env.pop(f"SSEHUB_{name}", None)
        full_env.update(env or {})
        self.args = [sys.executable, "-m", "ssehub", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(
            self.args, stdout=self._log_file, stderr=subprocess.STDOUT, env=full_env
        )
        try:
            self.url = self._wait_started()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            self._log_file.close()
            raise

    def _wait_started(self, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _START.search(self.log())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                status = self.proc.returncode
                raise RuntimeError(f"ssehub serve exited with {status}:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"ssehub serve did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """Everything the process has logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop the process with ``sig``; return its exit status (kill it after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


HubFactory = Callable[..., HubProcess]
"""The ``start_hub`` fixture: ``start_hub(*serve_args, env=...)`` returns a `HubProcess`."""


async def wait_clients(client: httpx.AsyncClient, channel: str, count: int) -> None:
    """Wait until the hub's ``/channels`` lists ``channel`` with ``count`` clients (bounded)."""
    for _ in range(200):
        listed = (await client.get("/channels")).json()["channels"]
        if any(c["channel"] == channel and c["clients"] == count for c in listed):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{channel} never had {count} clients")


async def client_on_each_worker(
    url: str, workers: int, timeout: float = 10.0
) -> dict[int, httpx.AsyncClient]:
    """One keep-alive client per ``--workers`` process, by pid (the kernel picks a worker per
    connection). httpx closes a connection idle for 5 s by default, and the reconnect could
    land on another worker: these clients never let theirs expire."""
    found: dict[int, httpx.AsyncClient] = {}
    for _ in range(200):
        client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(timeout, read=None),
            limits=httpx.Limits(keepalive_expiry=None),
        )
        pid = (await client.get("/healthz")).json()["pid"]
        if pid in found:
            await client.aclose()
        else:
            found[pid] = client
        if len(found) == workers:
            return found
    raise AssertionError(f"only reached workers {sorted(found)}")
