"""Hostile content against a real ``ssehub serve``: each attack gets its bounded answer, and a
healthy subscriber keeps getting its events within 100 ms while the attack runs (issue 10,
points 4, 7, 8, 9, 10 and 11)."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import pytest

from tests.server.hostile import (
    HealthyProbe,
    ResponseReader,
    address,
    connect,
    error_of,
    exchange,
    repeat_for,
    request_bytes,
)
from tests.server.hub_process import HubFactory, HubProcess


@pytest.fixture(autouse=True)
def untraced_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the attacked hub as in production: not under coverage's tracer, which slows every
    line of the server several times and would stretch the delays these tests bound."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)


pytestmark = pytest.mark.timeout(60)

JSON = [("Content-Type", "application/json")]


def _channel() -> str:
    return f"/events/h-{uuid.uuid4().hex[:8]}"


class RawStream:
    """An open event stream read off a plain socket."""

    def __init__(self, hub: HubProcess, path: str, host: str = "127.0.0.1") -> None:
        self.sock = connect(hub, timeout=5)
        self.sock.sendall(request_bytes("GET", path, host=host))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the stream was refused"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def read_until(self, needle: bytes, timeout: float = 5.0) -> bytes:
        """Everything up to and including ``needle``."""
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"the stream ended before {needle!r}: {self.buf[-200:]!r}")
            self.buf += chunk
        before, _, self.buf = self.buf.partition(needle)
        return before + needle

    def close(self) -> None:
        self.sock.close()


def _wait_clients(
    hub: HubProcess, channel: str, count: int, headers: list[tuple[str, str]]
) -> None:
    for _ in range(250):
        status, _, body = exchange(hub, request_bytes("GET", "/channels", headers=headers))
        listed = json.loads(body)["channels"] if status == 200 else []
        if any(c["channel"] == channel and c["clients"] >= count for c in listed):
            return
        time.sleep(0.02)
    raise AssertionError(f"{channel} never had {count} clients")


# -- point 4: bounded work per request -----------------------------------------------------


def test_a_batch_over_max_batch_gets_413_quickly_and_publishes_nothing(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--max-body", "4MiB")
    channel = _channel()
    stream = RawStream(hub, channel)
    batch = json.dumps([{"data": f"item {i}"} for i in range(80_000)]).encode()
    attack = request_bytes("POST", channel, batch, JSON)

    def timed() -> tuple[float, tuple[int, dict[str, str], bytes]]:
        started = time.monotonic()
        answer = exchange(hub, attack)
        return time.monotonic() - started, answer

    with HealthyProbe(hub, "batch of 80k items (max 1000), repeated 1 s") as probe:
        answers = repeat_for(1.0, timed, most=50)
    for took, (status, _, body) in answers:
        assert status == 413, body
        assert "at most 1000 messages" in error_of(body)
        assert took < 1.0
    probe.check()
    # Nothing of it was published: the next event on the channel is the one after.
    assert exchange(hub, request_bytes("POST", channel, b"after"))[0] == 200
    assert b"item 0" not in stream.read_until(b"data: after\n")
    stream.close()


def test_max_batch_is_a_flag_and_a_batch_at_the_cap_is_published(start_hub: HubFactory) -> None:
    hub = start_hub("--max-batch", "5")
    channel = _channel()
    stream = RawStream(hub, channel)
    five = json.dumps([{"data": f"n{i}"} for i in range(5)]).encode()
    six = json.dumps([{"data": f"s{i}"} for i in range(6)]).encode()
    status, _, body = exchange(hub, request_bytes("POST", channel, six, JSON))
    assert status == 413 and "at most 5 messages, got 6" in error_of(body)
    assert exchange(hub, request_bytes("POST", channel, five, JSON))[0] == 200
    got = stream.read_until(b"data: n4\n")
    assert b"data: s0" not in got and b"data: n0" in got
    stream.close()


# -- point 7: an event larger than a client's buffer ---------------------------------------


def test_an_event_larger_than_the_client_buffer_is_refused_and_nobody_is_dropped(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--max-buffer", "64KiB", "--max-body", "1MiB")
    channel = _channel()
    streams = [RawStream(hub, channel) for _ in range(3)]
    _wait_clients(hub, channel, 3, [])
    with HealthyProbe(hub, "event over --max-buffer") as probe:
        big = exchange(hub, request_bytes("POST", channel, b"x" * 300_000))
        # Encoding multiplies line breaks ("\n" -> "\ndata: "): 60 KB of them is ~420 KB.
        lines = exchange(hub, request_bytes("POST", channel, b"\n" * 60_000))
        batch = json.dumps([{"data": "small"}, {"data": "y" * 100_000}]).encode()
        in_batch = exchange(hub, request_bytes("POST", channel, batch, JSON))
        fits = exchange(hub, request_bytes("POST", channel, b"z" * 60_000))
    probe.check()
    for status, _, body in (big, lines):
        assert status == 413, body
        assert "larger than a client's buffer of 65536 bytes" in error_of(body)
    assert in_batch[0] == 413 and error_of(in_batch[2]).startswith("item 1:")
    assert fits[0] == 200
    # Every subscriber is still there and gets the event that fits, then the next one; the
    # refused ones (and the refused batch's first item) never arrive.
    assert exchange(hub, request_bytes("POST", channel, b"next"))[0] == 200
    for stream in streams:
        got = stream.read_until(b"data: next\n")
        assert b"z" * 60_000 in got
        assert b"xxxx" not in got and b"small" not in got
        stream.close()


# -- point 8: valid JSON that cannot be encoded --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": "lone \\ud800 surrogate"}',
        b'{"data": "x", "id": "\\udfff"}',
        b'{"data": "x", "event": "a\\ud83d"}',
        b'[{"data": "fine"}, {"data": "\\ud800"}]',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"data": "x", "event": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
    ids=["data", "id", "event", "batch", "nested-array", "nested-field"],
)
def test_json_that_cannot_be_encoded_gets_400_and_publishes_nothing(
    start_hub: HubFactory, body: bytes
) -> None:
    hub = start_hub()
    channel = _channel()
    stream = RawStream(hub, channel)
    attack = request_bytes("POST", channel, body, JSON)
    with HealthyProbe(hub, f"unencodable JSON ({body[:20]!r}), repeated 0.3 s") as probe:
        answers = repeat_for(0.3, lambda: exchange(hub, attack), most=100)
    probe.check()
    assert len({a[0] for a in answers}) == 1
    status, _, answer = answers[0]
    assert status == 400, answer
    error = error_of(answer)
    assert "surrogate" in error or "nested too deeply" in error or "malformed JSON" in error
    assert exchange(hub, request_bytes("POST", channel, b"after"))[0] == 200
    got = stream.read_until(b"data: after\n")
    assert b"fine" not in got  # the batch's valid first item was not published either
    stream.close()
    assert "Traceback" not in hub.log()


# -- point 9: channel names ----------------------------------------------------------------


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_an_encoded_slash_names_another_channel_and_bad_utf8_gets_400(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub("--http", http)
    base = f"/events/n-{uuid.uuid4().hex[:6]}"
    encoded = RawStream(hub, base + "/a%2Fb")
    plain = RawStream(hub, base + "/a/b")
    unicode = RawStream(hub, base + "/caf%C3%A9")
    with HealthyProbe(hub, f"channel names ({http})") as probe:
        assert exchange(hub, request_bytes("POST", base + "/a/b", b"to-plain"))[0] == 200
        assert exchange(hub, request_bytes("POST", base + "/a%2fb", b"to-encoded"))[0] == 200
        assert exchange(hub, request_bytes("POST", base + "/caf%c3%a9", b"to-cafe"))[0] == 200
        refused = [
            exchange(hub, request_bytes(method, base + path, b"x" if method == "POST" else b""))
            for method in ("GET", "POST")
            for path in ("/%ff", "/%fe", "/%C3", "/%ED%A0%80")
        ]
    probe.check()
    assert plain.read_until(b"\n\n").endswith(b"data: to-plain\n\n")
    assert encoded.read_until(b"\n\n").endswith(b"data: to-encoded\n\n")
    assert unicode.read_until(b"\n\n").endswith(b"data: to-cafe\n\n")
    for status, _, body in refused:
        assert status == 400, body
        assert "not UTF-8" in error_of(body)
    status, _, body = exchange(hub, request_bytes("GET", "/channels"))
    names = {c["channel"] for c in json.loads(body)["channels"]}
    assert {base + "/a%2Fb", base + "/a/b", base + "/café"} <= names
    for stream in (encoded, plain, unicode):
        stream.close()


# -- point 10: logs --------------------------------------------------------------------------


def _log_lines(hub: HubProcess, needle: str) -> list[str]:
    for _ in range(100):
        lines = [line for line in hub.log().splitlines() if needle in line]
        if lines:
            return lines
        time.sleep(0.02)
    raise AssertionError(f"nothing logged with {needle!r}:\n{hub.log()}")


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_logged_values_cannot_forge_lines_and_tokens_are_never_logged(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub(
        "--http", http, "--access-log", "--subscribe-token", "s3cret-sub", "--admin-token", "adm1n"
    )
    forged = "/events/x%0a2099-01-01T00:00:00 INFO ssehub.server event=start url=http://evil%0d"
    forged = forged.replace(" ", "%20")
    with HealthyProbe(
        hub, f"log forging ({http})", headers=[("Authorization", "Bearer s3cret-sub")]
    ) as probe:
        assert exchange(hub, request_bytes("POST", forged, b"{", JSON))[0] == 400
        assert exchange(hub, request_bytes("GET", "/events/y%1b[31m?token=s3cret-sub"))[0] == 200
        assert exchange(hub, request_bytes("GET", "/channels?token=adm1n"))[0] == 200
        assert exchange(hub, request_bytes("GET", "/channels?x=1&token=wrong-one"))[0] == 401
    probe.check()
    lines = _log_lines(hub, "event=publish_rejected status=400 target=/events/x")
    assert "target=/events/x\\n2099-01-01T00:00:00 INFO" in lines[0]
    assert "url=http://evil\\r" in lines[0]
    log = hub.log()
    assert not re.search(r"^2099-01-01", log, re.MULTILINE)
    assert "\x1b" not in log and "\r" not in log
    for token in ("s3cret-sub", "adm1n", "wrong-one"):
        assert token not in log
    if http == "uvicorn":
        assert "token=***" in log  # the access log keeps the request, not the token


# -- point 11: exposure ----------------------------------------------------------------------


def test_a_subscribe_token_protects_channels_metrics_and_dashboard_stats(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--subscribe-token", "sub")
    bearer = [("Authorization", "Bearer sub")]
    with HealthyProbe(hub, "admin routes with a subscribe token", headers=bearer) as probe:
        for path in ("/channels", "/metrics", "/dashboard/stats"):
            status, headers, body = exchange(hub, request_bytes("GET", path))
            assert status == 401, (path, body)
            assert "admin token" in error_of(body)
            assert headers["www-authenticate"].startswith("Bearer")
        assert exchange(hub, request_bytes("GET", "/channels", headers=bearer))[0] == 200
        assert exchange(hub, request_bytes("GET", "/metrics?token=sub"))[0] == 200
        stats = RawStream(hub, "/dashboard/stats?token=sub")
        assert stats.status == 200
        assert b"event: stats" in stats.read_until(b"\n\n")
        stats.close()
        # The page itself holds no data; it reads its statistics with the token.
        assert exchange(hub, request_bytes("GET", "/"))[0] == 200
        assert exchange(hub, request_bytes("GET", "/healthz"))[0] == 200
    probe.check()


def test_an_admin_token_replaces_the_subscribe_token_and_metrics_can_be_public(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--subscribe-token", "sub", "--admin-token", "adm", "--public-metrics")
    assert exchange(hub, request_bytes("GET", "/channels?token=sub"))[0] == 401
    assert exchange(hub, request_bytes("GET", "/channels?token=adm"))[0] == 200
    assert exchange(hub, request_bytes("GET", "/metrics"))[0] == 200
    assert exchange(hub, request_bytes("GET", "/dashboard/stats"))[0] == 401
    open_hub = start_hub("--admin-token", "adm")
    assert exchange(open_hub, request_bytes("GET", "/channels"))[0] == 401
    assert exchange(open_hub, request_bytes("GET", "/metrics"))[0] == 401


def test_an_open_hub_refuses_a_cross_site_publish(start_hub: HubFactory) -> None:
    hub = start_hub("--cors-origin", "https://app.example")
    host, port = address(hub)
    channel = _channel()
    stream = RawStream(hub, channel)
    text = [("Content-Type", "text/plain")]
    with HealthyProbe(hub, "cross-site publish") as probe:
        evil = exchange(
            hub,
            request_bytes("POST", channel, b"evil", [*text, ("Origin", "https://evil.example")]),
        )
        null = exchange(hub, request_bytes("POST", channel, b"null", [("Origin", "null")]))
        broadcast = exchange(
            hub, request_bytes("POST", "/broadcast", b"evil-all", [("Origin", "http://x.test")])
        )
        same = exchange(
            hub,
            request_bytes(
                "POST", channel, b"same", [("Origin", f"http://{host}:{port}")], f"{host}:{port}"
            ),
        )
        listed = exchange(
            hub, request_bytes("POST", channel, b"listed", [("Origin", "https://app.example")])
        )
        no_origin = exchange(hub, request_bytes("POST", channel, b"server-side"))
    probe.check()
    for status, _, body in (evil, null, broadcast):
        assert status == 403, body
        assert "not allowed" in error_of(body)
    assert [same[0], listed[0], no_origin[0]] == [200, 200, 200]
    got = stream.read_until(b"data: server-side\n")
    assert b"evil" not in got and b"data: null" not in got
    assert b"data: same" in got and b"data: listed" in got
    stream.close()
    # With a publish token, the token is the defence: an Origin does not matter.
    guarded = start_hub("--publish-token", "pub")
    answer = exchange(
        guarded,
        request_bytes(
            "POST",
            channel,
            b"x",
            [("Origin", "https://evil.example"), ("Authorization", "Bearer pub")],
        ),
    )
    assert answer[0] == 200


def test_allowed_host_refuses_other_hosts(start_hub: HubFactory) -> None:
    hub = start_hub("--allowed-host", "hub.example", "--allowed-host", ".internal.test")
    _, port = address(hub)
    with HealthyProbe(hub, "DNS rebinding (Host)", host=f"hub.example:{port}") as probe:
        for host in ("127.0.0.1", f"127.0.0.1:{port}", "evil.example", "hub.example.evil"):
            for method, path in (("GET", "/channels"), ("POST", "/events/x"), ("GET", "/events/x")):
                status, _, body = exchange(hub, request_bytes(method, path, b"", host=host))
                assert status == 400, (host, method, path, body)
                assert "Host" in error_of(body)
        for host in ("hub.example", f"HUB.example:{port}", "a.internal.test"):
            assert exchange(hub, request_bytes("GET", "/channels", host=host))[0] == 200
    probe.check()
    # A missing Host is refused as well.
    with socket.create_connection(address(hub), timeout=5) as sock:
        sock.sendall(b"GET /channels HTTP/1.0\r\n\r\n")
        assert ResponseReader(sock).read()[0] == 400
