"""A real ``redis-server`` on a free loopback port, for tests that need Redis.

Usage::

    with RedisServer() as redis:
        connect_to(redis.url)      # "redis://127.0.0.1:<port>/0"
        redis.kill()               # crash: SIGKILL, no chance to clean up
        redis.start()              # restart on the same port (empty: nothing is persisted)

The server keeps no data on disk (``--save "" --appendonly no``), listens on 127.0.0.1 only and
runs in its own temporary directory, which is removed by :meth:`RedisServer.close`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from . import free_port

__all__ = ["RedisServer", "RedisServerError", "redis_server_executable"]

_PING = b"*1\r\n$4\r\nPING\r\n"
_PONG = b"+PONG\r\n"
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"

# Servers still running when the interpreter exits (a test that forgot to stop its server, or an
# interrupted run) are killed so that no redis-server outlives the test session.
_live: set[subprocess.Popen[bytes]] = set()


def _kill_leftovers() -> None:
    for process in list(_live):
        if process.poll() is None:
            process.kill()
            process.wait()
    _live.clear()


atexit.register(_kill_leftovers)


def _request(port: int, command: bytes, timeout: float) -> bytes:
    """Send one RESP command to 127.0.0.1:port and return its whole reply (simple or bulk)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(command)
        reply = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return reply
            reply += chunk
            head, sep, body = reply.partition(b"\r\n")
            if not sep:
                continue
            if not head.startswith(b"$"):
                return reply  # a one-line reply: +OK, -ERR, :1
            length = int(head[1:])
            if length < 0 or len(body) >= length + 2:
                return reply


class RedisServerError(RuntimeError):
    """The redis-server could not be found, did not start, or did not answer in time."""


def redis_server_executable() -> str:
    """Return the path of the ``redis-server`` binary, or raise :class:`RedisServerError`."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if found is None:
        raise RedisServerError(
            "redis-server is not installed; run `scripts/bootstrap test` "
            "(it installs the Debian package redis-server)"
        )
    return found


class RedisServer:
    """One real ``redis-server`` process on ``127.0.0.1``.

    Not thread-safe: drive one instance from one thread. The server is started by
    :meth:`start` (or by entering the context manager) and keeps its port across restarts,
    so :meth:`kill` followed by :meth:`start` simulates a crash and a restart of the same server.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        config: str | None = None,
    ) -> None:
        """Prepare a server on ``port`` (a free port is picked when it is None); do not start it.

        ``extra_args`` are added to its command line (``--cluster-enabled yes``, ...);
        ``config`` is the text of a config file written to its directory and given first
        (a Sentinel's, which must be able to rewrite it).
        """
        self._extra_args = tuple(extra_args)
        self._config = config
        self._fixed_port = port is not None
        self._port = port if port is not None else free_port()
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    # ------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        """The TCP port the server listens on (stable across :meth:`kill` / :meth:`start`)."""
        return self._port

    @property
    def url(self) -> str:
        """The redis URL of database 0, e.g. ``redis://127.0.0.1:6390/0``."""
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        """The PID of the running server, or None when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    @property
    def directory(self) -> Path | None:
        """The server's own temporary directory (None before the first start)."""
        return self._dir

    @property
    def log_path(self) -> Path | None:
        """The file the server writes its log to (None before the first start)."""
        return None if self._dir is None else self._dir / "redis.log"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; return ``self``.

        Raises RedisServerError if it is already running, exits, or does not answer within
        ``startup_timeout`` seconds. When the port was picked automatically and was taken in the
        meantime by another process, a new free port is tried (at most three times in all) on
        the first start only.
        """
        if self.running:
            raise RedisServerError(f"redis-server on port {self._port} is already running")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="ssehub-redis-"))
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._start_once()
                break
            except RedisServerError:
                if attempt + 1 == attempts or not self._port_in_use_error():
                    raise
                self._port = free_port()
        # After the first successful start the port is kept for restarts.
        self._fixed_port = True
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after ``timeout`` s) and wait for it.

        Does nothing if it is not running.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._forget(process)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as in a crash, and wait for it to be gone."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._forget(process)

    def close(self) -> None:
        """Stop the server and remove its temporary directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def ping(self, timeout: float = 1.0) -> bool:
        """Return whether a server answers PING on this port within ``timeout`` seconds."""
        try:
            return _request(self._port, _PING, timeout).startswith(_PONG)
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"

    # ------------------------------------------------------------------ internals
    def _start_once(self) -> None:
        assert self._dir is not None
        command = [redis_server_executable()]
        if self._config is not None:
            config_path = self._dir / "redis.conf"
            if not config_path.exists():
                config_path.write_text(self._config)
            command.append(str(config_path))
        command += [
            "--port",
            str(self._port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            "",
            *self._extra_args,
        ]
        log_path = self._dir / "redis.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._process = process
        _live.add(process)
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._forget(process)
                raise RedisServerError(
                    f"redis-server on port {self._port} exited with status {process.returncode}:"
                    f"\n{self._log_tail()}"
                )
            if self._answers_as(process.pid):
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"redis-server on port {self._port} did not answer PING within "
            f"{self._startup_timeout:g}s:\n{self._log_tail()}"
        )

    def _answers_as(self, pid: int) -> bool:
        # PING alone could be answered by another server already holding the port, so ask the
        # server for its process id and compare it with the one just started.
        try:
            info = _request(self._port, _INFO_SERVER, timeout=0.5)
        except OSError:
            return False
        return f"process_id:{pid}\r\n".encode() in info

    def _forget(self, process: subprocess.Popen[bytes]) -> None:
        _live.discard(process)
        if self._process is process:
            self._process = None

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _port_in_use_error(self) -> bool:
        return "Address already in use" in self._log_tail(50)
