"""`hub.asgi` served by a real uvicorn and read by real HTTP clients over sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

from ssehub import GAP_EVENT, EventParser, Hub, Message, Request, Subscription
from tests._support.asgi_server import SERVERS
from tests._support.sse import SSEStream, open_sse
from tests._support.waiting import eventually


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(headers={"Access-Control-Allow-Origin": "*"})
    yield hub
    await hub.shutdown()


@pytest.fixture(params=sorted(SERVERS))
def run_server(request: pytest.FixtureRequest) -> Any:
    """Each test runs on uvicorn and on ssehub's own server (direct streams)."""
    return SERVERS[request.param]


@pytest.fixture
async def base(hub: Hub, run_server: Any) -> AsyncIterator[str]:
    async with run_server(hub.asgi) as url:
        yield url


async def test_stream_headers_and_seed_byte_exact_event(hub: Hub, base: str) -> None:
    async with open_sse(f"{base}/events/my-channel") as stream:
        assert stream.response.status_code == 200
        headers = stream.response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert headers["access-control-allow-origin"] == "*"
        await eventually(lambda: hub.client_count("/events/my-channel") == 1)
        await hub.publish(
            "/events/my-channel", Message("test", id="123", retry=10000, event="myevent")
        )
        await stream.wait_raw(b"data: test\n\n")
        assert bytes(stream.raw) == b"id: 123\nretry: 10000\nevent: myevent\ndata: test\n\n"


async def test_channels_are_isolated_over_http(hub: Hub, base: str) -> None:
    async with open_sse(f"{base}/events/a?x=1") as a, open_sse(f"{base}/events/b") as b:
        await eventually(lambda: hub.client_count() == 2)
        assert sorted(hub.channels()) == ["/events/a", "/events/b"]  # no query string
        await hub.publish("/events/a", "only a")
        await hub.publish("/events/b", "only b")
        assert (await a.next_event()).data == "only a"
        assert (await b.next_event()).data == "only b"
        await hub.publish("/events/a", "a again")
        assert (await a.next_event()).data == "a again"
        with pytest.raises(TimeoutError):
            await b.next_event(timeout=0.2)


async def test_broadcast_reaches_every_connected_channel(hub: Hub, base: str) -> None:
    async with open_sse(f"{base}/events/a") as a, open_sse(f"{base}/events/b") as b:
        await eventually(lambda: hub.client_count() == 2)
        ids = await hub.broadcast(Message("hello all", event="announce"))
        for stream, channel in ((a, "/events/a"), (b, "/events/b")):
            event = await stream.next_event()
            assert (event.data, event.event, event.id) == ("hello all", "announce", ids[channel])


async def test_multiline_and_lone_cr_data_survive_the_wire(hub: Hub, base: str) -> None:
    async with open_sse(f"{base}/events/a") as stream:
        await eventually(lambda: hub.client_count() == 1)
        await hub.publish("/events/a", "one\rtwo\r\nthree\nfour")
        assert (await stream.next_event()).data == "one\ntwo\nthree\nfour"


async def test_replay_after_disconnect_while_publishing_continues(run_server: Any) -> None:
    hub = Hub(history=20_000)
    channel = "/events/busy"
    published: list[str] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set() and n < 20_000:
            await hub.publish(channel, f"e{n}")
            published.append(f"e{n}")
            n += 1
            if n % 10 == 0:
                await asyncio.sleep(0)

    received: list[str] = []
    last_id: str | None = None
    async with run_server(hub.asgi) as base:
        task = asyncio.create_task(publisher())
        try:
            for _ in range(4):  # connect, read a while, drop; resume with Last-Event-ID
                headers = {"Last-Event-ID": last_id} if last_id else {}
                async with open_sse(f"{base}{channel}", headers=headers) as stream:
                    for event in await stream.events(150):
                        assert event.event != GAP_EVENT
                        received.append(event.data)
                        last_id = event.id
                await asyncio.sleep(0.01)  # events published while disconnected
        finally:
            stop.set()
            await task
        await hub.shutdown()
    assert len(published) > len(received)  # publishing went on around the reconnects
    start = published.index(received[0])
    assert received == published[start : start + len(received)]


async def test_resume_with_last_event_id_query_parameter(hub: Hub, base: str) -> None:
    ids = [await hub.publish("/events/q", f"m{i}") for i in range(3)]
    async with open_sse(f"{base}/events/q", params={"lastEventId": ids[0]}) as stream:
        assert [e.data for e in await stream.events(2)] == ["m1", "m2"]


async def test_unknown_last_event_id_is_signalled_before_retained_events(
    hub: Hub, base: str
) -> None:
    await hub.publish("/events/g", "retained")
    async with open_sse(f"{base}/events/g", headers={"Last-Event-ID": "bogus"}) as stream:
        gap, retained = await stream.events(2)
    assert gap.event == GAP_EVENT
    assert json.loads(gap.data) == {"last_event_id": "bogus", "replayed": 1}
    assert retained.data == "retained"


def stuck_client(port: int, path: str) -> socket.socket:
    """A client that sends its request and then never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


async def test_stuck_client_is_dropped_while_20_others_receive_10000_events(
    run_server: Any,
) -> None:
    hub = Hub(max_buffer=64 * 1024)
    channel = "/events/fanout"
    count = 10_000
    # 6 MB per client in all: more than the kernel (4 MiB send buffer at most here) and the
    # server can buffer for a client that never reads.
    padding = "x" * 600
    async with run_server(hub.asgi) as base:
        port = int(base.rsplit(":", 1)[1])
        stuck = stuck_client(port, channel)
        await eventually(lambda: hub.client_count(channel) == 1)
        received = [0] * 20
        tails = [b""] * 20

        async def reader(i: int, stream: SSEStream) -> None:
            previous = b""
            async for chunk in stream.response.aiter_raw():
                # Count event ends ("\n\n") without a full parse, across chunk boundaries.
                received[i] += (previous[-1:] + chunk).count(b"\n\n")
                previous = chunk
                tails[i] = (tails[i] + chunk)[-2000:]
                if received[i] >= count:
                    return

        async with contextlib_stack(20, f"{base}{channel}") as streams:
            await eventually(lambda: hub.client_count(channel) == 21)
            readers = [asyncio.create_task(reader(i, s)) for i, s in enumerate(streams)]
            for n in range(count):
                await hub.publish(channel, f"event {n:05d} {padding}")
                if n % 20 == 0:
                    await asyncio.sleep(0)  # let writers run, as a real publisher would
            await asyncio.wait_for(asyncio.gather(*readers), 60)
            assert hub.dropped_slow == 1  # the stuck client, and only it
            await eventually(lambda: hub.client_count(channel) == 20)
        assert received == [count] * 20
        for tail in tails:
            *_, last = EventParser().feed(tail[tail.index(b"\n\n") + 2 :])
            assert last.data == f"event {count - 1:05d} {padding}"
        stuck.close()
        await hub.shutdown()


class contextlib_stack:
    """Open ``n`` SSE streams to ``url`` at once."""

    def __init__(self, n: int, url: str) -> None:
        self.n = n
        self.url = url
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self.responses: list[httpx.Response] = []

    async def __aenter__(self) -> list[SSEStream]:
        for _ in range(self.n):
            request = self.client.build_request("GET", self.url)
            self.responses.append(await self.client.send(request, stream=True))
        return [SSEStream(r) for r in self.responses]

    async def __aexit__(self, *exc: object) -> None:
        for response in self.responses:
            await response.aclose()
        await self.client.aclose()


async def test_keepalive_comments_on_idle_stream(run_server: Any) -> None:
    hub = Hub(keepalive=0.1)
    async with run_server(hub.asgi) as base, open_sse(f"{base}/events/idle") as stream:
        await stream.wait_raw(b": ping\n\n", timeout=3)
        await stream.wait_raw(b": ping\n\n: ping\n\n", timeout=3)
    await hub.shutdown()


async def test_cors_preflight_and_wrong_method(hub: Hub, base: str) -> None:
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            f"{base}/events/a",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        post = await client.post(f"{base}/events/a", content=b"x")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, OPTIONS"
        assert "error" in post.json()


async def test_configured_headers_override_defaults(run_server: Any) -> None:
    hub = Hub(headers={"Cache-Control": "no-store", "X-Custom": "1"})
    async with run_server(hub.asgi) as base, open_sse(f"{base}/events/a") as stream:
        assert stream.response.headers["cache-control"] == "no-store"
        assert stream.response.headers["x-custom"] == "1"
        assert stream.response.headers["content-type"].startswith("text/event-stream")
    await hub.shutdown()


async def test_client_disconnect_is_noticed_at_once_and_frees_the_subscription(
    hub: Hub, base: str
) -> None:
    gone: list[Subscription] = []
    hub._on_disconnect = gone.append
    async with open_sse(f"{base}/events/a"):
        await eventually(lambda: hub.client_count("/events/a") == 1)
    await eventually(lambda: hub.client_count() == 0, timeout=2)
    assert not hub.has_channel("/events/a")
    assert len(gone) == 1 and gone[0].closed


async def test_shutdown_with_clients_connected_ends_streams_cleanly(run_server: Any) -> None:
    hub = Hub()
    async with run_server(hub.asgi) as base:
        async with open_sse(f"{base}/events/a") as s1, open_sse(f"{base}/events/b") as s2:
            await eventually(lambda: hub.client_count() == 2)
            await hub.publish("/events/a", "before shutdown")
            await asyncio.wait_for(hub.shutdown(), 5)
            assert [e.data for e in await s1.read_until_end()] == ["before shutdown"]
            assert await s2.read_until_end() == []
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{base}/events/a")
            assert refused.status_code == 503 and "error" in refused.json()
        await hub.shutdown()  # twice is harmless


async def test_restart_ends_streams_and_clients_resume(hub: Hub, base: str) -> None:
    async with open_sse(f"{base}/events/a") as stream:
        await eventually(lambda: hub.client_count() == 1)
        first = await hub.publish("/events/a", "first")
        await hub.restart()
        assert [e.data for e in await stream.read_until_end()] == ["first"]
    await hub.publish("/events/a", "missed")
    async with open_sse(f"{base}/events/a", headers={"Last-Event-ID": first}) as stream:
        assert (await stream.next_event()).data == "missed"


async def test_authorize_and_on_connect_hooks(run_server: Any) -> None:
    def authorize(request: Request) -> bool:
        return request.headers.get("authorization") == "Bearer ok"

    async def welcome(sub: Subscription) -> None:
        sub.send(Message(f"welcome to {sub.channel}", event="welcome"))

    hub = Hub(authorize=authorize, on_connect=welcome)
    async with run_server(hub.asgi) as base:
        async with httpx.AsyncClient() as client:
            denied = await client.get(f"{base}/events/a")
            assert denied.status_code == 403 and "error" in denied.json()
        async with open_sse(f"{base}/events/a", headers={"Authorization": "Bearer ok"}) as s:
            event = await s.next_event()
            assert (event.event, event.data) == ("welcome", "welcome to /events/a")
    await hub.shutdown()


async def test_channel_name_function_picks_the_channel(run_server: Any) -> None:
    hub = Hub(channel_name=lambda request: request.query.get("topic", "default"))
    async with run_server(hub.asgi) as base, open_sse(f"{base}/anything?topic=t1") as s:
        await eventually(lambda: hub.has_channel("t1"))
        await hub.publish("t1", "on t1")
        assert (await s.next_event()).data == "on t1"
    await hub.shutdown()


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_mounted_in_starlette_and_fastapi(framework: str, run_server: Any) -> None:
    hub = Hub()
    if framework == "fastapi":
        app: Starlette = FastAPI()
        app.mount("/events", hub.asgi)
    else:
        app = Starlette(routes=[Mount("/events", app=hub.asgi)])
    async with run_server(app) as base, open_sse(f"{base}/events/my-channel") as stream:
        await eventually(lambda: hub.has_channel("/events/my-channel"))
        await hub.publish("/events/my-channel", Message("tick", event="time"))
        event = await stream.next_event()
        assert (event.event, event.data) == ("time", "tick")
    await hub.shutdown()
