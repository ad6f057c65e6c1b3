"""The RedisServer test fixture really starts, crashes, restarts and stops a redis-server."""

from __future__ import annotations

import os
import socket

import pytest

from tests._support import free_port
from tests._support.redis_server import RedisServer, RedisServerError

pytestmark = pytest.mark.redis


def _command(port: int, *parts: bytes) -> bytes:
    """Send one RESP command to 127.0.0.1:port and return the first reply line."""
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    return reply


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that was reaped is gone; an unreaped zombie would still count as alive,
    # which is exactly what the fixture must not leave behind.
    return True


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_server_answers_ping_and_keeps_data_until_killed() -> None:
    with RedisServer() as redis:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        assert redis.running and redis.ping()
        assert _command(redis.port, b"SET", b"greeting", b"hello") == b"+OK\r\n"
        assert _command(redis.port, b"GET", b"greeting") == b"$5\r\nhello\r\n"


def test_kill_then_start_restarts_on_the_same_port_with_no_data() -> None:
    with RedisServer() as redis:
        port = redis.port
        first_pid = redis.pid
        assert first_pid is not None
        _command(port, b"SET", b"k", b"v")

        redis.kill()
        assert not redis.running
        assert not _alive(first_pid)
        assert not redis.ping(timeout=0.2)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()

        redis.start()
        assert redis.port == port
        assert redis.pid not in (None, first_pid)
        assert redis.ping()
        # Nothing is persisted: the restarted server is empty.
        assert _command(port, b"GET", b"k") == b"$-1\r\n"


def test_stop_ends_the_process_and_frees_the_port() -> None:
    redis = RedisServer().start()
    pid = redis.pid
    assert pid is not None
    redis.close()
    assert not redis.running
    assert not _alive(pid)
    assert not redis.ping(timeout=0.2)
    # The port can be bound again by someone else.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", redis.port))
    redis.close()  # closing twice is harmless


def test_starting_a_running_server_again_is_an_error() -> None:
    with RedisServer() as redis, pytest.raises(RedisServerError, match="already running"):
        redis.start()


def test_a_port_held_by_another_server_is_reported_with_the_log() -> None:
    with RedisServer() as first:
        second = RedisServer(port=first.port, startup_timeout=5)
        with pytest.raises(RedisServerError, match="Address already in use"):
            second.start()
        second.close()
        assert first.ping()
