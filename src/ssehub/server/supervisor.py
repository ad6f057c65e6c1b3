"""``ssehub serve --workers N``: N hub processes on one port, started and stopped together.

The supervisor binds the port once (so a port of 0 resolves to one port for all), starts each
worker as ``python -m ssehub serve --worker-config-fd FD`` and writes the worker's whole
configuration to that inherited pipe: the `ServeConfig` the command line was parsed into, as
JSON (tokens included: they never appear on a command line or in the workers' environment).
A worker rebuilds the same `ServeConfig` (`read_worker_config`) and serves it with SO_REUSEPORT;
the kernel spreads connections over the workers, and Redis shares events between them.

Each worker writes one byte to a shared readiness pipe once it serves; the supervisor then logs
``event=start``. SIGTERM or SIGINT is forwarded to every worker once; if one worker exits, the
others are stopped and the status is 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from types import FrameType

from ssehub.server.config import CLIError, ServeConfig
from ssehub.server.runners import auth_summary, bind, make_backend, url

__all__ = ["WORKER_CONFIG_FLAG", "read_worker_config", "serve_workers", "worker_message"]

log = logging.getLogger("ssehub.server")

WORKER_CONFIG_FLAG = "--worker-config-fd"
"""The hidden ``ssehub serve`` flag that makes a process a worker reading its config from FD."""


def worker_message(config: ServeConfig, ready_fd: int) -> bytes:
    """What the supervisor writes to a worker's config pipe: ``config``, and the readiness
    pipe's fd (inherited at the same number) on which the worker says it serves."""
    return json.dumps({"config": config.to_dict(), "ready_fd": ready_fd}).encode()


def read_worker_config(fd: int) -> tuple[ServeConfig, int]:
    """Read a `worker_message` from ``fd`` to its end (closing it): the config and ready fd.

    Raises CLIError when ``fd`` holds no such message (the flag is for the supervisor only).
    """
    try:
        with open(fd, "rb") as pipe:
            message = json.loads(pipe.read())
        return ServeConfig.from_dict(message["config"]), int(message["ready_fd"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CLIError(
            f"{WORKER_CONFIG_FLAG} {fd}: no worker configuration there ({exc!r}); the flag is "
            "for the --workers supervisor only"
        ) from None


def _start_worker(message: bytes, ready_fd: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    config_read, config_write = os.pipe()
    try:
        # Own sessions: a terminal's Ctrl-C reaches the supervisor only, which then stops each
        # worker exactly once.
        proc = subprocess.Popen(
            [sys.executable, "-m", "ssehub", "serve", WORKER_CONFIG_FLAG, str(config_read)],
            env=env,
            start_new_session=True,
            pass_fds=(config_read, ready_fd),
        )
    except BaseException:
        os.close(config_write)
        raise
    finally:
        os.close(config_read)
    # A worker that died at once breaks the pipe: the supervisor sees it exit and stops the rest.
    with open(config_write, "wb") as pipe, contextlib.suppress(BrokenPipeError):
        pipe.write(message)
    return proc


def serve_workers(config: ServeConfig) -> int:
    """Run ``config.workers`` hub processes on one port; forward SIGTERM/SIGINT to them."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise CLIError("--workers > 1 needs SO_REUSEPORT, which this platform lacks")
    make_backend(config.redis)  # fail here, once, if the backend is missing
    # Hold the port (bound, not listening) so a port of 0 resolves once for every worker.
    reserved = bind(config.host, config.port, reuse_port=True, listen=False)
    port = reserved.getsockname()[1]
    # Every option (the tokens too) is in the config the workers read from their pipe, not in
    # their environment: the workers' SSEHUB_* variables are removed.
    options = set(ServeConfig.env_vars())
    env = {name: value for name, value in os.environ.items() if name not in options}
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    procs: list[subprocess.Popen[bytes]] = []
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    ready_read, ready_write = os.pipe()
    try:
        message = worker_message(config.with_port(port), ready_write)
        for _ in range(config.workers):
            procs.append(_start_worker(message, ready_write, env))
        os.close(ready_write)
        ready = 0
        while ready < config.workers and not stopping:
            # Each worker writes one byte once it serves.
            if any(proc.poll() is not None for proc in procs):
                break
            if select.select([ready_read], [], [], 0.1)[0]:
                ready += len(os.read(ready_read, config.workers))
        if ready == config.workers:
            log.info(
                "event=start url=%s pid=%d workers=%d backend=redis auth=%s",
                url(config.host, port),
                os.getpid(),
                config.workers,
                auth_summary(config),
            )
        while any(proc.poll() is None for proc in procs):
            if not stopping and any(proc.poll() is not None for proc in procs):
                failed = [proc for proc in procs if proc.poll() is not None]
                log.error(
                    "event=worker_exited pid=%d status=%s; stopping the others",
                    failed[0].pid,
                    failed[0].returncode,
                )
                status = 1
                forward(signal.SIGTERM, None)
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reserved.close()
        os.close(ready_read)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if any(proc.returncode != 0 for proc in procs):
        status = 1
    log.info("event=stop pid=%d workers=%d status=%d", os.getpid(), config.workers, status)
    return status
