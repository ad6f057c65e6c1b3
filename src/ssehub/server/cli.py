"""The ``ssehub`` command: ``ssehub serve`` runs the standalone hub on uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ssehub.backends.base import Backend
from ssehub.hub import Hub
from ssehub.server.app import DEFAULT_MAX_BODY, HubServer
from ssehub.subscription import CloseReason, Subscription

__all__ = ["build_parser", "main"]

log = logging.getLogger("ssehub.server")

PUBLISH_TOKEN_ENV = "SSEHUB_PUBLISH_TOKEN"
SUBSCRIBE_TOKEN_ENV = "SSEHUB_SUBSCRIBE_TOKEN"

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


class CLIError(Exception):
    """A bad combination of options or a missing optional dependency (exit status 2)."""


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 1048576, 512KiB, 1MiB)")
    number, unit = int(match.group(1)), (match.group(2) or "b").lower()
    scale = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit[0]]
    if number * scale <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return number * scale


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


class _HelpFormatter(argparse.HelpFormatter):
    """Shows a flag's default when it has a meaningful one and its help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    """The ``ssehub`` argument parser (``ssehub serve --help`` documents every flag)."""
    parser = argparse.ArgumentParser(
        prog="ssehub",
        description="ssehub: a fast Server-Sent Events hub. Run `ssehub serve` to start the "
        "standalone hub: any service publishes over HTTP, browsers subscribe with EventSource.",
    )
    from ssehub import __version__

    parser.add_argument("--version", action="version", version=f"ssehub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the standalone hub (HTTP publish API, SSE streams, dashboard, metrics)",
        description="Run the standalone hub. Subscribe with GET /events/<channel> (resume with "
        "Last-Event-ID or ?lastEventId=), publish with POST /events/<channel> (a JSON object "
        '{"data", "event", "id", "retry"}, a JSON array of them, or a raw UTF-8 body), broadcast '
        "with POST /broadcast; GET /channels, /metrics (Prometheus), /healthz, and the live "
        "dashboard at /.",
        formatter_class=_HelpFormatter,
    )
    net = serve.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on")
    net.add_argument("--port", type=int, default=8000, help="TCP port (0 picks a free one)")
    net.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); more than 1 needs --redis, since "
        "in-memory hubs do not share events",
    )
    net.add_argument(
        "--http",
        choices=("native", "uvicorn"),
        default="native",
        help="HTTP server: 'native' is ssehub's own (streams written straight to their sockets, "
        "no task per client; see BENCHMARKS.md), 'uvicorn' the ASGI server",
    )
    net.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="an origin allowed to subscribe and publish from a browser (repeatable; '*' allows "
        "any); sets Access-Control-Allow-Origin and answers preflights",
    )
    events = serve.add_argument_group("events")
    events.add_argument(
        "--history",
        type=_non_negative_int,
        default=1000,
        help="events kept per channel for Last-Event-ID replay (0 keeps none)",
    )
    events.add_argument(
        "--history-ttl",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="drop history older than this many seconds (default: keep by count only)",
    )
    events.add_argument(
        "--retry",
        type=_non_negative_int,
        default=None,
        metavar="MS",
        help="reconnection delay in milliseconds sent to each client when its stream opens",
    )
    events.add_argument(
        "--keepalive",
        type=_seconds,
        default=15.0,
        metavar="SECONDS",
        help="seconds between keep-alive comments on idle streams (0 disables them)",
    )
    events.add_argument(
        "--max-body",
        type=_size,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help="largest publish body accepted (e.g. 1048576, 512KiB, 1MiB); larger gets 413",
    )
    events.add_argument(
        "--max-buffer",
        type=_size,
        default=256 * 1024,
        metavar="BYTES",
        help="bytes a client may fall behind before it is dropped (it then resumes from history)",
    )
    events.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="share events and history through Redis (e.g. redis://127.0.0.1:6379/0), so "
        "several hub processes and machines serve the same channels",
    )
    auth = serve.add_argument_group("auth")
    auth.add_argument(
        "--publish-token",
        default=os.environ.get(PUBLISH_TOKEN_ENV) or None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' to publish and broadcast (401 otherwise); "
        f"prefer the {PUBLISH_TOKEN_ENV} environment variable, which keeps it out of the "
        "process list",
    )
    auth.add_argument(
        "--subscribe-token",
        default=os.environ.get(SUBSCRIBE_TOKEN_ENV) or None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' or ?token=TOKEN to subscribe (default: "
        f"subscribing is open); also read from {SUBSCRIBE_TOKEN_ENV}",
    )
    logs = serve.add_argument_group("logging")
    logs.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level (info logs start, stop, slow clients dropped and rejected publishes)",
    )
    logs.add_argument(
        "--access-log", action="store_true", help="log every HTTP request (off by default)"
    )
    # Internal: a worker started by `--workers N` binds the port with SO_REUSEPORT.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # Internal: a worker writes one byte to this pipe once it serves.
    serve.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def configure_logging(level: str) -> None:
    """Send ssehub's and uvicorn's logs to stderr as ``time level logger key=value ...``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own start/stop lines repeat ours; keep its warnings and errors.
    uvicorn_level = "DEBUG" if level == "debug" else "WARNING"
    logging.getLogger("uvicorn.error").setLevel(uvicorn_level)
    logging.getLogger("uvicorn.access").setLevel("INFO")
    logging.getLogger("ssehub.access").setLevel("INFO")


def make_backend(redis_url: str | None) -> Backend | None:
    """The backend for ``--redis URL`` (None: the in-memory default)."""
    if redis_url is None:
        return None
    try:
        from ssehub.redis import RedisBackend  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise CLIError(
            f"--redis needs the Redis backend: install it with pip install 'ssehub[redis]' ({exc})"
        ) from None
    backend: Backend = RedisBackend(redis_url)
    return backend


def on_client_gone(sub: Subscription) -> None:
    """The hub's ``on_disconnect`` hook for ``ssehub serve``: log clients dropped as too slow."""
    if sub.close_reason == CloseReason.SLOW:
        client = sub.request.client if sub.request is not None else None
        log.warning(
            "event=client_dropped reason=slow channel=%s client=%s",
            sub.channel,
            f"{client[0]}:{client[1]}" if client else "-",
        )


def build_server(args: argparse.Namespace) -> HubServer:
    """The `HubServer` (and its `Hub`) that ``ssehub serve`` runs with ``args``."""
    hub = Hub(
        history=args.history,
        history_ttl=args.history_ttl,
        retry=args.retry,
        keepalive=args.keepalive or None,
        max_buffer=args.max_buffer,
        backend=make_backend(args.redis),
        on_disconnect=on_client_gone,
    )
    return HubServer(
        hub,
        publish_token=args.publish_token,
        subscribe_token=args.subscribe_token,
        cors_origins=args.cors_origin,
        max_body=args.max_body,
    )


def _bind(host: str, port: int, reuse_port: bool, listen: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if listen:
        # Listen at once: connections made while the hub starts wait in the backlog instead of
        # being refused.
        sock.listen(4096)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Installed around uvicorn: it re-raises the signal it handled once it has shut down
    gracefully, and this handler turns that into a clean exit (status 0)."""


def _started(args: argparse.Namespace, port: int) -> None:
    log.info(
        "event=start url=%s pid=%d http=%s backend=%s history=%d keepalive=%s auth=%s cors=%s",
        _url(args.host, port),
        os.getpid(),
        args.http,
        "redis" if args.redis else "memory",
        args.history,
        args.keepalive or "off",
        "publish-token" if args.publish_token else "open",
        ",".join(args.cors_origin) or "-",
    )
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"1")
        os.close(args.ready_fd)


def serve_native(args: argparse.Namespace) -> int:
    """Run one hub process on ssehub's own HTTP server until SIGTERM or SIGINT."""
    from ssehub.server.native import HTTPServer

    app = build_server(args)
    sock = _bind(args.host, args.port, args.reuse_port)
    port = sock.getsockname()[1]

    async def run() -> None:
        server = HTTPServer(app, max_body=args.max_body, access_log=args.access_log)
        loop = asyncio.get_running_loop()

        def stop(sig: signal.Signals) -> None:
            log.info("event=stopping signal=%s clients=%d", sig.name, app.hub.client_count())
            server.shutdown()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        task = asyncio.ensure_future(server.serve([sock], timeout=10))
        started = asyncio.ensure_future(server.started.wait())
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        if server.started.is_set():
            _started(args, port)
        else:
            started.cancel()
        await task

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())
    finally:
        sock.close()
    log.info(
        "event=stop pid=%d published=%d", os.getpid(), sum(app.hub.published_counts().values())
    )
    return 0


def serve_one(args: argparse.Namespace) -> int:
    """Run one hub process until SIGTERM or SIGINT; return the exit status."""
    if args.http == "native":
        return serve_native(args)
    import uvicorn

    app = build_server(args)
    sock = _bind(args.host, args.port, args.reuse_port)
    port = sock.getsockname()[1]

    class GracefulServer(uvicorn.Server):
        """uvicorn, but the hub's streams end before uvicorn waits for open responses.

        uvicorn waits for every open response before the lifespan shutdown, and an SSE stream
        never finishes by itself: so the hub is shut down first (streams end cleanly and
        clients reconnect elsewhere), then uvicorn finishes as usual.
        """

        signal_name = ""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.signal_name = signal.Signals(sig).name
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                _started(args, port)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listener in getattr(self, "servers", ()):
                listener.close()  # refuse new connections before ending the streams
            log.info(
                "event=stopping signal=%s clients=%d",
                self.signal_name or "-",
                app.hub.client_count(),
            )
            await app.close()
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=args.access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    server = GracefulServer(config)
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info(
        "event=stop pid=%d published=%d", os.getpid(), sum(app.hub.published_counts().values())
    )
    return 0


def _worker_argv(args: argparse.Namespace, port: int, ready_fd: int) -> list[str]:
    argv = [sys.executable, "-m", "ssehub", "serve", "--host", args.host, "--port", str(port)]
    argv += [
        "--reuse-port",
        "--ready-fd",
        str(ready_fd),
        "--history",
        str(args.history),
        "--keepalive",
        str(args.keepalive),
    ]
    argv += ["--max-body", str(args.max_body), "--max-buffer", str(args.max_buffer)]
    argv += ["--log-level", args.log_level, "--http", args.http]
    if args.history_ttl is not None:
        argv += ["--history-ttl", str(args.history_ttl)]
    if args.retry is not None:
        argv += ["--retry", str(args.retry)]
    for origin in args.cors_origin:
        argv += ["--cors-origin", origin]
    if args.redis:
        argv += ["--redis", args.redis]
    if args.access_log:
        argv.append("--access-log")
    return argv


def serve_workers(args: argparse.Namespace) -> int:
    """Run ``args.workers`` hub processes on one port; forward SIGTERM/SIGINT to them."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise CLIError("--workers > 1 needs SO_REUSEPORT, which this platform lacks")
    make_backend(args.redis)  # fail here, once, if the backend is missing
    # Hold the port (bound, not listening) so a port of 0 resolves once for every worker.
    reserved = _bind(args.host, args.port, reuse_port=True, listen=False)
    port = reserved.getsockname()[1]
    env = dict(os.environ)
    # Tokens travel in the environment, never on a command line.
    env.pop(PUBLISH_TOKEN_ENV, None)
    env.pop(SUBSCRIBE_TOKEN_ENV, None)
    if args.publish_token:
        env[PUBLISH_TOKEN_ENV] = args.publish_token
    if args.subscribe_token:
        env[SUBSCRIBE_TOKEN_ENV] = args.subscribe_token
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
        for _ in range(args.workers):
            # Own sessions: a terminal's Ctrl-C reaches this process only, which then stops
            # each worker exactly once.
            procs.append(
                subprocess.Popen(
                    _worker_argv(args, port, ready_write),
                    env=env,
                    start_new_session=True,
                    pass_fds=(ready_write,),
                )
            )
        os.close(ready_write)
        ready = 0
        while ready < args.workers and not stopping:
            # Each worker writes one byte once it serves.
            if any(proc.poll() is not None for proc in procs):
                break
            if select.select([ready_read], [], [], 0.1)[0]:
                ready += len(os.read(ready_read, args.workers))
        if ready == args.workers:
            log.info(
                "event=start url=%s pid=%d workers=%d backend=redis",
                _url(args.host, port),
                os.getpid(),
                args.workers,
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
    log.info("event=stop pid=%d workers=%d status=%d", os.getpid(), args.workers, status)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssehub`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2
    configure_logging(args.log_level)
    try:
        if args.workers > 1:
            if not args.redis:
                raise CLIError(
                    "--workers > 1 needs --redis URL: each worker is a separate process with "
                    "its own memory, so without Redis a subscriber on one worker would miss "
                    "events published to another"
                )
            return serve_workers(args)
        return serve_one(args)
    except CLIError as exc:
        print(f"ssehub serve: error: {exc}", file=sys.stderr)
        return 2


def run(argv: Sequence[str] | None = None) -> Any:
    """`main`, exiting the process with its status (for ``python -m ssehub``)."""
    sys.exit(main(argv))
