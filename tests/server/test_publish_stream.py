"""The streaming publish (NDJSON over one long POST): the line rules as data, then the route and
its bounds against a real ``ssehub serve`` process, attacks included."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from ssehub.server.publish import PublishError
from ssehub.server.publish_stream import Lines, LineTooLong, accepted, parse_line, refused
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory, HubProcess, wait_clients

# -- the rules, without a socket -------------------------------------------------------------


def test_lines_split_on_lf_and_keep_the_unfinished_line() -> None:
    lines = Lines(100)
    assert lines.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert lines.pending == 4
    assert lines.feed(b":2}\r\n\n") == [b'{"b":2}\r', b""]
    assert lines.end() == b""


def test_a_line_without_end_is_refused_once_it_passes_the_limit() -> None:
    lines = Lines(10)
    assert lines.feed(b"0123456789") == []
    assert lines.feed(b"x") == []
    assert lines.too_long is not None and lines.too_long.status == 413
    assert lines.pending == 0  # nothing of it is held
    with pytest.raises(LineTooLong):
        lines.feed(b"more")


def test_the_lines_before_an_over_long_one_in_the_same_chunk_are_kept() -> None:
    lines = Lines(10)
    assert lines.feed(b'{"a":1}\n' + b"x" * 11 + b'\n{"b":2}\n') == [b'{"a":1}']
    assert lines.too_long is not None


def test_a_line_names_its_channels_on_post_events_and_none_on_a_channel_route() -> None:
    publication = parse_line(b'{"channel": "/events/a", "data": "x", "id": "7"}', None)
    assert publication is not None and publication.channels == ("/events/a",)
    assert publication.message.id == "7"
    both = parse_line(b'{"channels": ["/events/a", "/events/b"], "data": 1}', None)
    assert both is not None and both.channels == ("/events/a", "/events/b")
    assert both.message.data == "1"
    assert parse_line(b"  \r", None) is None
    with pytest.raises(PublishError, match="names no channel"):
        parse_line(b'{"channel": "/events/b", "data": "x"}', "/events/a")
    with pytest.raises(PublishError, match="names"):
        parse_line(b'{"data": "x"}', None)


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"not json", 400),
        (b"[1]", 400),
        (b'{"data": "x", "id": "a\\nb"}', 400),
        (b'{"data": "x", "unknown": 1}', 400),
        (b'{"data": "\xff"}', 415),
        (b'{"channel": "*", "data": "x"}', 400),
    ],
)
def test_a_bad_line_is_a_clear_error(line: bytes, status: int) -> None:
    channel = None if b"channel" in line else "/events/a"
    with pytest.raises(PublishError) as error:
        parse_line(line, channel)
    assert error.value.status == status


def test_answer_lines_are_one_json_object_each() -> None:
    assert json.loads(accepted("1-1")) == {"id": "1-1"}
    assert json.loads(accepted("x", duplicate=True)) == {"id": "x", "duplicate": True}
    assert json.loads(refused(400, "bad", 3)) == {"error": "bad", "status": 400, "line": 3}
    assert json.loads(refused(408, "late", 4, end=True))["end"] is True


# -- a real hub ------------------------------------------------------------------------------

MAX_LINE = 4096
LINE_TIMEOUT = 1.5


@pytest.fixture(scope="module")
def stream_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with a small line limit and a short line timeout, so both are cheap to cross."""
    process = HubProcess(
        ["--max-body", str(MAX_LINE), "--body-timeout", str(LINE_TIMEOUT)],
        tmp_path_factory.mktemp("stream-hub"),
    )
    yield process
    assert process.stop() == 0, process.log()


class RawStream:
    """A streaming publish written by hand over a socket (chunked), answers read as they come."""

    def __init__(self, url: str, path: str, headers: dict[str, str] | None = None) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
        )
        self.received = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))

    def end(self) -> None:
        self.sock.sendall(b"0\r\n\r\n")

    def answers(self) -> list[dict[str, object]]:
        """The answer lines received so far (the chunk framing removed)."""
        _head, _, body = self.received.partition(b"\r\n\r\n")
        text, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16) if size_line else 0
            if size == 0:
                break
            text += rest[:size]
            rest = rest[size + 2 :]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def read_until(self, count: int, timeout: float = 10.0) -> list[dict[str, object]]:
        """Read until ``count`` answer lines arrived, or the connection ends."""
        deadline = time.monotonic() + timeout
        while len(self.answers()) < count and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            self.received += data
        return self.answers()

    def read_to_end(self, timeout: float = 10.0) -> bool:
        """Read until the hub closes the connection; True when it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.received += data
        return False

    def status(self) -> int:
        return int(self.received.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


async def test_each_line_is_published_in_order_and_answered_with_its_id(
    stream_hub: HubProcess,
) -> None:
    async with open_sse(stream_hub.url + "/events/ndjson-order") as sse:
        async with httpx.AsyncClient(base_url=stream_hub.url) as client:
            await wait_clients(client, "/events/ndjson-order", 1)
        raw = RawStream(stream_hub.url, "/events/ndjson-order")
        try:
            raw.send(b"".join(b'{"data": "m%d"}\n' % i for i in range(50)))
            raw.send(b'{"data": "last", "event": "done", "id": "mine-1"}\n')
            answers = await asyncio.to_thread(raw.read_until, 51)
            raw.end()
        finally:
            raw.close()
        assert raw.status() == 200
        assert len(answers) == 51 and answers[-1] == {"id": "mine-1"}
        events = await sse.events(51)
    assert [e.data for e in events] == [f"m{i}" for i in range(50)] + ["last"]
    assert [e.id for e in events] == [a["id"] for a in answers]
    assert events[-1].event == "done"


async def test_a_bad_line_gets_an_error_line_and_the_stream_goes_on(
    stream_hub: HubProcess,
) -> None:
    async with open_sse(stream_hub.url + "/events/ndjson-bad") as sse:
        async with httpx.AsyncClient(base_url=stream_hub.url) as client:
            await wait_clients(client, "/events/ndjson-bad", 1)
        raw = RawStream(stream_hub.url, "/events")
        try:
            raw.send(
                b'{"channel": "/events/ndjson-bad", "data": "one"}\n'
                b"{broken\n"
                b'{"channel": "/events/ndjson-bad", "data": "x", "id": "a\\u0000"}\n'
                b"\n"  # blank: not answered
                b'{"channel": "/events/ndjson-bad", "data": "two"}\n'
            )
            answers = await asyncio.to_thread(raw.read_until, 4)
            raw.end()
        finally:
            raw.close()
        assert "id" in answers[0] and "id" in answers[3]
        assert answers[1]["status"] == 400 and answers[1]["line"] == 2
        assert "malformed JSON" in str(answers[1]["error"])
        assert answers[2]["status"] == 400 and answers[2]["line"] == 3
        events = await sse.events(2)
    assert [e.data for e in events] == ["one", "two"]


async def test_an_over_long_line_ends_the_stream_and_keeps_what_was_accepted(
    stream_hub: HubProcess,
) -> None:
    async with open_sse(stream_hub.url + "/events/ndjson-long") as sse:
        async with httpx.AsyncClient(base_url=stream_hub.url) as client:
            await wait_clients(client, "/events/ndjson-long", 1)
        raw = RawStream(stream_hub.url, "/events/ndjson-long")
        try:
            raw.send(b'{"data": "kept"}\n')
            raw.send(b'{"data": "' + b"x" * (MAX_LINE + 10) + b'"}\n')
            closed = await asyncio.to_thread(raw.read_to_end, 10)
        finally:
            raw.close()
        answers = raw.answers()
        assert closed
        assert "id" in answers[0]
        assert answers[1]["status"] == 413 and answers[1]["line"] == 2
        assert answers[1]["end"] is True
        assert (await sse.next_event()).data == "kept"


async def test_a_never_ending_line_is_cut_at_the_limit_not_buffered(
    stream_hub: HubProcess,
) -> None:
    raw = RawStream(stream_hub.url, "/events/ndjson-endless")
    sent = 0
    try:
        # Bytes without a newline, a chunk at a time, until the hub answers: it ends the line
        # once it passes the limit, long before this much is sent.
        raw.sock.setblocking(False)
        while sent < 4000 * 1024 and not raw.answers():
            try:
                raw.send(b"y" * 1024)
                sent += 1024
            except BlockingIOError:
                pass
            except OSError:
                break
            await asyncio.sleep(0.001)
            with contextlib.suppress(BlockingIOError):
                raw.received += raw.sock.recv(65536)
        raw.sock.setblocking(True)
        closed = await asyncio.to_thread(raw.read_to_end, 5)
    finally:
        raw.close()
    assert closed
    assert raw.answers()[-1]["status"] == 413
    assert sent < 1024 * 1024
    async with httpx.AsyncClient(base_url=stream_hub.url) as client:
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.slow  # waits for the line timeout
async def test_a_slowloris_publisher_is_cut_and_does_not_stall_others(
    stream_hub: HubProcess,
) -> None:
    raw = RawStream(stream_hub.url, "/events/ndjson-slow")
    started = time.monotonic()
    try:

        def trickle() -> None:
            # One byte at a time, never a whole line: the line timeout ends it.
            for byte in b'{"data": "never ends ' * 20:
                try:
                    raw.send(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.1)

        trickler = asyncio.create_task(asyncio.to_thread(trickle))
        async with httpx.AsyncClient(base_url=stream_hub.url) as client:
            # Meanwhile the hub serves everyone else at once.
            for i in range(5):
                answer = await client.post("/events/ndjson-slow-other", json={"data": str(i)})
                assert answer.status_code == 200
        closed = await asyncio.to_thread(raw.read_to_end, LINE_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        await trickler
    finally:
        raw.close()
    assert closed
    assert raw.answers()[-1]["status"] == 408 and raw.answers()[-1]["end"] is True
    assert elapsed < LINE_TIMEOUT + 5


async def test_a_stream_needs_the_publish_token_from_its_head(start_hub: HubFactory) -> None:
    hub = start_hub(env={"SSEHUB_PUBLISH_TOKEN": "s3cret"})
    raw = RawStream(hub.url, "/events/ndjson-auth")
    try:
        closed = await asyncio.to_thread(raw.read_to_end, 5)
    finally:
        raw.close()
    assert closed and raw.status() == 401
    raw = RawStream(hub.url, "/events/ndjson-auth", {"Authorization": "Bearer s3cret"})
    try:
        raw.send(b'{"data": "ok"}\n')
        answers = await asyncio.to_thread(raw.read_until, 1)
        raw.end()
    finally:
        raw.close()
    assert raw.status() == 200 and "id" in answers[0]


@pytest.mark.slow
async def test_the_rate_limit_slows_a_stream_down_and_refuses_nothing(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--stream-rate", "40")
    raw = RawStream(hub.url, "/events/ndjson-rate")
    started = time.monotonic()
    try:
        raw.send(b"".join(b'{"data": "%d"}\n' % i for i in range(100)))
        answers = await asyncio.to_thread(raw.read_until, 100, 20)
        raw.end()
    finally:
        raw.close()
    elapsed = time.monotonic() - started
    assert len(answers) == 100 and all("id" in a for a in answers)
    # 40 events/s with a bucket of one second: the last 60 take 1.5 s at least.
    assert elapsed >= 1.3


@pytest.mark.slow  # uvicorn closes the cut stream only at its keep-alive timeout (5 s)
async def test_the_stream_works_the_same_under_uvicorn(start_hub: HubFactory) -> None:
    hub = start_hub("--http", "uvicorn", "--max-body", str(MAX_LINE))
    raw = RawStream(hub.url, "/events/ndjson-uvicorn")
    try:
        raw.send(b'{"data": "a"}\n{"data": "b"}\nnope\n')
        answers = await asyncio.to_thread(raw.read_until, 3)
        raw.send(b'{"data": "' + b"x" * (MAX_LINE + 1) + b'"}\n')
        closed = await asyncio.to_thread(raw.read_to_end, 10)
    finally:
        raw.close()
    assert "id" in answers[0] and "id" in answers[1] and answers[2]["status"] == 400
    assert closed and raw.answers()[-1]["status"] == 413


@pytest.mark.slow  # waits for the token to expire (3 s)
async def test_a_jwt_publish_claim_is_checked_for_each_line_and_its_expiry_ends_the_stream(
    start_hub: HubFactory,
) -> None:
    import jwt

    secret = "a-test-secret-that-is-32-bytes-or-more"
    hub = start_hub(env={"SSEHUB_JWT_SECRET": secret})
    expires = int(time.time()) + 3
    value = jwt.encode({"ssehub": {"publish": ["/events/jwt-a"]}, "exp": expires}, secret)
    raw = RawStream(hub.url, "/events", {"Authorization": f"Bearer {value}"})
    try:
        raw.send(
            b'{"channel": "/events/jwt-a", "data": "mine"}\n'
            b'{"channel": "/events/jwt-b", "data": "not mine"}\n'
        )
        answers = await asyncio.to_thread(raw.read_until, 2)
        # Past the token's exp, the stream ends (checked at least every half second).
        closed = await asyncio.to_thread(raw.read_to_end, 10)
    finally:
        raw.close()
    assert "id" in answers[0]
    assert answers[1]["status"] == 403 and "jwt-b" in str(answers[1]["error"])
    assert closed and raw.answers()[-1]["status"] == 401 and raw.answers()[-1]["end"] is True
