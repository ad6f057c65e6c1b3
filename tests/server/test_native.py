"""ssehub's own HTTP server: enough HTTP/1.1 and ASGI for the hub's API, direct streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ssehub import CloseReason, Hub, Message, Subscription
from ssehub.server.native import (
    FLUSH_MAX_SLICE,
    FLUSH_MIN_SLICE,
    FLUSH_PARTS,
    GATHER_DELAY,
    RunDelay,
)
from ssehub.types import Receive, Scope, Send
from ssehub.wire import EventParser
from tests._support.asgi_server import native_server, run_native
from tests._support.sse import open_sse


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers JSON about the request; /stream answers a chunked body in three parts."""
    if scope["type"] != "http":
        return
    message = await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    body = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": message["body"].decode(),
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with run_native(echo_app, max_body=1000) as url:
        yield url


def complete_responses(data: bytes) -> int:
    """How many whole responses ``data`` holds (1xx heads count; bodies by Content-Length)."""
    count = 0
    while True:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            return count
        lines = head.split(b"\r\n")
        if lines[0].startswith(b"HTTP/1.1 1"):
            length = 0
        else:
            lengths = [
                int(line.split(b":")[1])
                for line in lines
                if line.lower().startswith(b"content-length:")
            ]
            if not lengths or len(rest) < lengths[0]:
                return count  # a body still arriving (or delimited by the close)
            length = lengths[0]
        count += 1
        data = rest[length:]


async def raw_exchange(base: str, payload: bytes, responses: int, timeout: float = 15.0) -> bytes:
    """Send ``payload`` on a raw connection; return what arrives until ``responses`` whole
    responses are in or the server closes the connection. Raises TimeoutError when neither
    happens within ``timeout`` seconds (a generous bound: it is not what the test measures)."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(payload)
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while complete_responses(data) < responses:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
    finally:
        writer.close()
    return data


async def test_keep_alive_serves_many_requests_on_one_connection(base: str) -> None:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
        answers = [
            (await client.post(f"{base}/p/{i}?q={i}", content=f"body {i}")).json()
            for i in range(20)
        ]
    assert [a["path"] for a in answers] == [f"/p/{i}" for i in range(20)]
    assert answers[3]["query"] == "q=3" and answers[3]["body"] == "body 3"


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(status line, body) of each Content-Length-delimited response in ``data``."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        out.append((lines[0], rest[:length]))
        data = rest[length:]
    return out


async def test_pipelined_requests_are_answered_in_order(base: str) -> None:
    requests = b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3))
    data = await raw_exchange(base, requests, responses=3)
    responses = split_responses(data)
    assert [json.loads(body)["path"] for _, body in responses] == ["/r0", "/r1", "/r2"]


async def test_expect_100_continue_is_answered(base: str) -> None:
    payload = (
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    )
    data = await raw_exchange(base, payload, responses=2)  # 100 Continue, then the answer
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
    assert b'"body": "hello"' in data


async def test_chunked_request_body_is_decoded(base: str) -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with httpx.AsyncClient() as client:
        answer = (await client.post(f"{base}/c", content=parts())).json()
    assert answer["body"] == "abcdef"


async def test_body_over_the_limit_gets_413_with_json_error(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base}/big", content=b"x" * 5000)
    assert response.status_code == 413
    assert "1000" in response.json()["error"]


async def test_malformed_request_gets_400_and_server_keeps_serving(base: str) -> None:
    data = await raw_exchange(base, b"NOT HTTP AT ALL\r\n\r\n", responses=1)
    assert data.startswith(b"HTTP/1.1 400 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/ok")).status_code == 201


async def test_oversized_headers_get_431(base: str) -> None:
    payload = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    data = await raw_exchange(base, payload, responses=1)
    assert data.startswith(b"HTTP/1.1 431 ")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/ok")).status_code == 201


async def test_many_pipelined_requests_are_all_answered(base: str) -> None:
    requests = b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(100))
    responses = split_responses(await raw_exchange(base, requests, responses=100))
    assert [json.loads(body)["path"] for _, body in responses] == [f"/r{i}" for i in range(100)]


async def test_streamed_response_is_chunked(base: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{base}/stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.text == "one two three"


async def test_app_error_gets_500_and_server_keeps_serving(base: str) -> None:
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base}/boom")).status_code == 500
        assert (await client.get(f"{base}/ok")).status_code == 201


async def test_direct_stream_ends_cleanly_when_the_hub_shuts_down() -> None:
    hub = Hub()
    async with run_native(hub.asgi) as base, open_sse(f"{base}/events/a") as stream:
        async with asyncio.timeout(5):
            while not hub.has_channel("/events/a"):
                await asyncio.sleep(0.01)
        await hub.publish("/events/a", "last words")
        await hub.shutdown()
        assert [e.data for e in await stream.read_until_end()] == ["last words"]
    assert hub.client_count() == 0


async def test_direct_stream_client_gone_frees_subscription_at_once() -> None:
    hub = Hub()
    async with run_native(hub.asgi) as base:
        host, port = base.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /events/a HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            while not hub.has_channel("/events/a"):
                await asyncio.sleep(0.01)
        sock.close()
        async with asyncio.timeout(2):
            while hub.client_count():
                await asyncio.sleep(0.01)
    await hub.shutdown()


async def open_raw_streams(
    hub: Hub, base: str, channel: str, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` raw connections, each a stream of ``channel``; returns once the hub has them
    all (the caller reads the response head and body itself)."""
    host, port = base.removeprefix("http://").split(":")
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(count)]
    for _, writer in conns:
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % channel.encode())
    async with asyncio.timeout(10):
        while hub.client_count(channel) < count:
            await asyncio.sleep(0.01)
    return conns


async def test_back_to_back_publishes_reach_every_stream_once_and_in_order() -> None:
    """Hundreds of streams, events published one per loop iteration: the server writes the
    streams in slices between which publishes land (so writes carry several events), and
    every stream still gets every event exactly once, in publish order."""
    hub = Hub()
    streams, events = 300, 200
    async with run_native(hub.asgi) as base:
        conns = await open_raw_streams(hub, base, "/events/fan", streams)

        async def read_all(reader: asyncio.StreamReader) -> bytes:
            data = b""
            while not data.endswith(f"data: {events - 1}\n\n".encode()):
                chunk = await reader.read(65536)
                assert chunk, "the stream ended early"
                data += chunk
            return data

        readers = [asyncio.ensure_future(read_all(reader)) for reader, _ in conns]
        for i in range(events):
            await hub.publish("/events/fan", str(i))
            await asyncio.sleep(0)  # one loop iteration: a slice of the flush runs
        async with asyncio.timeout(20):
            bodies = await asyncio.gather(*readers)
        for _, writer in conns:
            writer.close()
    await hub.shutdown()
    expected = [str(i) for i in range(events)]
    for body in bodies:
        head, _, rest = body.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        got = [e.data for e in EventParser().feed(rest) if e.event is None]
        assert got == expected


@pytest.mark.parametrize("short_of_cpu", [False, True], ids=["cpu-to-spare", "short-of-cpu"])
async def test_publishes_faster_than_the_slices_drain_do_not_drop_readers_that_keep_up(
    short_of_cpu: bool,
) -> None:
    """A fast publisher (ten 1 KiB events per loop iteration) against streams whose flush is
    sliced, or waits GATHER_DELAY because the server is short of CPU (a stand-in run delay of
    half the time): the streams not yet written must not fill up to max_buffer (32 KiB here)
    and be dropped as slow while their clients read everything they are sent."""
    hub = Hub(max_buffer=32 * 1024)
    streams, rounds, per_round = 100, 40, 10
    events = rounds * per_round
    async with native_server(hub.asgi) as running:
        if short_of_cpu:
            flusher = running.server.flusher
            flusher.run_delay = lambda: asyncio.get_running_loop().time() / 2
            flusher.gather = GATHER_DELAY
        conns = await open_raw_streams(hub, running.url, "/events/big", streams)

        async def read_all(reader: asyncio.StreamReader) -> bytes:
            data = b""
            while chunk := await reader.read(1 << 20):
                data += chunk
            return data

        readers = [asyncio.ensure_future(read_all(reader)) for reader, _ in conns]
        pad = "x" * 1024
        for r in range(rounds):
            for k in range(per_round):
                await hub.publish("/events/big", f"{r * per_round + k} {pad}")
            await asyncio.sleep(0)  # one loop iteration: one slice, and the readers read
        await hub.shutdown()  # ends every stream after what is queued
        async with asyncio.timeout(20):
            bodies = await asyncio.gather(*readers)
        for _, writer in conns:
            writer.close()
    assert hub.dropped_slow == 0
    for body in bodies:
        got = [e.data.split()[0] for e in EventParser().feed(body.partition(b"\r\n\r\n")[2])]
        assert got == [str(i) for i in range(events)]


async def test_an_idle_server_writes_the_first_slice_of_a_fan_out_during_the_publish() -> None:
    """Nothing queued: the first FLUSH_MIN_SLICE streams get the event before the publish
    returns (no loop turn), and the rest are queued for the sliced flush, as under load."""
    hub = Hub()
    streams = FLUSH_MIN_SLICE + 8
    async with run_native(hub.asgi) as base:
        host, port = base.removeprefix("http://").split(":")
        socks = [socket.create_connection((host, int(port))) for _ in range(streams)]
        for sock in socks:
            sock.sendall(b"GET /events/idle HTTP/1.1\r\nHost: x\r\n\r\n")
        heads = [b""] * streams
        async with asyncio.timeout(10):
            while not all(b"\r\n\r\n" in head for head in heads):
                await asyncio.sleep(0.01)
                for i, sock in enumerate(socks):
                    with contextlib.suppress(BlockingIOError):
                        heads[i] += sock.recv(65536, socket.MSG_DONTWAIT)
        assert hub.client_count("/events/idle") == streams
        await hub.publish("/events/idle", "now")
        time.sleep(0.2)  # the loop stands still: only what the publish wrote can arrive

        def arrived(sock: socket.socket) -> bool:
            try:
                return b"data: now" in sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False

        early = [arrived(sock) for sock in socks]
        assert early == [True] * FLUSH_MIN_SLICE + [False] * (streams - FLUSH_MIN_SLICE)
        late = [i for i, got in enumerate(early) if not got]
        async with asyncio.timeout(5):
            while late:
                await asyncio.sleep(0.01)
                late = [i for i in late if not arrived(socks[i])]
        for sock in socks:
            sock.close()
    await hub.shutdown()


class _CountedWrites:
    """A server connection's transport, counting the writes made to it (all else passes)."""

    def __init__(self, transport: Any, counts: list[int]) -> None:
        self._transport = transport
        self._counts = counts

    def write(self, data: bytes) -> None:
        self._counts[0] += 1
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_a_server_short_of_cpu_gathers_events_into_one_write_per_stream() -> None:
    """Once the loop's thread waits for a core past CONTENDED of the time, a flush cycle starts
    GATHER_DELAY after the first push: five events published back to back cost each stream one
    write, not five, and arrive within that delay. When the waiting stops, events go out at
    once again, one write per stream per event. (The run delay is a stand-in here, set by the
    test; `test_run_delay_reads_the_time_a_thread_waited_for_a_core` reads the real one.)"""
    hub = Hub()
    streams = FLUSH_MIN_SLICE + 4  # past the straight writes, so each publish runs a cycle
    async with native_server(hub.asgi) as running:
        flusher = running.server.flusher
        waited = [0.0]
        flusher.run_delay = lambda: waited[0]
        flusher.waited, flusher.read_at = 0.0, asyncio.get_running_loop().time()
        conns = await open_raw_streams(hub, running.url, "/events/cpu", streams)
        counts = [0]
        for conn in running.server.connections:
            conn.transport = _CountedWrites(conn.transport, counts)
        received = [0] * streams

        async def read(i: int, reader: asyncio.StreamReader, count: int) -> None:
            while received[i] < count:
                chunk = await reader.read(65536)
                assert chunk, "the stream ended early"
                received[i] += chunk.count(b"data: ")

        async def publish_five(start: int) -> tuple[int, float]:
            """Publish events start..start+4, one loop iteration apart; the writes they cost
            and the seconds until every stream had them."""
            before, began = counts[0], time.perf_counter()
            for i in range(start, start + 5):
                await hub.publish("/events/cpu", str(i))
                await asyncio.sleep(0)  # a slice of a cycle may run in between
            async with asyncio.timeout(5):
                await asyncio.gather(
                    *(read(i, reader, start + 5) for i, (reader, _) in enumerate(conns))
                )
            return counts[0] - before, time.perf_counter() - began

        # Not short of CPU: every event is written to every stream as it comes.
        writes, _ = await publish_five(0)
        assert writes >= 4 * streams  # (a slice of a cycle may carry two)
        # A second waiting for a core since the last reading, at most a few seconds ago (past
        # CONTENDED of the time): the next cycle's end reads it, and then cycles wait.
        waited[0] += 1.0
        await asyncio.sleep(0.15)
        await hub.publish("/events/cpu", "5")  # its cycle ends with a reading
        async with asyncio.timeout(5):
            await asyncio.gather(*(read(i, r, 6) for i, (r, _) in enumerate(conns)))
        assert flusher.gather == GATHER_DELAY
        writes, took = await publish_five(6)
        assert writes == streams  # one write per stream
        assert took < GATHER_DELAY + 0.5
        # No more waiting: the first push after a window reads that (not the cycle after the
        # gathered one), and events go out at once again.
        await asyncio.sleep(0.15)
        await hub.publish("/events/cpu", "11")
        assert flusher.gather == 0
        writes, _ = await publish_five(12)
        assert writes >= 4 * streams  # (a slice of a cycle may carry two)
        for _, writer in conns:
            writer.close()
    await hub.shutdown()


async def test_a_loop_iteration_writes_at_most_a_slice_however_many_streams_wait() -> None:
    """A fan-out to more streams than FLUSH_PARTS slices of FLUSH_MAX_SLICE: each loop
    iteration writes at most FLUSH_MAX_SLICE of them (not a sixteenth of the queue), so the
    loop reads its sockets (the next publish, other requests) that often, and every stream
    still gets the event once."""
    streams = FLUSH_PARTS * FLUSH_MAX_SLICE + 32 * FLUSH_PARTS  # a sixteenth is 96
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * streams + 512  # both ends of each stream live in this process
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    try:
        await _fan_out_wide(streams)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _fan_out_wide(streams: int) -> None:
    hub = Hub()
    async with native_server(hub.asgi) as running:
        conns = await open_raw_streams(hub, running.url, "/events/wide", streams)
        for reader, _ in conns:  # the response heads
            async with asyncio.timeout(5):
                await reader.readuntil(b"\r\n\r\n")
        counts = [0]
        for conn in running.server.connections:
            conn.transport = _CountedWrites(conn.transport, counts)
        loop = asyncio.get_running_loop()
        per_iteration: list[int] = []
        last = [0]

        def tick() -> None:  # once per loop iteration, beside the flush's slices
            per_iteration.append(counts[0] - last[0])
            last[0] = counts[0]
            if counts[0] < streams:
                loop.call_soon(tick)

        loop.call_soon(tick)
        await hub.publish("/events/wide", "wide")
        async with asyncio.timeout(10):
            while counts[0] < streams:
                await asyncio.sleep(0.01)
            for reader, _ in conns:
                assert b"data: wide" in await reader.readuntil(b"\n\n")
        for _, writer in conns:
            writer.close()
    await hub.shutdown()
    assert counts[0] == streams
    assert max(per_iteration) <= FLUSH_MAX_SLICE
    assert len([n for n in per_iteration if n]) >= streams // FLUSH_MAX_SLICE


def test_run_delay_reads_the_time_a_thread_waited_for_a_core() -> None:
    """`RunDelay` on Linux: with more busy processes than cores, this thread, busy too, waits
    for a core, and the reading grows by some of the time it was busy; a missing file reads 0
    and says it is unavailable."""
    missing = RunDelay("/nonexistent/schedstat")
    assert not missing.available and missing() == 0.0
    run_delay = RunDelay()
    assert run_delay.available, "Linux's /proc/thread-self/schedstat is missing"
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range((os.cpu_count() or 1) * 2)
    ]
    try:
        time.sleep(0.2)  # the spinners are running
        before = run_delay()
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            pass
        waited = run_delay() - before
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        run_delay.close()
    # Three processes ready per core: this one waits about two thirds of the time.
    assert 0.05 < waited < 1.5


async def test_a_stream_dropped_for_its_buffer_is_cut_off_not_left_open() -> None:
    """A subscription closed as slow because more than ``max_buffer`` waits in it (here an
    ``on_connect`` welcome larger than the buffer) ends its connection at once: the client sees
    the end and can reconnect, rather than wait on an open socket that will never carry
    another byte."""

    def welcome(sub: Subscription) -> None:
        sub.send(Message("x" * 8192))

    hub = Hub(max_buffer=4096, on_connect=welcome)
    async with run_native(hub.asgi) as base:
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /events/big HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
        writer.close()
    assert hub.dropped_slow == 1
    await hub.shutdown()


async def test_writing_early_during_a_delivery_leaves_ended_streams_to_the_flush() -> None:
    """A push past a stream's bound has the server write every queued stream at once, from
    inside the hub's delivery to a channel. A stream among them that has already ended (here by
    its token's expiry, still on the channel until its writer ends it) is ended by the flush
    after the delivery, not during it: the delivery completes and every stream gets its bytes."""
    hub = Hub(max_buffer=4096)
    async with native_server(hub.asgi) as running:
        flusher = running.server.flusher
        flusher.run_delay = lambda: asyncio.get_running_loop().time() / 2  # half the time
        flusher.gather = GATHER_DELAY
        conns = await open_raw_streams(hub, running.url, "/events/x", 3)
        channel = hub.get_channel("/events/x")
        assert channel is not None
        ended = next(iter(channel.subscribers))
        await hub.publish("/events/x", "a" * 1000)  # queued on every stream: the cycle waits
        ended.close(CloseReason.EXPIRED)
        await hub.publish("/events/x", "b" * 3500)  # past 4096 on the others: written now
        bodies = []
        async with asyncio.timeout(5):
            for reader, _ in conns:
                data = b""
                while data.count(b"data: ") < 2 and (chunk := await reader.read(65536)):
                    data += chunk
                bodies.append(data)
        assert sorted(body.count(b"data: ") for body in bodies) == [1, 2, 2]
        assert hub.client_count("/events/x") == 2 and hub.dropped_slow == 0
        for _, writer in conns:
            writer.close()
    await hub.shutdown()
