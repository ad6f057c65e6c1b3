"""The ``ssehub`` command: its argument parser, and `main`, which runs ``ssehub serve``.

``ssehub serve`` parses its flags once into a `ServeConfig`, then runs one hub process
(`runners.serve_one`) or, with ``--workers N``, the supervisor of N of them
(`supervisor.serve_workers`), which hands each worker that same config.

Every flag has an environment variable, made from its name by `ssehub.server.config.env_var`
(``--cors-origin`` is ``SSEHUB_CORS_ORIGIN``): `build_parser` documents it next to the flag
and reads it as the flag's default, so a flag on the command line wins. Repeatable flags take
a comma or space separated list, switches ``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``; an empty variable counts as unset. A bad value, in a flag or a
variable, is one line on stderr naming it, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ssehub.backends.sqlite import FSYNC_MODES
from ssehub.hub import DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_MEMORY
from ssehub.server.app import DEFAULT_METRICS_CHANNELS
from ssehub.server.config import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEAD_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    CLIError,
    ServeConfig,
    env_var,
)
from ssehub.server.logs import SafeFormatter, redact_url
from ssehub.server.mercure import MODES as MERCURE_MODES
from ssehub.server.publish import DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY
from ssehub.server.runners import FD_RESERVE, check_http_server, make_auth, serve_one
from ssehub.server.supervisor import (
    BUS_FD_FLAG,
    WORKER_CONFIG_FLAG,
    read_worker_config,
    serve_workers,
)

__all__ = ["INTERNAL_DESTS", "build_parser", "main", "run"]

INTERNAL_DESTS = frozenset({"command", "worker_config_fd", "bus_fd"})
"""Parsed destinations that are not serve options (the subcommand, the workers' hidden flag)."""

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)


def _size(text: str) -> int:
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 1048576, 512KiB, 1MiB)")
    number, unit = int(match.group(1)), (match.group(2) or "b").lower()
    scale = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit[0]]
    if number * scale <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return number * scale


def _size_or_off(text: str) -> int:
    """A size, or 0 for ``off`` / ``0`` (no bound)."""
    if text.strip().lower() in ("0", "off", "none"):
        return 0
    return _size(text)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0 to 65535; 0 picks one)")
    return value


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


def _redis_url(text: str) -> str:
    """A Redis URL (``redis://``, ``rediss://`` or ``unix://``), checked before any connection;
    the message never shows its password."""
    shown = repr(redact_url(text))
    scheme = text.partition("://")[0]
    if scheme in _SENTINEL_SCHEMES:
        hosts, _, service = text.partition("://")[2].rpartition("@")[2].partition("/")
        if not hosts or not service.strip("/"):
            raise argparse.ArgumentTypeError(
                f"{shown} is not a Sentinel URL: redis+sentinel://host:port[,host:port]/service"
            )
        return text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{shown} is not a Redis URL: {exc}") from None
    if parts.scheme not in _REDIS_SCHEMES:
        raise argparse.ArgumentTypeError(
            f"{shown} is not a Redis URL: it must start with redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise argparse.ArgumentTypeError(f"{shown} names no socket path (unix:///path)")
        return text
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"{shown} names no host (redis://host:6379/0)")
    if port == 0:
        raise argparse.ArgumentTypeError(f"{shown}: port 0 is not a Redis port")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise argparse.ArgumentTypeError(
            f"{shown}: the database ({database!r}) must be a number (redis://host:6379/0)"
        )
    return text


def _host(text: str) -> str:
    host = text.strip().lower()
    if not host or not host.isascii() or not host.isprintable() or " " in host:
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name (ASCII; punycode for IDNs)")
    return host


_PEM_BEGIN = "-----BEGIN "


def _pem_key(text: str) -> str:
    """A public key in PEM: the file ``text`` names, or ``text`` itself when it is one (an
    environment variable may hold the key rather than its path). The key is checked later,
    by `runners.make_auth`."""
    if text.lstrip().startswith(_PEM_BEGIN):
        return text
    try:
        with open(text, encoding="ascii") as file:
            pem = file.read(1024 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise argparse.ArgumentTypeError(f"cannot read the key file {text!r}: {reason}") from None
    if _PEM_BEGIN not in pem:
        raise argparse.ArgumentTypeError(f"{text!r} holds no PEM key (-----BEGIN PUBLIC KEY-----)")
    return pem


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


def _workers(text: str) -> int:
    """A number of worker processes, or ``auto``: one per CPU core."""
    if text.strip().lower() == "auto":
        return os.cpu_count() or 1
    return _positive_int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of events per second") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` and a pointer to ``--help``; exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Repeatable(argparse.Action):
    """A repeatable flag: each use adds a value; the first one replaces the default (which
    may come from the environment), so a flag given on the command line wins."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        items.append(values)
        setattr(namespace, self.dest, items)


def _is_switch(action: argparse.Action) -> bool:
    return action.nargs == 0 and action.const is True


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _from_env(action: argparse.Action, raw: str) -> Any:
    """The value of a flag given as its environment variable's text (ValueError if bad)."""
    if _is_switch(action):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")
    convert: Any = action.type if action.type is not None else str
    texts = raw.replace(",", " ").split() if isinstance(action, _Repeatable) else [raw.strip()]
    values = []
    for text in texts:
        try:
            value = convert(text)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ValueError(str(exc) or f"{text!r} is not valid here") from None
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ValueError(f"{text!r} is not one of {choices}")
        values.append(value)
    return values if isinstance(action, _Repeatable) else values[0]


def _serve_options(serve: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``ssehub serve``'s flags (not --help nor the internal ones)."""
    # argparse has no public list of a parser's actions.
    return [
        action
        for action in serve._actions
        if action.option_strings and action.dest not in INTERNAL_DESTS and action.dest != "help"
    ]


def _document(action: argparse.Action) -> None:
    """Complete a flag's help: its default (when it has a meaningful one and the help does
    not say it) and its environment variable."""
    text = action.help or ""
    default = action.default
    if "default" not in text and default not in (None, False, []):
        text += " (default: " + str(default).replace("%", "%%") + ")"
    variable = env_var(action.dest)
    if isinstance(action, _Repeatable):
        text += f" [env: {variable}, comma or space separated]"
    elif _is_switch(action):
        text += f" [env: {variable}=1]"
    else:
        text += f" [env: {variable}]"
    action.help = text


_SECRET_METAVARS = frozenset({"TOKEN", "SECRET"})


def _apply_environment(action: argparse.Action, environ: Mapping[str, str]) -> None:
    """Make the flag's environment variable, when set and not empty, its default."""
    variable = env_var(action.dest)
    raw = environ.get(variable, "")
    if not raw.strip():
        return
    try:
        action.default = _from_env(action, raw)
    except ValueError as exc:
        # Never echo a token's or a secret's value, nor a key's PEM; the others are shown
        # (with any URL password hidden).
        hidden = action.metavar in _SECRET_METAVARS or raw.lstrip().startswith(_PEM_BEGIN)
        shown = "" if hidden else f"={redact_url(raw)!r}"
        raise CLIError(f"environment variable {variable}{shown}: {exc}") from None


def _version() -> str:
    try:
        return metadata.version("ssehub")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``ssehub`` argument parser (``ssehub serve --help`` documents every flag).

    Each ``ssehub serve`` flag's default is its ``SSEHUB_*`` variable in ``environ`` (default:
    `os.environ`) when set; raises `CLIError`, naming the variable, when one holds a bad value.
    """
    parser = _Parser(
        prog="ssehub",
        description="ssehub: a fast Server-Sent Events hub. Run `ssehub serve` to start the "
        "standalone hub: any service publishes over HTTP, browsers subscribe with EventSource.",
    )
    parser.add_argument("--version", action="version", version=f"ssehub {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the standalone hub (HTTP publish API, SSE streams, dashboard, metrics)",
        description="Run the standalone hub. Subscribe with GET /events/<channel> (resume with "
        "Last-Event-ID or ?lastEventId=), or to several channels with "
        "GET /events?channel=<selector>&channel=... (names, '*', URI templates); publish with "
        'POST /events/<channel> (a JSON object {"data", "event", "id", "retry", "private"}, a '
        "JSON array of them, or a raw UTF-8 body), one event to several channels with "
        'POST /events {"channels": [...], "data": ...}, to every channel with POST /broadcast; '
        "GET /channels, /metrics (Prometheus), /healthz, and the live dashboard at /. Every flag "
        "can be set by the environment variable shown with it "
        "(SSEHUB_ and the flag's name); a flag on the command line wins over its variable, "
        "and an empty variable counts as unset.",
    )
    net = serve.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on")
    net.add_argument("--port", type=_port, default=8000, help="TCP port (0 picks a free one)")
    net.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT), or 'auto' for one per CPU core; "
        "without --redis they share channels and history through the supervisor over Unix "
        "sockets (one machine); a worker that dies is restarted",
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
        action=_Repeatable,
        default=[],
        metavar="ORIGIN",
        help="an origin allowed to subscribe and publish from a browser (repeatable; '*' allows "
        "any); sets Access-Control-Allow-Origin and answers preflights. Without a publish "
        "token, a publish from a browser origin that is neither the hub's own nor listed gets 403",
    )
    net.add_argument(
        "--allowed-host",
        action=_Repeatable,
        type=_host,
        default=[],
        metavar="HOST",
        help="a Host header value the hub answers (repeatable; 'hub.example.com' matches any "
        "port, '.example.com' every subdomain); other hosts get 400, which defeats DNS "
        "rebinding (default: any host)",
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
        "--history-bytes",
        type=_size_or_off,
        default=DEFAULT_HISTORY_BYTES,
        metavar="BYTES",
        help="history kept per channel, in bytes (e.g. 16MiB; 0 or 'off': no byte bound); "
        "the channel's oldest events go first (default: 16MiB)",
    )
    events.add_argument(
        "--history-memory",
        type=_size_or_off,
        default=DEFAULT_HISTORY_MEMORY,
        metavar="BYTES",
        help="history kept for the whole hub, in bytes (e.g. 256MiB; 0 or 'off': no bound); "
        "past it the oldest events of any channel go first and a client resuming from one "
        "gets an ssehub.gap event. In-memory history only: with --redis, bound Redis with its "
        "maxmemory (default: 256MiB)",
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
        "--max-batch",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH,
        metavar="N",
        help="most messages one JSON array may publish; a larger batch gets 413",
    )
    events.add_argument(
        "--stream-rate",
        type=_rate,
        default=0.0,
        metavar="EVENTS",
        help="events per second one streaming publish (NDJSON POST) may publish; past it the "
        "hub reads that stream more slowly, so the publisher waits (0: no bound; each line is "
        "at most --max-body bytes and must arrive within --body-timeout of the one before)",
    )
    events.add_argument(
        "--max-buffer",
        type=_size,
        default=256 * 1024,
        metavar="BYTES",
        help="bytes a client may fall behind before it is dropped (it then resumes from "
        "history); also the largest event accepted once encoded (a larger one gets 413)",
    )
    events.add_argument(
        "--redis",
        type=_redis_url,
        default=None,
        metavar="URL",
        help="share events and history through Redis (e.g. redis://127.0.0.1:6379/0), so "
        "several hub processes and machines serve the same channels; a Redis Cluster node is "
        "detected (or say redis+cluster://host:port), and redis+sentinel://host:port[,host:port]"
        "/service follows a Sentinel-managed primary",
    )
    events.add_argument(
        "--redis-key-ttl",
        type=_seconds,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="with --redis: an idle channel's keys (its history) expire this many seconds "
        "after its last publish; 0 keeps them forever (default: 86400, one day)",
    )
    events.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="keep history in DIR (created if missing; an SQLite file, history.sqlite3): a "
        "publish is answered once written, and after a restart, even kill -9, ids continue and "
        "clients resume exactly. One hub per DIR (a second one is refused); not with --redis",
    )
    events.add_argument(
        "--fsync",
        choices=FSYNC_MODES,
        default="batch",
        help="with --data, when writes reach the disk: 'always' fsyncs each group commit "
        "before answering (survives power loss), 'batch' fsyncs at most a second later "
        "(a power loss may lose that last second), 'off' never (the OS decides); every mode "
        "survives kill -9 of the hub",
    )
    limits = serve.add_argument_group(
        "connection limits",
        "what one client may hold; a client past a limit gets the status given, then its "
        "connection is closed (see 'Running it in production' in the README)",
    )
    limits.add_argument(
        "--max-clients",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="open streams past which a new one gets 503 (publishes and /healthz still get "
        "through); default: the open-file limit (raised to its hard limit at start) minus "
        f"a reserve of a tenth of it, at least {FD_RESERVE}, for everything but streams",
    )
    limits.add_argument(
        "--head-timeout",
        type=_seconds,
        default=DEFAULT_HEAD_TIMEOUT,
        metavar="SECONDS",
        help="time a client has to send a request's line and headers, from its first byte "
        "(from the connection's start for its first request); then 408 and close (0: none; "
        "native server only)",
    )
    limits.add_argument(
        "--body-timeout",
        type=_seconds,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="time a client has to send a request body once its headers are in; then 408 "
        "and close (0: none; native server only)",
    )
    limits.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help="an idle keep-alive connection is closed after this long (0: never); streams "
        "are never idle (keep-alive comments)",
    )
    auth = serve.add_argument_group("auth")
    auth.add_argument(
        "--publish-token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' to publish and broadcast (401 otherwise); "
        "prefer the environment variable, which keeps every token out of the process list",
    )
    auth.add_argument(
        "--subscribe-token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' or ?token=TOKEN to subscribe (default: "
        "subscribing is open)",
    )
    auth.add_argument(
        "--admin-token",
        default=None,
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' or ?token=TOKEN for /channels, /metrics and "
        "the dashboard's statistics (default: the subscribe token when one is set, else they "
        "are open)",
    )
    auth.add_argument(
        "--jwt-secret",
        default=None,
        metavar="SECRET",
        help="verify JWTs signed with this HMAC secret (HS256; HS384 and HS512 too when it is "
        "long enough; 32 bytes at least): a token's ssehub "
        "(or mercure) claim grants the channels it publishes to and whose private events it "
        "reads; with a JWT key, publishing needs a token (see the README's 'Channels, "
        "selectors and authorization'); prefer the environment variable",
    )
    auth.add_argument(
        "--jwt-public-key",
        type=_pem_key,
        default=None,
        metavar="FILE",
        help="verify JWTs signed with the private half of this public key (a PEM file: RSA "
        "for RS256, RS384 and RS512; EC for ES256 on P-256, ES384, ES512); the environment "
        "variable may hold the PEM itself",
    )
    auth.add_argument(
        "--require-subscriber-token",
        action="store_true",
        help="streams need a valid JWT (401 without one); without it, a stream without a "
        "JWT reads public events only",
    )
    auth.add_argument(
        "--mercure",
        choices=MERCURE_MODES,
        default="auto",
        help="speak the Mercure protocol at /.well-known/mercure (subscribe with ?topic=, "
        "publish a form; topics are channels): 'auto' when a JWT key is set, 'on' always, "
        "'off' never",
    )
    auth.add_argument(
        "--public-metrics",
        action="store_true",
        help="serve /metrics without a token even when the admin or subscribe token is set",
    )
    observe = serve.add_argument_group("metrics")
    observe.add_argument(
        "--metrics-channels",
        type=_non_negative_int,
        default=DEFAULT_METRICS_CHANNELS,
        metavar="N",
        help="channels given series of their own in /metrics, the busiest first; the others "
        'are summed under channel="(other)" (0 sums them all)',
    )
    presence = serve.add_argument_group("presence")
    presence.add_argument(
        "--presence",
        action="store_true",
        help="list the open subscriptions at GET /subscriptions and /subscriptions/<channel> "
        "(for a JWT whose subscribe claim matches /subscriptions, or the admin token) and "
        "publish each join and leave as a private 'subscription' event on the reserved channel "
        "/subscriptions; with --redis, the list covers every hub",
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
    # Internal: a process started by the `--workers N` supervisor reads its config from this fd.
    serve.add_argument(WORKER_CONFIG_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    # Internal: a worker's end of its socket pair to the supervisor's local bus.
    serve.add_argument(BUS_FD_FLAG, type=int, default=None, help=argparse.SUPPRESS)
    environ = os.environ if environ is None else environ
    for action in _serve_options(serve):
        _document(action)
        _apply_environment(action, environ)
    return parser


def configure_logging(level: str) -> None:
    """Send ssehub's and uvicorn's logs to stderr as ``time level logger key=value ...``.

    Every message goes through `SafeFormatter`: control characters are escaped (a client's
    ``%0a`` cannot forge a log line), ``token=`` query values are redacted, and the time is
    ISO 8601 UTC with milliseconds (``2025-05-04T09:30:00.123Z``).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own start/stop lines repeat ours; keep its warnings and errors.
    uvicorn_level = "DEBUG" if level == "debug" else "WARNING"
    logging.getLogger("uvicorn.error").setLevel(uvicorn_level)
    logging.getLogger("uvicorn.access").setLevel("INFO")
    logging.getLogger("ssehub.access").setLevel("INFO")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssehub`` console script; returns the exit status."""
    try:
        parser = build_parser()
    except CLIError as exc:
        print(f"ssehub serve: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2
    try:
        if args.worker_config_fd is not None:
            config, ready_fd = read_worker_config(args.worker_config_fd)
            configure_logging(config.log_level)
            return serve_one(config, reuse_port=True, ready_fd=ready_fd, bus_fd=args.bus_fd)
        config = ServeConfig.from_args(args, ignore=INTERNAL_DESTS)
        check_http_server(config)
        make_auth(config)  # a bad key or a missing PyJWT stops here, before any worker starts
        configure_logging(config.log_level)
        if config.data is not None and config.redis:
            raise CLIError(
                "give --data DIR or --redis URL, not both: with Redis, history lives in Redis"
            )
        if config.data is not None and config.workers > 1:
            raise CLIError(
                "--data serves one hub process: several workers cannot share one history file "
                "(--workers N runs without it, history in memory, or with --redis URL)"
            )
        if config.workers > 1:
            return serve_workers(config)
        return serve_one(config)
    except CLIError as exc:
        print(f"ssehub serve: error: {exc}", file=sys.stderr)
        return 2


def run(argv: Sequence[str] | None = None) -> Any:
    """`main`, exiting the process with its status (for ``python -m ssehub``)."""
    sys.exit(main(argv))
