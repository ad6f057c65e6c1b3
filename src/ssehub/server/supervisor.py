"""``ssehub serve --workers N``: N hub processes on one port, started and stopped together.

The supervisor binds the port once (so a port of 0 resolves to one port for all), starts each
worker as ``python -m ssehub serve --worker-config-fd FD`` and writes the worker's whole
configuration to that inherited pipe: the `ServeConfig` the command line was parsed into, as
JSON (tokens included: they never appear on a command line or in the workers' environment).
A worker rebuilds the same `ServeConfig` (`read_worker_config`) and serves it with SO_REUSEPORT;
the kernel spreads connections over the workers.

What shares events between the workers: Redis with ``--redis``; otherwise the local bus
(`ssehub.backends.localbus`): the supervisor runs its `Sequencer` on an event loop in a thread
of its own and gives each worker one end of a Unix socket pair (``--bus-fd``), so every
publish is ordered and stored once, here, and reaches every worker.

Each worker writes one byte to a shared readiness pipe once it serves; the supervisor then logs
``event=start``. SIGTERM or SIGINT is forwarded to every worker once. A worker that exits once
all have started is restarted in its place (``event=worker_restarted``; its clients reconnect
to the others and resume there); one that exits before all have started, or a worker slot that
dies `MAX_RESTARTS` times in a minute, stops the others and the status is 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from types import FrameType

from ssehub.backends.localbus import Sequencer
from ssehub.server.config import CLIError, ServeConfig
from ssehub.server.runners import auth_summary, bind, make_backend, url

__all__ = [
    "BUS_FD_FLAG",
    "MAX_RESTARTS",
    "WORKER_CONFIG_FLAG",
    "LocalBus",
    "read_worker_config",
    "serve_workers",
    "worker_message",
]

log = logging.getLogger("ssehub.server")

WORKER_CONFIG_FLAG = "--worker-config-fd"
"""The hidden ``ssehub serve`` flag that makes a process a worker reading its config from FD."""

BUS_FD_FLAG = "--bus-fd"
"""The hidden ``ssehub serve`` flag giving a worker its end of the local bus (a Unix socket)."""

MAX_RESTARTS = 5
"""Restarts of one worker slot within a minute past which the supervisor gives up."""


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


class LocalBus:
    """The local bus's `Sequencer`, on an event loop in a daemon thread of the supervisor.

    `connect` makes a socket pair, serves one end and returns the other (for a worker). If the
    sequencer's loop fails, `failed` says why (the supervisor then stops the workers).
    """

    def __init__(self, config: ServeConfig) -> None:
        self.sequencer = Sequencer(
            history=config.history,
            history_ttl=config.history_ttl,
            history_bytes=config.history_bytes or None,
            history_memory=config.history_memory or None,
            max_event=config.max_buffer,
        )
        self.failed: str | None = None
        self._loop = _new_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ssehub-bus", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self.failed is not None:
            raise CLIError(f"the local bus did not start: {self.failed}")

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.sequencer.start())
            self._started.set()
            loop.run_forever()
            loop.run_until_complete(self.sequencer.close())
        except BaseException as exc:  # never silent: the supervisor reads it and stops
            self.failed = f"{type(exc).__name__}: {exc}"
            log.exception("event=bus_failed")
        finally:
            self._started.set()
            loop.close()

    def connect(self) -> socket.socket:
        """A new worker's end of the bus (the sequencer serves the other end)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            asyncio.run_coroutine_threadsafe(self.sequencer.attach(ours), self._loop).result(10)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        return theirs

    @property
    def alive(self) -> bool:
        """Whether the sequencer's thread still runs."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the sequencer (its links close: workers still running see the bus close)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _start_worker(
    message: bytes, ready_fd: int, env: dict[str, str], bus: socket.socket | None
) -> subprocess.Popen[bytes]:
    config_read, config_write = os.pipe()
    args = [sys.executable, "-m", "ssehub", "serve", WORKER_CONFIG_FLAG, str(config_read)]
    fds = [config_read, ready_fd]
    if bus is not None:
        args += [BUS_FD_FLAG, str(bus.fileno())]
        fds.append(bus.fileno())
    try:
        # Own sessions: a terminal's Ctrl-C reaches the supervisor only, which then stops each
        # worker exactly once.
        proc = subprocess.Popen(args, env=env, start_new_session=True, pass_fds=fds)
    except BaseException:
        os.close(config_write)
        raise
    finally:
        os.close(config_read)
        if bus is not None:
            bus.close()  # the worker holds its end now
    # A worker that died at once breaks the pipe: the supervisor sees it exit and stops the rest.
    with open(config_write, "wb") as pipe, contextlib.suppress(BrokenPipeError):
        pipe.write(message)
    return proc


def serve_workers(config: ServeConfig) -> int:
    """Run ``config.workers`` hub processes on one port (with the local bus unless
    ``config.redis``); restart one that dies; forward SIGTERM/SIGINT to them."""
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
    bus: LocalBus | None = None
    restarts: list[list[float]] = [[] for _ in range(config.workers)]
    try:
        bus = None if config.redis else LocalBus(config)
        message = worker_message(config.with_port(port), ready_write)

        def start() -> subprocess.Popen[bytes]:
            return _start_worker(message, ready_write, env, bus.connect() if bus else None)

        for _ in range(config.workers):
            procs.append(start())
        ready = 0
        while ready < config.workers and not stopping:
            # Each worker writes one byte once it serves.
            if any(proc.poll() is not None for proc in procs):
                break
            if select.select([ready_read], [], [], 0.1)[0]:
                ready += len(os.read(ready_read, config.workers))
        if ready >= config.workers:
            log.info(
                "event=start url=%s pid=%d workers=%d backend=%s auth=%s",
                url(config.host, port),
                os.getpid(),
                config.workers,
                "redis" if config.redis else "localbus",
                auth_summary(config),
            )
        else:
            status = 1
            if not stopping:
                failed = next((proc for proc in procs if proc.poll() is not None), procs[0])
                log.error(
                    "event=worker_exited pid=%d status=%s before every worker started; "
                    "stopping the others",
                    failed.pid,
                    failed.returncode,
                )
                forward(signal.SIGTERM, None)
        while not stopping:
            if bus is not None and not bus.alive:
                log.error("event=bus_failed error=%r; stopping the workers", bus.failed)
                status = 1
                forward(signal.SIGTERM, None)
                break
            for slot, proc in enumerate(procs):
                if proc.poll() is None or stopping:
                    continue
                now = time.monotonic()
                recent = [t for t in restarts[slot] if now - t < 60] + [now]
                restarts[slot] = recent
                if len(recent) > MAX_RESTARTS:
                    log.error(
                        "event=worker_exited pid=%d status=%s, %d times in a minute; stopping "
                        "the others",
                        proc.pid,
                        proc.returncode,
                        len(recent),
                    )
                    status = 1
                    forward(signal.SIGTERM, None)
                    break
                procs[slot] = start()
                log.warning(
                    "event=worker_restarted pid=%d status=%s new_pid=%d",
                    proc.pid,
                    proc.returncode,
                    procs[slot].pid,
                )
            with contextlib.suppress(OSError):
                if select.select([ready_read], [], [], 0.1)[0]:
                    os.read(ready_read, 64)  # restarted workers say they serve
    finally:
        if not stopping:
            forward(signal.SIGTERM, None)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if bus is not None:
            bus.close()
        reserved.close()
        os.close(ready_read)
        os.close(ready_write)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if any(proc.returncode != 0 for proc in procs):
        status = 1
    log.info("event=stop pid=%d workers=%d status=%d", os.getpid(), config.workers, status)
    return status
