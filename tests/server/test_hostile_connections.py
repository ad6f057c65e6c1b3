"""Hostile connections against a real ``ssehub serve`` (issue 10, the connection-level points).

Each test runs one attack over raw sockets while a healthy client (`HealthyWatch`, a process of
its own) publishes every 20 ms and reads its stream, and asserts the bound: the status the
attacker gets, that its connection is closed, the server's RSS and CPU seen from outside, and
the healthy subscriber's worst delivery delay (under 100 ms). Attacks are bounded in count,
bytes and time; timeouts are shortened by flags so that each test runs in seconds. The
figures are printed (``pytest -s``) as ``FIGURES <attack>: ...`` lines.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.hostile import (
    HealthyWatch,
    MiB,
    ResourceWatch,
    Response,
    connect,
    nofile_env,
    read_until_closed,
    readable,
)
from tests.server.hub_process import HubFactory, HubProcess


@pytest.fixture(autouse=True)
def untraced_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the attacked hub as in production: not under coverage's tracer, which slows every
    line of the server several times and would stretch the delays these tests bound."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)


pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]


# -- 1. the request head is bounded as its bytes arrive ------------------------------------


ATTACK_S = 1.5  # each attack lasts this long (repeated or held), so the healthy client sees it


def paced(count: int, period: float) -> Iterator[int]:
    """``range(count)``, one step every ``period`` seconds (an attack's steady pace)."""
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i * period - time.monotonic()))
        yield i


def endless_header_line(hub: HubProcess, deadline: float) -> tuple[Response, int]:
    """One connection sends up to 64 MiB of one header line (64 KiB chunks) until the server
    answers or ``deadline`` passes; return the answer and the bytes sent before it."""
    chunk = b"a" * (64 * 1024)
    sent = 0
    with connect(hub, timeout=2.0) as sock:
        sock.sendall(b"GET /events/x HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        while sent < 64 * MiB and time.monotonic() < deadline and not readable(sock):
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server stopped reading: it has answered
            sent += len(chunk)
        return read_until_closed(sock, timeout=5.0), sent


def test_endless_header_line_gets_431_with_flat_cpu_and_memory(start_hub: HubFactory) -> None:
    hub = start_hub()
    with HealthyWatch(hub) as watch, ResourceWatch(hub.proc.pid) as usage:
        deadline = time.monotonic() + 10.0  # the whole attack's, should the server not answer
        answers = [
            endless_header_line(hub, deadline)
            for _ in paced(75, ATTACK_S / 75)
            if time.monotonic() < deadline
        ]
    usage.report("1 endless header line")
    most = max(sent for _, sent in answers)
    print(f"FIGURES 1 endless header line: {len(answers)} attacks, at most {most / MiB:.2f} MiB")
    for answer, _ in answers:
        assert answer.status == 431, answer.raw[:200]
        assert answer.closed
    assert most < 16 * MiB  # answered after 64 KiB (and what the socket buffers held)
    assert usage.rss_delta_mib < 8
    assert usage.cpu_seconds < 1.0
    watch.check("1 endless header line")


def test_many_headers_just_under_the_limit_are_served_and_over_it_refused(
    start_hub: HubFactory,
) -> None:
    hub = start_hub()
    # 60 KiB of headers is within the 64 KiB head; 70 KiB is not.
    for size, status in ((60 * 1024, 200), (70 * 1024, 431)):
        headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(size // 1010))
        sock = connect(hub)
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n"
        )
        answer = read_until_closed(sock, timeout=5.0)
        sock.close()
        assert answer.status == status, (size, answer.raw[:200])


def open_stream(hub: HubProcess, channel: str) -> tuple[socket.socket, int]:
    """Open a stream; return its socket and the status of its response."""
    sock = connect(hub)
    sock.sendall(b"GET /events/%s HTTP/1.1\r\nHost: x\r\n\r\n" % channel.encode())
    head = b""
    deadline = time.monotonic() + 5.0
    while b"\r\n\r\n" not in head and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        head += chunk
    return sock, int(head[9:12]) if head.startswith(b"HTTP/1.1 ") else 0


def get(hub: HubProcess, path: str) -> int:
    """The status of a GET (on a connection of its own)."""
    with connect(hub) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        return read_until_closed(sock, timeout=5.0).status


# -- 2. timeouts: silent, half-sent and idle connections are closed -------------------------

TIMEOUT_FLAGS = ("--head-timeout", "1", "--body-timeout", "1", "--idle-timeout", "0.5")


class Slow:
    """One attacking connection, what it sends, and when and how the server ended it."""

    def __init__(self, hub: HubProcess, kind: str, first: bytes, drip: bytes = b"") -> None:
        self.kind = kind
        self.sock = connect(hub)
        self.sock.setblocking(False)
        self.start = time.monotonic()
        if first:
            self.sock.send(first)
        self.drip = drip
        self.raw = b""
        self.closed_after: float | None = None

    def poll(self, now: float) -> None:
        """Read what arrived; note when the server closed the connection."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.raw += chunk
        else:
            self.closed_after = now - self.start
            self.sock.close()

    def drip_one(self) -> None:
        """Send one more byte of the never-ending request (a slow client)."""
        if self.drip and self.closed_after is None:
            with contextlib.suppress(OSError):
                self.sock.send(self.drip)

    @property
    def statuses(self) -> list[int]:
        return [int(part[:3]) for part in self.raw.split(b"HTTP/1.1 ")[1:]]


def test_silent_half_sent_and_idle_connections_are_closed_by_the_timeouts(
    start_hub: HubFactory,
) -> None:
    hub = start_hub(*TIMEOUT_FLAGS)
    with HealthyWatch(hub) as watch, ResourceWatch(hub.proc.pid) as usage:
        # A stream with no events: streams are exempt from timeouts.
        quiet, status = open_stream(hub, "quiet")
        assert status == 200
        conns: list[Slow] = []
        for _ in range(75):
            conns += [
                Slow(hub, "silent", b""),
                Slow(hub, "slow head", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", drip=b"X"),
                Slow(
                    hub,
                    "slow body",
                    b"POST /events/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123",
                    drip=b"5",
                ),
                Slow(hub, "idle", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
            ]
        deadline = time.monotonic() + 4.0
        next_drip = time.monotonic()
        while time.monotonic() < deadline and any(c.closed_after is None for c in conns):
            now = time.monotonic()
            if now >= next_drip:  # a byte every 100 ms: never idle, never done
                for conn in conns:
                    conn.drip_one()
                next_drip = now + 0.1
            for conn in conns:
                if conn.closed_after is None:
                    conn.poll(now)
            time.sleep(0.01)
        for conn in conns:
            if conn.closed_after is None:
                conn.sock.close()
        time.sleep(0.2)
        assert not readable(quiet)  # still open, nothing sent: the stream outlived them all
    usage.report("2 timeouts (300 silent/slow/idle connections)")
    by_kind: dict[str, list[Slow]] = {}
    for conn in conns:
        by_kind.setdefault(conn.kind, []).append(conn)
    for kind, group in by_kind.items():
        times = [c.closed_after for c in group]
        assert all(t is not None for t in times), kind
        closed = [t for t in times if t is not None]
        print(f"FIGURES 2 {kind}: closed after {min(closed):.2f}-{max(closed):.2f} s")
        limit = 0.5 if kind == "idle" else 1.0
        # Closed after its timeout, within the timer's period (a quarter of the shortest)
        # and some scheduling slack.
        assert limit * 0.8 <= min(closed) and max(closed) <= limit + 0.6, (kind, closed)
    assert all(c.statuses == [] for c in by_kind["silent"])
    assert all(c.statuses == [408] for c in by_kind["slow head"])
    assert all(c.statuses == [408] for c in by_kind["slow body"])
    assert all(c.statuses == [200] for c in by_kind["idle"])
    assert usage.rss_delta_mib < 16
    watch.check("2 timeouts")
    # The quiet stream still delivers.
    with connect(hub) as pub:
        pub.sendall(
            b"POST /events/quiet HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Connection: close\r\n\r\nhello"
        )
        assert read_until_closed(pub, 5.0).status == 200
    quiet.settimeout(5.0)
    seen = b""
    while b"data: hello" not in seen:
        seen += quiet.recv(65536)
    quiet.close()


# -- 3. refusals from the head, before any body is buffered -----------------------------------


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_tokenless_publishes_are_refused_before_their_bodies(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub("--publish-token", "s3cret", "--max-body", "1MiB", "--http", http)
    head = (
        b"POST /events/target HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % MiB
    )
    with HealthyWatch(hub, token="s3cret") as watch, ResourceWatch(hub.proc.pid) as usage:
        socks = []
        started = time.monotonic()
        for _ in range(200):  # each: a head and 64 KiB of a 1 MiB body, then nothing
            sock = connect(hub)
            sock.sendall(head + b"x" * (64 * 1024))
            socks.append(sock)
        answers = [read_until_closed(sock, timeout=5.0) for sock in socks]
        elapsed = time.monotonic() - started
        for sock in socks:
            sock.close()
        time.sleep(max(0.0, ATTACK_S - elapsed))
    usage.report(f"3 200 tokenless 1 MiB publishes, {http}")
    print(f"FIGURES 3 tokenless publishes, {http}: all answered in {elapsed:.2f} s")
    assert [a.status for a in answers] == [401] * 200
    assert all(a.closed for a in answers)
    assert usage.rss_delta_mib < 24  # was +207 MiB: the bodies are never buffered
    watch.check(f"3 tokenless publishes, {http}")


def send_head(hub: HubProcess, head: bytes, body: bytes = b"") -> Response:
    """Send a request head with ``Expect: 100-continue``; return what the server says to the
    head alone (and, when it invites the body, to ``body`` too)."""
    with connect(hub) as sock:
        sock.sendall(head)
        first = b""
        deadline = time.monotonic() + 2.0
        while b"\r\n\r\n" not in first and time.monotonic() < deadline:
            if readable(sock):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                first += chunk
            else:
                time.sleep(0.005)
        if first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and body:
            sock.sendall(body)
        rest = read_until_closed(sock, timeout=2.0)
    raw = first + rest.raw
    statuses = [int(part[:3]) for part in raw.split(b"HTTP/1.1 ")[1:]]
    return Response(statuses[-1] if statuses else 0, raw, rest.closed, statuses)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"POST /events/a HTTP/1.1\r\nContent-Length: 100\r\n", 401),
        (b"POST /events/a HTTP/1.1\r\nAuthorization: Bearer wrong\r\nContent-Length: 100\r\n", 401),
        (
            b"POST /events/a HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 5000\r\n",
            413,
        ),
        (
            b"POST /events/a HTTP/1.1\r\nAuthorization: Bearer s3cret\r\nContent-Length: 100\r\n"
            b"Content-Encoding: gzip\r\n",
            415,
        ),
        (b"POST /nowhere HTTP/1.1\r\nContent-Length: 100\r\n", 404),
        (b"PUT /events/a HTTP/1.1\r\nContent-Length: 100\r\n", 405),
        (b"POST /broadcast HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", 401),
    ],
)
def test_a_refused_head_gets_its_answer_without_100_continue(
    start_hub: HubFactory, request_head: bytes, status: int
) -> None:
    hub = start_hub("--publish-token", "s3cret", "--max-body", "4096")
    answer = send_head(hub, request_head + b"Host: x\r\nExpect: 100-continue\r\n\r\n")
    assert answer.statuses == [status], answer.raw[:300]  # no 100 Continue before it
    assert answer.closed
    assert answer.raw.endswith(b"}")  # the JSON error body


def test_an_accepted_head_gets_100_continue_then_its_answer(start_hub: HubFactory) -> None:
    hub = start_hub("--publish-token", "s3cret", "--max-body", "4096")
    answer = send_head(
        hub,
        b"POST /events/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n"
        b"Content-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body=b"hello",
    )
    assert answer.statuses == [100, 200], answer.raw[:300]


# -- 12. connection caps and HTTP versions ---------------------------------------------------


@pytest.mark.parametrize("http", ["native", "uvicorn"])
def test_max_clients_refuses_new_streams_but_not_publishes_or_reads(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub("--max-clients", "21", "--http", http)
    with HealthyWatch(hub) as watch, ResourceWatch(hub.proc.pid) as usage:  # 1 stream
        streams = [open_stream(hub, f"cap-{i}") for i in range(20)]
        assert [status for _, status in streams] == [200] * 20
        refused = []
        for _ in paced(75, ATTACK_S / 75):
            sock, status = open_stream(hub, "one-too-many")
            sock.close()
            refused.append(status)
            assert get(hub, "/healthz") == 200
        # One stream leaves: a new one gets in.
        streams.pop()[0].close()
        time.sleep(0.2)
        sock, status = open_stream(hub, "cap-again")
        sock.close()
        assert status == 200
        for s, _ in streams:
            s.close()
    usage.report(f"12 max-clients, {http} ({len(refused)} refused streams)")
    assert refused == [503] * 75
    watch.check(f"12 max-clients, {http}")


def test_default_stream_cap_keeps_descriptors_for_publishes_and_health(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = start_hub(env=nofile_env(tmp_path, 256))  # cap: 256 - 64 reserved = 192 streams
    assert "max_clients=192" in hub.log()
    with HealthyWatch(hub) as watch, ResourceWatch(hub.proc.pid) as usage:  # 1 stream
        streams = []
        for i in range(300):
            sock, status = open_stream(hub, f"fd-{i}")
            streams.append(sock)
            if status != 200:
                assert status == 503
                break
        assert len(streams) == 192  # 191 here and the watcher's, then a 503
        for _ in paced(30, ATTACK_S / 30):
            assert get(hub, "/healthz") == 200
            assert get(hub, "/channels") == 200
        for sock in streams:
            sock.close()
    usage.report("12 default cap (191 streams + 1 refused)")
    watch.check("12 default cap")


def test_running_out_of_descriptors_logs_one_warning_and_recovers(
    start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = start_hub("--max-clients", "1000", "--head-timeout", "2", env=nofile_env(tmp_path, 128))
    assert "event=config_warning max_clients=1000" in hub.log()
    with HealthyWatch(hub) as watch, ResourceWatch(hub.proc.pid) as usage:
        silent = []
        for _ in range(200):  # more than the hub's 128 descriptors
            try:
                silent.append(connect(hub, timeout=0.5))
            except OSError:
                break
        time.sleep(ATTACK_S)
        for sock in silent:
            sock.close()
        time.sleep(0.3)
    usage.report("12 out of descriptors (200 silent connections, limit 128)")
    warnings = [line for line in hub.log().splitlines() if "event=accept_failed" in line]
    print(f"FIGURES 12 out of descriptors: {len(warnings)} warning line(s): {warnings}")
    assert len(warnings) == 1
    assert "Traceback" not in hub.log()
    assert get(hub, "/healthz") == 200
    watch.check("12 out of descriptors")


@pytest.mark.parametrize(
    "request_line",
    [b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"],
)
def test_http2_request_line_gets_505(start_hub: HubFactory, request_line: bytes) -> None:
    hub = start_hub()
    with HealthyWatch(hub) as watch:
        answers = []
        for _ in paced(150, ATTACK_S / 150):
            with connect(hub) as sock:
                sock.sendall(request_line)
                answers.append(read_until_closed(sock, timeout=2.0))
    assert {(a.status, a.closed) for a in answers} == {(505, True)}
    assert get(hub, "/healthz") == 200
    watch.check("12 HTTP/2.0 request line")
