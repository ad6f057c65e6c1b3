"""What an operator sees: one-line errors, an ``SSEHUB_*`` variable per flag, and the logs.

Errors (bad flags, ports, Redis URLs, environment values) are one line on stderr with exit
status 2; every flag can be set from the environment, the command line winning; every log line
has the same ISO 8601 UTC timestamp; the start line names the tokens that are set; at debug,
each stream's opening and end is one line; and Redis's state changes are one line each, not
one per reconnection attempt.
"""

from __future__ import annotations

import calendar
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields

import httpx
import pytest

from ssehub.server.cli import INTERNAL_DESTS, build_parser
from ssehub.server.config import ServeConfig, env_var
from tests._support import free_port
from tests._support.redis_server import RedisServer
from tests.server.hub_process import HubFactory, HubProcess
from tests.server.test_config import EVERY_FLAG

pytestmark = pytest.mark.timeout(60)

_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ \S"
)


def _ssehub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ssehub ARGS`` to its end, with no SSEHUB_* variable but ``env``'s."""
    full_env = {k: v for k, v in os.environ.items() if k not in ServeConfig.env_vars()}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ssehub", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )


def _config(argv: list[str], environ: dict[str, str]) -> ServeConfig:
    args = build_parser(environ).parse_args(["serve", *argv])
    return ServeConfig.from_args(args, ignore=INTERNAL_DESTS)


def _wait_for(
    hub: HubProcess, found: Callable[[str], bool], what: str, timeout: float = 15.0
) -> str:
    """The hub's log once ``found(log)`` holds (AssertionError, with the log, after timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = hub.log()
        if found(log):
            return log
        time.sleep(0.05)
    raise AssertionError(f"never logged {what}:\n{hub.log()}")


def _lines(log: str, event: str) -> list[str]:
    return [line for line in log.splitlines() if f" event={event} " in line + " "]


# -- one-line errors -----------------------------------------------------------------------


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(("ssehub serve: error: ", "ssehub: error: ")), lines[0]
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "70000"], "70000 is not a TCP port"),
        (["--port", "eighty"], "'eighty' is not a port number"),
        (["--port", "-1"], "-1 is not a TCP port"),
        (["--max-body", "lots"], "--max-body"),
        (["--http", "gopher"], "--http"),
        (["--no-such-flag"], "--no-such-flag"),
        (
            ["--redis", "http://127.0.0.1:6379/0"],
            "redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://",
        ),
        (["--redis", "redis://127.0.0.1:99999/0"], "Port out of range"),
        (["--redis", "redis://127.0.0.1:6379/first"], "must be a number"),
        (["--redis", "redis:///0"], "names no host"),
    ],
)
def test_a_bad_command_line_is_one_line_on_stderr_and_status_2(
    args: list[str], needle: str
) -> None:
    _assert_one_line_error(_ssehub("serve", *args), needle)


def test_a_redis_url_refused_does_not_show_its_password() -> None:
    result = _ssehub("serve", "--redis", "redis://admin:hunter2@127.0.0.1:6379/zero")
    _assert_one_line_error(result, "admin:***@127.0.0.1")
    assert "hunter2" not in result.stderr


def test_a_port_in_use_is_one_line_naming_the_address() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _ssehub("serve", "--port", str(port))
    _assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "in use")


# -- SSEHUB_* variables --------------------------------------------------------------------


def test_help_lists_every_flag_with_its_environment_variable() -> None:
    result = _ssehub("serve", "--help")
    assert result.returncode == 0
    # Each flag's entry starts on a line of its own, indented by two spaces.
    entries = {
        entry.split()[0]: " ".join(entry.split())
        for entry in re.split(r"\n  (?=--\w)", result.stdout)[1:]
    }
    for field in fields(ServeConfig):
        flag = "--" + field.name.replace("_", "-")
        assert f"[env: {env_var(field.name)}" in entries[flag], (flag, entries[flag])


def test_every_flag_set_through_its_variable_gives_the_same_config_as_the_flag() -> None:
    environ: dict[str, str] = {}
    for flag, args in EVERY_FLAG.items():
        values = args[1::2]
        if not values:  # a switch
            environ[env_var(flag)] = "1"
        elif flag == "--cors-origin":
            environ[env_var(flag)] = ", ".join(values)
        else:
            environ[env_var(flag)] = " ".join(values)
    from_flags = _config([arg for args in EVERY_FLAG.values() for arg in args], {})
    # EVERY_FLAG sets every field to a value other than its default (tests/server/test_config).
    assert _config([], environ) == from_flags


def test_a_flag_on_the_command_line_wins_over_its_variable() -> None:
    environ = {
        "SSEHUB_PORT": "9001",
        "SSEHUB_CORS_ORIGIN": "http://a.example http://b.example",
        "SSEHUB_ACCESS_LOG": "yes",
        "SSEHUB_KEEPALIVE": "",  # empty: unset
    }
    from_env = _config([], environ)
    assert (from_env.port, from_env.cors_origin, from_env.access_log) == (
        9001,
        ("http://a.example", "http://b.example"),
        True,
    )
    assert from_env.keepalive == 15.0
    given = _config(["--port", "9002", "--cors-origin", "http://c.example"], environ)
    assert (given.port, given.cors_origin) == (9002, ("http://c.example",))
    assert _config([], {"SSEHUB_ACCESS_LOG": "off"}).access_log is False


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("SSEHUB_PORT", "70000", "70000 is not a TCP port"),
        ("SSEHUB_ACCESS_LOG", "maybe", "expected one of"),
        ("SSEHUB_HTTP", "gopher", "not one of native, uvicorn"),
        ("SSEHUB_MAX_BODY", "lots", "is not a size"),
        ("SSEHUB_ALLOWED_HOST", "ok.example, bad host\x01", "not a host name"),
        ("SSEHUB_REDIS", "http://127.0.0.1:6379/0", "is not a Redis URL"),
    ],
)
def test_a_bad_variable_is_one_line_naming_the_variable(
    variable: str, value: str, needle: str
) -> None:
    result = _ssehub("serve", env={variable: value})
    _assert_one_line_error(result, f"environment variable {variable}", needle)


def test_tokens_from_the_environment_never_show_in_help_or_logs(start_hub: HubFactory) -> None:
    tokens = {
        "SSEHUB_PUBLISH_TOKEN": "pub-s3cret",
        "SSEHUB_SUBSCRIBE_TOKEN": "sub-s3cret",
        "SSEHUB_ADMIN_TOKEN": "adm-s3cret",
    }
    shown = _ssehub("serve", "--help", env=tokens).stdout
    assert "s3cret" not in shown
    hub = start_hub(env=tokens)
    start = _lines(hub.log(), "start")[0]
    assert " auth=publish-token,subscribe-token,admin-token " in start
    assert "s3cret" not in hub.log()


# -- the start line and timestamps -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "auth"),
    [
        ([], "open"),
        (["--subscribe-token", "sub-secret"], "subscribe-token"),
        (["--publish-token", "p", "--admin-token", "a"], "publish-token,admin-token"),
    ],
)
def test_the_start_line_names_each_token_that_is_set(
    start_hub: HubFactory, args: list[str], auth: str
) -> None:
    hub = start_hub(*args)
    (start,) = _lines(hub.log(), "start")
    assert f" auth={auth} " in start
    assert "secret" not in start


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_every_line_has_one_iso_8601_utc_timestamp_format(start_hub: HubFactory, http: str) -> None:
    before = time.time()
    hub = start_hub("--http", http, "--access-log", "--log-level", "debug")
    assert httpx.post(f"{hub.url}/events/times", content="x", timeout=5).status_code == 200
    _wait_for(hub, lambda log: "POST /events/times" in log, "the access line")
    assert hub.stop() == 0
    lines = hub.log().splitlines()
    assert any("uvicorn" in line for line in lines) == (http == "uvicorn")
    for line in lines:
        match = _LINE.match(line)
        assert match, line
        # UTC: the stamp is the time the line was written, read as UTC.
        stamp = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
        assert before - 2 <= stamp <= time.time() + 1, line


# -- streams at debug ------------------------------------------------------------------------


def _open_stream(url: str, channel: str, last_event_id: str) -> socket.socket:
    """A raw stream request; returns once the response head arrived."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(
        f"GET {channel} HTTP/1.1\r\nHost: {host}\r\nLast-Event-ID: {last_event_id}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_debug_logs_each_stream_opening_and_end_with_client_reason_and_duration(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub("--http", http, "--log-level", "debug")
    sock = _open_stream(hub.url, "/events/ops", "41")
    client = "{}:{}".format(*sock.getsockname())
    log = _wait_for(hub, lambda log: "event=stream_open" in log, "the open line")
    (opened,) = _lines(log, "stream_open")
    assert f"channel=/events/ops client={client} last_event_id=41" in opened
    time.sleep(0.2)
    sock.close()
    log = _wait_for(hub, lambda log: "event=stream_end" in log, "the end line")
    (ended,) = _lines(log, "stream_end")
    match = re.search(
        rf"channel=/events/ops client={re.escape(client)} reason=disconnected "
        r"duration=(\d+\.\d{3})s$",
        ended,
    )
    assert match, ended
    assert 0.2 <= float(match.group(1)) < 10
    # A stream still open when the hub stops ends with the reason "shutdown".
    still_open = _open_stream(hub.url, "/events/ops", "42")
    _wait_for(hub, lambda log: len(_lines(log, "stream_open")) == 2, "the second open line")
    assert hub.stop() == 0
    still_open.close()
    assert "reason=shutdown" in _lines(hub.log(), "stream_end")[-1]


def test_at_info_streams_opening_and_ending_log_nothing(start_hub: HubFactory) -> None:
    hub = start_hub()
    for _ in range(3):
        _open_stream(hub.url, "/events/quiet", "1").close()
    # The streams were seen: the hub counts them (the close is seen after a round trip).
    assert httpx.post(f"{hub.url}/events/quiet", content="x", timeout=5).status_code == 200
    assert hub.stop() == 0
    log = hub.log()
    assert "stream_open" not in log and "stream_end" not in log
    assert [line.split(" event=")[1].split()[0] for line in log.splitlines()] == [
        "start",
        "stopping",
        "stop",
    ]


# -- Redis's state changes -----------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_redis_state_changes_are_logged_once_each_not_once_per_attempt(
    start_hub: HubFactory,
) -> None:
    redis = RedisServer()  # not started: the hub starts with Redis unreachable
    try:
        hub = start_hub("--redis", redis.url)
        log = hub.log()
        (unreachable,) = _lines(log, "redis_unreachable")
        assert f"url={redis.url} reason=" in unreachable
        assert "refused" in unreachable.lower()
        assert len(_lines(log, "redis_reconnecting")) == 1
        assert "WARNING ssehub.redis" in unreachable

        redis.start()
        log = _wait_for(hub, lambda log: "event=redis_connected" in log, "redis_connected")
        assert re.search(r"event=redis_connected url=\S+ down_for=\d+\.\d{3}s attempts=\d+", log)

        redis.kill()
        _wait_for(hub, lambda log: "event=redis_lost" in log, "redis_lost")
        time.sleep(4)  # many attempts (the backoff reaches 2 s), one line
        log = hub.log()
        assert len(_lines(log, "redis_lost")) == 1
        assert "reason=" in _lines(log, "redis_lost")[0]
        assert len(_lines(log, "redis_reconnecting")) == 2
        assert "backoff=0.05s max_backoff=2s" in _lines(log, "redis_reconnecting")[1]

        redis.start()
        log = _wait_for(hub, lambda log: "event=redis_recovered" in log, "redis_recovered")
        (recovered,) = _lines(log, "redis_recovered")
        attempts = int(re.search(r"attempts=(\d+)", recovered).group(1))  # type: ignore[union-attr]
        assert attempts >= 3
        redis_lines = [line for line in log.splitlines() if " ssehub.redis " in line]
        # unreachable, reconnecting, connected, lost, reconnecting, recovered: nothing per attempt.
        assert len(redis_lines) == 6, log
        assert hub.stop() == 0
    finally:
        redis.close()


@pytest.mark.redis
def test_an_unreachable_redis_is_logged_with_its_password_hidden(start_hub: HubFactory) -> None:
    url = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0"
    hub = start_hub("--redis", url)
    (unreachable,) = _lines(hub.log(), "redis_unreachable")
    assert "url=redis://ops:***@127.0.0.1:" in unreachable
    assert "hunter2" not in hub.log()
