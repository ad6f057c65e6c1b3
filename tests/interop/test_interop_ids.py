"""Ids that are not plain ASCII survive the round trip through every adapter and server.

An event id is sent to the client in ``id:``, and comes back in ``Last-Event-ID`` when the
client reconnects: Chromium sends it as UTF-8 bytes, and so does ssehub.client. Whatever the
server in between (ssehub's native server, uvicorn, waitress for WSGI, aiohttp, Django under
WSGI and ASGI) the hub must read back the id it sent, so that a client resuming after a
non-ASCII id, an id with spaces, or one holding a tab gets exactly the events it missed. The
``lastEventId`` query parameter (for polyfills) is read the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from ssehub import Hub, Message
from ssehub.types import Receive, Scope, Send
from tests._support import free_port
from tests._support.asgi_server import run_native, run_uvicorn
from tests._support.sse import open_sse
from tests._support.tcp_proxy import tcp_proxy
from tests.interop.clients import DRIVERS, Driver, Received

pytestmark = pytest.mark.timeout(90)

IDS = ["café-1 ✓ 日本", "an id with spaces", "a\ttab"]
"""A non-ASCII id, one with spaces inside, and one with the control character HTTP allows."""


class LoopThread:
    """An event loop in a thread of its own, for a server and its hub."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()  # an unclosed loop is a ResourceWarning, an error in this suite


@dataclass
class Site:
    """An app serving ``/events/...`` streams of ``hub`` at ``base``."""

    base: str
    hub: Hub
    prefix: str = ""

    async def publish(self, channel: str, message: Message) -> str:
        return await asyncio.to_thread(self.hub.publish_threadsafe, channel, message)

    async def clients(self, channel: str) -> int:
        async def count() -> int:
            return self.hub.client_count(channel)

        return await asyncio.to_thread(self.hub.run_threadsafe, count())


def events_only(hub: Hub) -> Callable[[Scope, Receive, Send], Any]:
    """``hub.asgi`` under /events; a plain 404 elsewhere (the page the browser opens)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/events/"):
            await hub.asgi(scope, receive, send)
            return
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"not found"})

    return app


def make_hub() -> Hub:
    return Hub(retry=100, keepalive=None)


@contextlib.contextmanager
def asgi_site(runner: Any) -> Iterator[Site]:
    thread = LoopThread()
    hub = make_hub()
    server = runner(events_only(hub))
    try:
        base = thread.run(server.__aenter__())
    except BaseException:
        thread.close()
        raise
    try:
        thread.run(hub.start())  # bound to the server's loop before any publish
        yield Site(base, hub)
    finally:
        thread.run(server.__aexit__(None, None, None))
        thread.close()


@contextlib.contextmanager
def aiohttp_site() -> Iterator[Site]:
    from aiohttp import web

    from ssehub.integrations.aiohttp import sse_handler

    thread = LoopThread()
    hub = make_hub()
    port = free_port()

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/events/{tail:.*}", sse_handler(hub, disconnect_check=0.2))
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    try:
        runner = thread.run(start())
    except BaseException:
        thread.close()
        raise
    try:
        thread.run(hub.start())
        yield Site(f"http://127.0.0.1:{port}", hub)
    finally:
        thread.run(runner.cleanup())
        thread.close()


@contextlib.contextmanager
def waitress_site(app: Any, hub: Hub, prefix: str = "") -> Iterator[Site]:
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=8, channel_request_lookahead=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.effective_port}", hub, prefix)
    finally:
        server.close()
        thread.join(10)


def wsgi_app(hub: Hub) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO", "").startswith("/events/"):
            return hub.wsgi(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return app


@contextlib.contextmanager
def start_site(name: str) -> Iterator[Site]:
    if name == "native":
        with asgi_site(run_native) as site:
            yield site
    elif name == "uvicorn":
        with asgi_site(run_uvicorn) as site:
            yield site
    elif name == "aiohttp":
        with aiohttp_site() as site:
            yield site
    elif name == "wsgi-waitress":
        hub = make_hub()
        with waitress_site(wsgi_app(hub), hub) as site:
            yield site
    elif name == "django-wsgi":
        from tests.integrations import django_site

        with waitress_site(django_site.application, django_site.wsgi_hub) as site:
            yield site
    else:
        raise ValueError(name)


SITES = ["native", "uvicorn", "aiohttp", "wsgi-waitress", "django-wsgi"]
"""Django under ASGI reads headers as WSGI does (latin-1 ``META``): see the last test."""


@pytest.fixture(scope="module", params=SITES)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    with start_site(request.param) as running:
        yield running


_channels = iter(range(1_000_000))


@pytest.fixture
def channel() -> str:
    return f"/events/ids/{next(_channels)}"


async def until_clients(site: Site, channel: str, count: int, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while await site.clients(channel) != count:
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def proxied(site: Site) -> AsyncIterator[Any]:
    port = int(site.base.rsplit(":", 1)[1])
    async with tcp_proxy(port) as proxy:
        yield proxy


@pytest.mark.browser
@pytest.mark.parametrize("driver_name", ["chromium", "ssehub.client"])
async def test_a_client_resuming_after_unusual_ids_gets_exactly_the_missed_events(
    site: Site, channel: str, driver_name: str
) -> None:
    driver: Driver = DRIVERS[driver_name]
    async with proxied(site) as proxy, driver(proxy.url + site.prefix + channel, []) as consumer:
        await until_clients(site, channel, 1)
        expected: list[Received] = []
        for n, event_id in enumerate(IDS):
            await site.publish(channel, Message(f"seen {n}", id=event_id))
            expected.append(Received("message", f"seen {n}", event_id))
            await consumer.wait_for(len(expected))
            proxy.cut()
            await until_clients(site, channel, 0)
            for m in range(2):
                missed = await site.publish(channel, Message(f"missed {n}.{m}", id=f"{n}.{m}"))
                expected.append(Received("message", f"missed {n}.{m}", missed))
            proxy.restore()
            await until_clients(site, channel, 1)
            received = await consumer.wait_for(len(expected))
            assert received == expected, consumer.errors
        sent = [s.get("last-event-id") for s in proxy.requests("GET", site.prefix + channel)]
    assert len(sent) == 1 + len(IDS)


async def test_the_last_event_id_query_parameter_is_read_as_utf8(site: Site, channel: str) -> None:
    for event_id in IDS:
        await site.publish(channel, Message("before", id=event_id))
        await site.publish(channel, Message("after", id=event_id + " next"))
        url = f"{site.base}{site.prefix}{channel}?lastEventId={quote(event_id)}"
        async with open_sse(url) as stream:
            event = await stream.next_event(timeout=10)
        assert (event.event, event.data, event.id) == (None, "after", event_id + " next")


async def test_a_utf8_last_event_id_header_is_read_back(site: Site, channel: str) -> None:
    for event_id in IDS:
        await site.publish(channel, Message("before", id=event_id))
        await site.publish(channel, Message("after", id=event_id + " next"))
        headers = [(b"Last-Event-ID", event_id.encode())]
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
            client.stream("GET", site.base + site.prefix + channel, headers=headers) as response,
        ):
            body = b""
            async with asyncio.timeout(10):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if b"data: after" in body:
                        break
        assert b"ssehub.gap" not in body and b"data: before" not in body
        assert b"id: " + (event_id + " next").encode() + b"\ndata: after" in body


def test_django_asgi_requests_read_a_utf8_last_event_id() -> None:
    from django.core.handlers.asgi import ASGIRequest

    from ssehub.integrations.django import request_from_django
    from tests.integrations import django_site  # noqa: F401 - configures Django

    for event_id in IDS:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/asgi/events/x",
            "query_string": f"lastEventId={quote(event_id)}".encode(),
            "headers": [(b"last-event-id", event_id.encode())],
        }
        request = ASGIRequest(scope, io.BytesIO())
        assert request_from_django(request).last_event_id == event_id
        del scope["headers"]
        assert request_from_django(ASGIRequest(scope, io.BytesIO())).last_event_id == event_id
