"""Ctrl+C and SIGTERM end every stream at once and the server exits, under each real server.

Each test starts a server as its own process (in a session of its own, as a terminal runs a
command), connects a raw-socket client to a stream and, once the stream is open, signals the
server the way a user does: Ctrl+C is SIGINT to the whole process group (what a terminal sends),
``kill`` is SIGTERM to the server's main process. It then measures when the client's stream ends
and when the process exits.

The examples are started with the command on their first line (``# Run: ...``, the one the
README points to), plus a free loopback port; other servers run the same example apps.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._support import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent

STREAM_ENDS_WITHIN = 2.0
"""Seconds from the signal to the end of the client's stream."""
EXITS_WITHIN = 5.0
"""Seconds from the signal to the exit of the server process."""
WATCH_FOR = 15.0
"""Seconds a test watches after the signal before it calls the server hung."""


@dataclass
class Server:
    """How to start one server: its argv, working directory and environment additions."""

    argv: list[str]
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)


def documented(example: str, port: int) -> Server:
    """The command on the example's first line (``# Run: ...``), on ``port`` of 127.0.0.1."""
    first = (EXAMPLES / example).read_text().splitlines()[0]
    assert first.startswith("# Run: "), f"{example} has no '# Run:' line"
    command = first.removeprefix("# Run: ").split("    (")[0].strip()
    if command.startswith("pip install "):  # the install step, then the command that runs it
        command = command.split(" && ", 1)[1]
    cwd = ROOT
    if command.startswith("cd "):
        directory, command = command.removeprefix("cd ").split(" && ", 1)
        cwd = ROOT / directory
    argv = shlex.split(command)
    env: dict[str, str] = {}
    program = argv[0]
    if program == "python":
        argv[0] = sys.executable
        env["PORT"] = str(port)
        if argv[-1] == "runserver":
            argv.append(f"127.0.0.1:{port}")
    else:
        argv[0] = str(BIN / program)
        if program == "uvicorn":
            argv += ["--port", str(port)]
        elif program == "hypercorn":
            argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in argv]
        elif program == "gunicorn":
            argv += ["--bind", f"127.0.0.1:{port}"]
        else:  # pragma: no cover - a new kind of Run line needs a rule here
            raise AssertionError(f"no port rule for {program}")
    return Server(argv, cwd, env)


def other(program: str, *args: str) -> Server:
    """Another server for an example app, run from examples/."""
    return Server([str(BIN / program), *args], EXAMPLES)


@dataclass
class Outcome:
    """What the client and the process did after the signal (seconds since it was sent)."""

    stream_end: float | None
    """When the response was complete (its last chunk, or the close of the connection)."""
    exit: float | None
    returncode: int | None
    clean: bool
    """The response ended as HTTP says a complete one does (the last chunk, or the close of a
    response without length), not by a reset or a cut chunked body."""

    def __str__(self) -> str:
        return (
            f"stream ended after {self.stream_end} s (clean: {self.clean}), process exited "
            f"after {self.exit} s with {self.returncode}"
        )


def _connect(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {port} after {timeout} s") from None
            time.sleep(0.05)


def _open_stream(sock: socket.socket, path: str) -> bytes:
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    sock.settimeout(10)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the stream before it began: {received!r}"
        received += chunk
    head = received.split(b"\r\n", 1)[0]
    assert b" 200 " in head + b" ", f"the stream did not open: {received!r}"
    return received


def _complete(received: bytes) -> bool:
    # A chunked response is complete at its last chunk (the client's stream ends there, even
    # if the server keeps the connection open a while for keep-alive).
    head, _, body = received.partition(b"\r\n\r\n")
    return b"transfer-encoding: chunked" in head.lower() and body.endswith(b"0\r\n\r\n")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_during_stream(
    server: Server, port: int, how: str, log: Path, path: str = "/events/my-channel"
) -> Outcome:
    """Start ``server`` (its output to ``log``), open a stream on ``path``, send the signal
    ``how`` (``"ctrl-c"`` or ``"sigterm"``) and watch the stream and the process for
    `WATCH_FOR` seconds."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            server.argv,
            cwd=server.cwd,
            # PYTHONFAULTHANDLER: a server still running when the watch ends is sent SIGSEGV
            # first (`_dump_and_kill`), so its log says where each of its threads was stuck.
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1", **server.env},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As a terminal starts a command: SIGINT at its default (a test run started in the
            # background of a non-interactive shell would otherwise pass on "ignored").
            preexec_fn=_default_sigint,
        )
    try:
        with _connect(port, process) as sock:
            received = _open_stream(sock, path)
            time.sleep(0.3)  # the stream is idle, as a browser's mostly is
            sent = time.monotonic()
            if how == "ctrl-c":
                os.killpg(process.pid, signal.SIGINT)
            else:
                os.kill(process.pid, signal.SIGTERM)
            stream_end = exited = None
            reset = False
            sock.settimeout(0.02)
            while time.monotonic() - sent < WATCH_FOR and (stream_end is None or exited is None):
                if stream_end is None:
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        chunk = None
                    except OSError:
                        chunk, reset = b"", True
                    if chunk:
                        received += chunk
                    if chunk == b"" or (chunk and _complete(received)):
                        stream_end = time.monotonic() - sent
                else:
                    time.sleep(0.02)
                if exited is None and process.poll() is not None:
                    exited = time.monotonic() - sent
        head, _, body = received.partition(b"\r\n\r\n")
        chunked = b"transfer-encoding: chunked" in head.lower()
        clean = (
            stream_end is not None and not reset and (not chunked or body.endswith(b"0\r\n\r\n"))
        )
        return Outcome(stream_end, exited, process.returncode, clean)
    finally:
        if process.poll() is None:
            _dump_and_kill(process)
        process.wait(10)


def _dump_and_kill(process: subprocess.Popen[bytes]) -> None:
    """End a server that outlived the watch: SIGSEGV to its process group first, which every
    Python process in it answers by writing all its threads' stacks to the log (faulthandler;
    servers set handlers for SIGINT, SIGTERM, SIGQUIT or SIGABRT, never SIGSEGV), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGSEGV)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(3)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


# Each case: (id, how to start it on a port, the signals a user sends, whether the server lets
# the stream end cleanly). Ctrl+C and SIGTERM alike must end the stream within
# STREAM_ENDS_WITHIN and the process within EXITS_WITHIN.
Case = tuple[str, Callable[[int], Server], str]

CASES: list[Case] = [
    # ASGI under uvicorn: the examples as documented.
    ("uvicorn-fastapi", lambda port: documented("fastapi_app.py", port), "ctrl-c"),
    ("uvicorn-fastapi", lambda port: documented("fastapi_app.py", port), "sigterm"),
    ("uvicorn-starlette", lambda port: documented("starlette_app.py", port), "ctrl-c"),
    ("uvicorn-litestar", lambda port: documented("litestar_app.py", port), "ctrl-c"),
    ("uvicorn-litestar", lambda port: documented("litestar_app.py", port), "sigterm"),
    ("uvicorn-django-asgi", lambda port: documented("django_asgi_app.py", port), "ctrl-c"),
    ("uvicorn-django-asgi", lambda port: documented("django_asgi_app.py", port), "sigterm"),
    # hypercorn: Quart's documented server, as its example runs it (the default mode), and
    # FastAPI serving in hypercorn's own process (``--workers 0``).
    ("hypercorn-quart", lambda port: documented("quart_app.py", port), "ctrl-c"),
    (
        "hypercorn-fastapi",
        lambda port: other(
            "hypercorn", "--workers", "0", "--bind", f"127.0.0.1:{port}", "fastapi_app:app"
        ),
        "sigterm",
    ),
    # hypercorn's default mode: the app runs in a worker process that ignores SIGINT and hears
    # of either signal only through a flag its parent sets, which the hub watches.
    (
        "hypercorn-default-fastapi",
        lambda port: other("hypercorn", "--bind", f"127.0.0.1:{port}", "fastapi_app:app"),
        "ctrl-c",
    ),
    (
        "hypercorn-default-fastapi",
        lambda port: other("hypercorn", "--bind", f"127.0.0.1:{port}", "fastapi_app:app"),
        "sigterm",
    ),
    # gunicorn's async workers.
    (
        "gunicorn-uvicorn-worker",
        lambda port: other(
            "gunicorn",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "fastapi_app:app",
        ),
        "sigterm",
    ),
    (
        "gunicorn-asgi-worker",
        lambda port: other(
            "gunicorn", "-k", "asgi", "--bind", f"127.0.0.1:{port}", "fastapi_app:app"
        ),
        "ctrl-c",
    ),
    # aiohttp's run_app.
    ("aiohttp", lambda port: documented("aiohttp_app.py", port), "ctrl-c"),
    ("aiohttp", lambda port: documented("aiohttp_app.py", port), "sigterm"),
    # WSGI under gunicorn's gthread and sync workers, and waitress.
    ("gunicorn-gthread-flask", lambda port: documented("flask_app.py", port), "ctrl-c"),
    ("gunicorn-gthread-flask", lambda port: documented("flask_app.py", port), "sigterm"),
    ("gunicorn-gthread-django", lambda port: documented("django_app.py", port), "sigterm"),
    (
        "gunicorn-sync-flask",
        lambda port: other("gunicorn", "--bind", f"127.0.0.1:{port}", "flask_app:app"),
        "sigterm",
    ),
    # Ctrl+C makes the sync worker raise SystemExit in the thread that serves the stream: the
    # body ends the response, then raises it again.
    (
        "gunicorn-sync-flask",
        lambda port: other("gunicorn", "--bind", f"127.0.0.1:{port}", "flask_app:app"),
        "ctrl-c",
    ),
    # Django's development server, with its reloader (two processes).
    (
        "runserver-django",
        lambda port: Server(
            [sys.executable, "django_app.py", "runserver", f"127.0.0.1:{port}"], EXAMPLES
        ),
        "ctrl-c",
    ),
    (
        "waitress-flask",
        lambda port: other(
            "waitress-serve",
            "--threads",
            "8",
            "--channel-request-lookahead",
            "1",
            "--listen",
            f"127.0.0.1:{port}",
            "flask_app:app",
        ),
        "ctrl-c",
    ),
    # waitress installs no SIGTERM handler: the hub's ends the streams, then the process.
    (
        "waitress-flask",
        lambda port: other(
            "waitress-serve",
            "--threads",
            "8",
            "--channel-request-lookahead",
            "1",
            "--listen",
            f"127.0.0.1:{port}",
            "flask_app:app",
        ),
        "sigterm",
    ),
]


# Per-request streams (a generator per response, `EventSourceResponse(..., hub=hub)`): the
# example's endless count, with a client in the middle of it.
GENERATOR_PATH = "/count?n=1000000&delay=0.5"
GENERATOR_CASES: list[Case] = [
    ("uvicorn-generator", lambda port: documented("generator_stream.py", port), "ctrl-c"),
    ("uvicorn-generator", lambda port: documented("generator_stream.py", port), "sigterm"),
    (
        "hypercorn-generator",
        lambda port: other(
            "hypercorn", "--workers", "0", "--bind", f"127.0.0.1:{port}", "generator_stream:app"
        ),
        "ctrl-c",
    ),
    (
        "hypercorn-default-generator",
        lambda port: other("hypercorn", "--bind", f"127.0.0.1:{port}", "generator_stream:app"),
        "sigterm",
    ),
    (
        "gunicorn-uvicorn-worker-generator",
        lambda port: other(
            "gunicorn",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "--bind",
            f"127.0.0.1:{port}",
            "generator_stream:app",
        ),
        "sigterm",
    ),
    (
        "gunicorn-sync-flask-generator",
        lambda port: other("gunicorn", "--bind", f"127.0.0.1:{port}", "flask_generator_stream:app"),
        "ctrl-c",
    ),
    # WSGI: the body checks the hub's exit flag on every chunk.
    (
        "gunicorn-gthread-flask-generator",
        lambda port: documented("flask_generator_stream.py", port),
        "ctrl-c",
    ),
    (
        "gunicorn-gthread-flask-generator",
        lambda port: documented("flask_generator_stream.py", port),
        "sigterm",
    ),
]


CHANNEL_PATH = "/events/my-channel"


@pytest.mark.parametrize(
    ("start", "how", "path"),
    [
        *(pytest.param(start, how, CHANNEL_PATH, id=f"{name}-{how}") for name, start, how in CASES),
        *(
            pytest.param(start, how, GENERATOR_PATH, id=f"{name}-{how}")
            for name, start, how in GENERATOR_CASES
        ),
    ],
)
def test_a_signal_ends_open_streams_and_the_server_exits(
    start: Callable[[int], Server], how: str, path: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    outcome = signal_during_stream(start(port), port, how, log, path=path)
    output = log.read_text(errors="replace")[-8000:]
    assert outcome.stream_end is not None and outcome.stream_end <= STREAM_ENDS_WITHIN, (
        f"{outcome}\n{output}"
    )
    assert outcome.clean, f"{outcome}\n{output}"
    assert outcome.exit is not None and outcome.exit <= EXITS_WITHIN, f"{outcome}\n{output}"
    assert outcome.returncode in (0, -signal.SIGINT, -signal.SIGTERM), f"{outcome}\n{output}"
