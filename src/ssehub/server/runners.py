"""Run one hub process: the `HubServer` built from a `ServeConfig`, on the native server or uvicorn.

`serve_one` binds the port, serves until SIGTERM or SIGINT, and shuts down gracefully: new
connections are refused, the hub ends every stream cleanly (clients reconnect elsewhere), and
the process exits 0. Both runners log the same ``event=start``, ``event=stopping`` and
``event=stop`` lines.

Before serving, the process raises its open-file limit to the hard limit and caps streams
below it (`max_clients`), so that publishes and health checks always find a descriptor.
What applies under ``--http uvicorn``: the stream cap, the idle timeout (uvicorn's
``timeout_keep_alive``), the refusals from the head (the app checks the head before it reads
the body) and the accept-failure warning on the asyncio loop; the head size and the head and
body timeouts are the native server's own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import socket
import time
from pathlib import Path
from types import FrameType

from ssehub.backends.base import Backend
from ssehub.backends.sqlite import SqliteBackend
from ssehub.errors import HistoryFileError
from ssehub.hub import Hub
from ssehub.server.app import HubServer
from ssehub.server.auth import Auth
from ssehub.server.config import CLIError, ServeConfig
from ssehub.server.logs import redact_url
from ssehub.server.mercure import enabled as mercure_enabled
from ssehub.subscription import CloseReason, Subscription

__all__ = [
    "FD_RESERVE",
    "HISTORY_FILE",
    "JWT_INSTALL",
    "UVICORN_INSTALL",
    "StreamLog",
    "auth_summary",
    "bind",
    "build_server",
    "check_http_server",
    "make_auth",
    "make_backend",
    "max_clients",
    "on_client_gone",
    "open_history",
    "serve_native",
    "serve_one",
    "serve_uvicorn",
    "url",
]

log = logging.getLogger("ssehub.server")

FD_RESERVE = 64
"""File descriptors kept, at the least, for everything but streams (``--max-clients``)."""


def max_clients(configured: int | None) -> int:
    """The stream cap to serve with: ``configured``, or one that leaves room under the
    open-file limit for publishes, health checks and the hub's own files.

    Raises the soft open-file limit to the hard one first (a process setting), and warns when
    ``configured`` leaves less room than `FD_RESERVE`.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return configured if configured is not None else 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    room = max(1, soft - max(FD_RESERVE, soft // 10))
    if configured is None:
        return room
    if configured > soft - FD_RESERVE:
        log.warning(
            "event=config_warning max_clients=%d open_file_limit=%d: streams could use every "
            "file descriptor and leave none for publishes and health checks; raise the limit "
            "(ulimit -n) or lower --max-clients",
            configured,
            soft,
        )
    return configured


def _stop_this_process() -> None:
    # The bus is gone: stop as SIGTERM does (gracefully: the streams end, clients reconnect).
    os.kill(os.getpid(), signal.SIGTERM)


def make_backend(
    redis_url: str | None, key_ttl: float | None = None, bus_fd: int | None = None
) -> Backend | None:
    """The backend for ``--redis URL``, its idle channels' keys expiring after ``key_ttl``
    seconds (``--redis-key-ttl``; None: the backend's default); or, for a ``--workers`` worker
    without it, the local bus on ``bus_fd`` (the process stops if the bus closes); None: the
    in-memory default. CLIError when ``--redis`` is given without the redis package."""
    if redis_url is None:
        if bus_fd is None:
            return None
        from ssehub.backends.localbus import LocalBusBackend

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=bus_fd)
        return LocalBusBackend(sock, on_lost=_stop_this_process)
    try:
        from ssehub.backends.redis import RedisBackend
    except ImportError as exc:
        raise CLIError(
            f"--redis needs the Redis backend: install it with pip install 'ssehub[redis]' ({exc})"
        ) from None
    from redis.connection import parse_url

    try:
        if "+" not in redis_url.partition("://")[0]:  # +cluster and +sentinel are ssehub's
            parse_url(redis_url)  # type: ignore[no-untyped-call]
        if key_ttl is None:
            backend: Backend = RedisBackend(redis_url)
        else:
            backend = RedisBackend(redis_url, key_ttl=key_ttl)
    except ValueError as exc:
        raise CLIError(f"--redis: not a Redis URL ({redact_url(redis_url)!r}): {exc}") from None
    return backend


HISTORY_FILE = "history.sqlite3"
"""The history file ``ssehub serve --data DIR`` keeps in DIR (with its ``.lock``, WAL and
shared-memory files beside it)."""


def open_history(data: str | None, fsync: str) -> Backend | None:
    """The durable backend of ``--data DIR`` (None without it), its file opened, locked and
    checked; CLIError, in one line, when DIR or the file cannot be used or another hub holds
    it."""
    if data is None:
        return None
    directory = Path(data)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(
            f"--data: cannot create the directory {data!r}: {exc.strerror or exc}"
        ) from None
    if not directory.is_dir():
        raise CLIError(f"--data: {data!r} is not a directory")
    backend = SqliteBackend(directory / HISTORY_FILE, fsync=fsync)
    try:
        backend.open()
    except HistoryFileError as exc:
        raise CLIError(f"--data: {exc}") from None
    return backend


JWT_INSTALL = "pip install 'ssehub[jwt]'"
"""The install line that brings what ``--jwt-secret`` and ``--jwt-public-key`` need."""


def make_auth(config: ServeConfig) -> Auth:
    """The publish and subscribe rules of ``config`` (shared tokens, JWT key); CLIError for a
    bad combination, a bad secret or key, or a missing PyJWT.

    The algorithms are those the key allows (`ssehub.authz.JWTAuth`): HS256 (and HS384, HS512
    for a secret long enough for them) with ``--jwt-secret``, RS256/RS384/RS512 for an RSA key
    and the ES algorithm of an EC key's curve (ES256 for P-256) with ``--jwt-public-key``.
    """
    secret, pem = config.jwt_secret, config.jwt_public_key
    jwt_auth = None
    if secret and pem:
        raise CLIError("give --jwt-secret or --jwt-public-key, not both")
    if secret or pem:
        try:
            from ssehub.authz import JWTAuth
        except ImportError as exc:
            raise CLIError(f"JWTs need PyJWT: {JWT_INSTALL} ({exc})") from None
        flag = "--jwt-secret" if secret else "--jwt-public-key"
        try:
            jwt_auth = JWTAuth(secret=secret) if secret else JWTAuth(public_key=pem)
        except ImportError as exc:
            raise CLIError(f"{flag}: {exc}") from None
        except (ValueError, TypeError) as exc:
            # The messages say what is wrong with the key, never the key itself.
            raise CLIError(f"{flag}: {exc}") from None
    elif config.require_subscriber_token:
        raise CLIError("--require-subscriber-token needs --jwt-secret or --jwt-public-key")
    return Auth(
        publish_token=config.publish_token,
        subscribe_token=config.subscribe_token,
        jwt=jwt_auth,
        require_subscriber_token=config.require_subscriber_token,
    )


def _client(sub: Subscription) -> str:
    client = sub.request.client if sub.request is not None else None
    return f"{client[0]}:{client[1]}" if client else "-"


def on_client_gone(sub: Subscription) -> None:
    """The hub's ``on_disconnect`` hook for ``ssehub serve``: log clients dropped as too slow."""
    if sub.close_reason == CloseReason.SLOW:
        log.warning(
            "event=client_dropped reason=slow channel=%s client=%s", sub.channel, _client(sub)
        )


class StreamLog:
    """The hub's hooks at ``--log-level debug``: one line per stream opened and ended.

    Installed only when debug lines are on (`build_server`), so that at ``info`` opening and
    ending a stream costs nothing more. The end line gives the reason (a `CloseReason`) and how
    long the stream was open.
    """

    def __init__(self) -> None:
        self._opened: dict[Subscription, float] = {}

    def opened(self, sub: Subscription) -> None:
        """The ``on_connect`` hook: note the time and log ``event=stream_open``."""
        self._opened[sub] = time.monotonic()
        log.debug(
            "event=stream_open channel=%s client=%s last_event_id=%s",
            sub.channel,
            _client(sub),
            "-" if sub.last_event_id is None else sub.last_event_id,
        )

    def ended(self, sub: Subscription) -> None:
        """The ``on_disconnect`` hook: log ``event=stream_end`` (and slow drops, as always)."""
        on_client_gone(sub)
        started = self._opened.pop(sub, None)
        log.debug(
            "event=stream_end channel=%s client=%s reason=%s duration=%s",
            sub.channel,
            _client(sub),
            sub.close_reason or "-",
            "-" if started is None else f"{time.monotonic() - started:.3f}s",
        )


def auth_summary(config: ServeConfig) -> str:
    """The start line's ``auth=``: what guards the hub, by name (never a value): ``jwt-secret``
    or ``jwt-public-key``, ``require-subscriber-token`` and the tokens that are set."""
    names = [
        name
        for name, on in (
            ("jwt-secret", config.jwt_secret),
            ("jwt-public-key", config.jwt_public_key),
            ("require-subscriber-token", config.require_subscriber_token),
            ("publish-token", config.publish_token),
            ("subscribe-token", config.subscribe_token),
            ("admin-token", config.admin_token),
        )
        if on
    ]
    return ",".join(names) or "open"


def build_server(
    config: ServeConfig, clients: int | None = None, bus_fd: int | None = None
) -> HubServer:
    """The `HubServer` (and its `Hub`) that ``ssehub serve`` runs with ``config``; ``clients``
    is the stream cap (see `max_clients`; default: ``config.max_clients``); ``bus_fd`` the
    worker's end of the local bus (``--workers`` without ``--redis``).

    With debug lines on (``--log-level debug``), a `StreamLog` logs each stream that opens and
    ends.
    """
    streams = StreamLog() if log.isEnabledFor(logging.DEBUG) else None
    auth = make_auth(config)
    hub = Hub(
        history=config.history,
        history_ttl=config.history_ttl,
        history_bytes=config.history_bytes or None,
        history_memory=config.history_memory or None,
        retry=config.retry,
        keepalive=config.keepalive or None,
        max_buffer=config.max_buffer,
        backend=make_backend(config.redis, config.redis_key_ttl, bus_fd)
        or open_history(config.data, config.fsync),
        on_connect=None if streams is None else streams.opened,
        on_disconnect=on_client_gone if streams is None else streams.ended,
        # The server orders its own stop (in-flight publishes first, then the streams).
        end_streams_on_signal=False,
        # With a JWT key, the hub asks which private events a stream reads, and until when.
        authorize=auth.authorize if auth.jwt is not None else None,
    )
    return HubServer(
        hub,
        auth=auth,
        cors_origins=config.cors_origin,
        max_body=config.max_body,
        max_batch=config.max_batch,
        admin_token=config.admin_token,
        public_metrics=config.public_metrics,
        allowed_hosts=config.allowed_host,
        metrics_channels=config.metrics_channels,
        max_clients=clients if clients is not None else config.max_clients,
        mercure=mercure_enabled(config.mercure, jwt=auth.jwt is not None),
        presence=config.presence,
        line_timeout=config.body_timeout,
        stream_rate=config.stream_rate,
    )


def bind(host: str, port: int, reuse_port: bool, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (listening unless ``listen`` is False); CLIError
    when the address cannot be bound."""
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


def url(host: str, port: int) -> str:
    """The base URL of a hub listening on ``host:port``."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Installed around uvicorn: it re-raises the signal it handled once it has shut down
    gracefully, and this handler turns that into a clean exit (status 0)."""


def _started(config: ServeConfig, app: HubServer, port: int, ready_fd: int | None) -> None:
    log.info(
        "event=start url=%s pid=%d http=%s backend=%s history=%d keepalive=%s auth=%s cors=%s "
        "max_clients=%s mercure=%s",
        url(config.host, port),
        os.getpid(),
        config.http,
        "redis"
        if config.redis
        else "sqlite"
        if config.data is not None
        else "localbus"
        if app.hub.backend.shared
        else "memory",
        config.history,
        config.keepalive or "off",
        auth_summary(config),
        ",".join(config.cors_origin) or "-",
        app.max_clients,
        "on" if app.mercure else "off",
    )
    backend = app.hub.backend
    if isinstance(backend, SqliteBackend):
        log.info(
            "event=history path=%s fsync=%s events=%d channels=%d",
            backend.path,
            backend.fsync,
            backend.retained_events,
            backend.retained_channels,
        )
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)


def _stopped(app: HubServer) -> None:
    log.info("event=stop pid=%d published=%d", os.getpid(), app.hub.published_total)


UVICORN_INSTALL = "pip install 'ssehub[uvicorn]'"
"""The install line that brings what ``--http uvicorn`` needs."""


def check_http_server(config: ServeConfig) -> None:
    """Raise `CLIError` naming the install line when ``config.http``'s server is missing."""
    if config.http == "uvicorn" and importlib.util.find_spec("uvicorn") is None:
        raise CLIError(f"--http uvicorn needs uvicorn, which is not installed: {UVICORN_INSTALL}")


def serve_one(
    config: ServeConfig,
    *,
    reuse_port: bool = False,
    ready_fd: int | None = None,
    bus_fd: int | None = None,
) -> int:
    """Run one hub process until SIGTERM or SIGINT; return the exit status.

    ``reuse_port`` binds with SO_REUSEPORT (a ``--workers`` worker); once the hub serves, one
    byte is written to ``ready_fd`` (the supervisor's pipe), if given, and it is closed.
    ``bus_fd`` is a worker's end of the supervisor's local bus (no ``--redis``).
    """
    if config.http == "native":
        return serve_native(config, reuse_port=reuse_port, ready_fd=ready_fd, bus_fd=bus_fd)
    return serve_uvicorn(config, reuse_port=reuse_port, ready_fd=ready_fd, bus_fd=bus_fd)


def serve_native(
    config: ServeConfig,
    *,
    reuse_port: bool = False,
    ready_fd: int | None = None,
    bus_fd: int | None = None,
) -> int:
    """Run one hub process on ssehub's own HTTP server until SIGTERM or SIGINT."""
    from ssehub.server.native import HTTPServer

    app = build_server(config, max_clients(config.max_clients), bus_fd)
    sock = bind(config.host, config.port, reuse_port)
    port = sock.getsockname()[1]

    async def run() -> None:
        server = HTTPServer(
            app,
            max_body=config.max_body,
            access_log=config.access_log,
            head_timeout=config.head_timeout,
            body_timeout=config.body_timeout,
            idle_timeout=config.idle_timeout,
            refuse_head=app.refuse_head,
            stream_body=app.stream_body,
            answer_now=app.answer_now,
        )
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
            _started(config, app, port, ready_fd)
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
    _stopped(app)
    return 0


def serve_uvicorn(
    config: ServeConfig,
    *,
    reuse_port: bool = False,
    ready_fd: int | None = None,
    bus_fd: int | None = None,
) -> int:
    """Run one hub process on uvicorn (``--http uvicorn``) until SIGTERM or SIGINT."""
    import uvicorn

    app = build_server(config, max_clients(config.max_clients), bus_fd)
    sock = bind(config.host, config.port, reuse_port)
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
            from ssehub.server.native import log_accept_errors

            loop = asyncio.get_running_loop()
            if isinstance(loop, asyncio.BaseEventLoop):
                log_accept_errors(loop)
            await super().startup(sockets=sockets)
            if self.started:
                _started(config, app, port, ready_fd)

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

    uvicorn_config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=config.access_log,
        server_header=False,
        # uvicorn's idle timeout is whole seconds (0 would close at once: "off" is a day).
        timeout_keep_alive=max(1, round(config.idle_timeout)) if config.idle_timeout else 86400,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    server = GracefulServer(uvicorn_config)
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _stopped(app)
    return 0
