"""``ssehub serve``'s flags become one `ServeConfig`, and every option reaches the workers."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import pytest

import ssehub
from ssehub.server.cli import INTERNAL_DESTS, build_parser
from ssehub.server.config import CLIError, ServeConfig
from ssehub.server.supervisor import read_worker_config, worker_message

# A command line that sets every serve option to a value other than its default.
EVERY_FLAG = {
    "--host": ["--host", "::1"],
    "--port": ["--port", "9123"],
    "--workers": ["--workers", "3"],
    "--http": ["--http", "uvicorn"],
    "--cors-origin": ["--cors-origin", "http://a.example", "--cors-origin", "*"],
    "--history": ["--history", "7"],
    "--history-ttl": ["--history-ttl", "2.5"],
    "--retry": ["--retry", "1500"],
    "--keepalive": ["--keepalive", "0"],
    "--max-body": ["--max-body", "2KiB"],
    "--max-buffer": ["--max-buffer", "1MiB"],
    "--max-clients": ["--max-clients", "500"],
    "--head-timeout": ["--head-timeout", "3"],
    "--body-timeout": ["--body-timeout", "4"],
    "--idle-timeout": ["--idle-timeout", "0"],
    "--redis": ["--redis", "redis://127.0.0.1:6390/2"],
    "--redis-key-ttl": ["--redis-key-ttl", "3600"],
    "--publish-token": ["--publish-token", "pub-secret"],
    "--subscribe-token": ["--subscribe-token", "sub-secret"],
    "--allowed-host": ["--allowed-host", "hub.example", "--allowed-host", ".example.org"],
    "--history-bytes": ["--history-bytes", "1MiB"],
    "--history-memory": ["--history-memory", "64MiB"],
    "--max-batch": ["--max-batch", "10"],
    "--admin-token": ["--admin-token", "admin-secret"],
    "--jwt-secret": ["--jwt-secret", "a-jwt-secret-of-at-least-32-bytes"],
    # The PEM itself (the flag takes a file, or the key as text).
    "--jwt-public-key": ["--jwt-public-key", "-----BEGIN PUBLIC KEY-----\nAAAA"],
    "--require-subscriber-token": ["--require-subscriber-token"],
    "--mercure": ["--mercure", "off"],
    "--public-metrics": ["--public-metrics"],
    "--metrics-channels": ["--metrics-channels", "5"],
    "--log-level": ["--log-level", "debug"],
    "--access-log": ["--access-log"],
    "--presence": ["--presence"],
    "--data": ["--data", "/var/lib/ssehub"],
    "--fsync": ["--fsync", "always"],
    "--stream-rate": ["--stream-rate", "500"],
}


def _parse(argv: list[str]) -> ServeConfig:
    return ServeConfig.from_args(build_parser().parse_args(argv), ignore=INTERNAL_DESTS)


@pytest.fixture(autouse=True)
def _no_token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSEHUB_PUBLISH_TOKEN", raising=False)
    monkeypatch.delenv("SSEHUB_SUBSCRIBE_TOKEN", raising=False)
    monkeypatch.delenv("SSEHUB_ADMIN_TOKEN", raising=False)
    for name in ("JWT_SECRET", "JWT_PUBLIC_KEY", "REQUIRE_SUBSCRIBER_TOKEN", "MERCURE"):
        monkeypatch.delenv(f"SSEHUB_{name}", raising=False)


def test_every_serve_option_is_a_config_field() -> None:
    # Every destination the parser fills in (defaults included), bar the internal ones.
    dests = vars(build_parser().parse_args(["serve"])).keys() - INTERNAL_DESTS
    assert dests == {f.name for f in fields(ServeConfig)}


def test_every_option_set_on_the_command_line_reaches_a_worker_unchanged() -> None:
    default = _parse(["serve"])
    given = _parse(["serve", *(arg for args in EVERY_FLAG.values() for arg in args)])
    for field in fields(ServeConfig):
        # A field left at its default here is a flag missing from EVERY_FLAG.
        assert getattr(given, field.name) != getattr(default, field.name), field.name
    assert given.cors_origin == ("http://a.example", "*")
    assert given.max_body == 2048

    read_fd, write_fd = os.pipe()
    with open(write_fd, "wb") as pipe:
        pipe.write(worker_message(given, ready_fd=42))
    received, ready_fd = read_worker_config(read_fd)
    assert received == given
    assert ready_fd == 42
    assert ServeConfig.from_json(given.to_json()) == given


def test_tokens_from_the_environment_land_in_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSEHUB_PUBLISH_TOKEN", "from-env")
    monkeypatch.setenv("SSEHUB_SUBSCRIBE_TOKEN", "watch-env")
    config = _parse(["serve"])
    assert (config.publish_token, config.subscribe_token) == ("from-env", "watch-env")


def test_a_parsed_option_missing_from_the_config_fails_loudly() -> None:
    args = build_parser().parse_args(["serve"])
    args.new_flag = 1
    with pytest.raises(TypeError, match="new_flag"):
        ServeConfig.from_args(args, ignore=INTERNAL_DESTS)


def test_a_config_missing_a_field_is_refused() -> None:
    values = _parse(["serve"]).to_dict()
    del values["redis"]
    with pytest.raises(ValueError, match="redis"):
        ServeConfig.from_dict(values)


@pytest.mark.parametrize("payload", [b"", b"[1]", b'{"config": {}, "ready_fd": 3}', b"\xff"])
def test_a_worker_without_a_valid_config_is_a_clear_error(payload: bytes) -> None:
    read_fd, write_fd = os.pipe()
    with open(write_fd, "wb") as pipe:
        pipe.write(payload)
    with pytest.raises(CLIError, match="--worker-config-fd"):
        read_worker_config(read_fd)


def test_version_flag_names_the_installed_version_which_matches_the_package() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ssehub", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"ssehub {ssehub.__version__}"
