"""`hub.asgi` speaks the ASGI lifespan protocol: the server's stop shuts the hub down.

Every other adapter test runs its server with the lifespan off; here it is on, as it is by
default in uvicorn (``lifespan="auto"``) and always in ssehub's own server. A hub mounted with
`hub.asgi` and no code of the user's around it must still be shut down when the server stops:
streams end (clients reconnect to another hub), the backend is closed, late publishes fail.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ssehub import CloseReason, Hub, HubClosed, Subscription
from ssehub.types import ASGIMessage
from tests._support.asgi_server import native_server, uvicorn_server
from tests._support.sse import open_sse


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class ClosingMemory:
    """Records the close reason of each stream the hub ends."""

    def __init__(self) -> None:
        self.reasons: list[str | None] = []

    def __call__(self, sub: Subscription) -> None:
        self.reasons.append(sub.close_reason)


async def test_native_server_stop_ends_open_streams_cleanly_through_the_lifespan() -> None:
    seen = ClosingMemory()
    hub = Hub(on_disconnect=seen)
    async with native_server(hub.asgi) as server, open_sse(f"{server.url}/events/a") as stream:
        await wait_for(lambda: hub.client_count("/events/a") == 1)
        assert hub.loop is not None  # the lifespan startup started the hub
        await hub.publish("/events/a", "before the stop")
        assert (await stream.next_event()).data == "before the stop"
        stopping = asyncio.ensure_future(server.stop())
        # The server sends lifespan.shutdown first; hub.shutdown() ends the stream at once,
        # cleanly, well before the server's own 5 s wait for open connections.
        assert await stream.read_until_end(timeout=3) == []
        await asyncio.wait_for(stopping, 10)
    assert hub.closed
    assert seen.reasons == [CloseReason.SHUTDOWN]
    with pytest.raises(HubClosed):
        await hub.publish("/events/a", "after the stop")


async def test_uvicorn_stop_runs_the_lifespan_shutdown_which_shuts_the_hub_down() -> None:
    seen = ClosingMemory()
    hub = Hub(on_disconnect=seen)
    async with uvicorn_server(hub.asgi, lifespan="on") as server:
        assert hub.loop is not None  # the lifespan startup started the hub
        async with open_sse(f"{server.url}/events/a") as stream:
            await wait_for(lambda: hub.client_count("/events/a") == 1)
            await hub.publish("/events/a", "before the stop")
            assert (await stream.next_event()).data == "before the stop"
            await asyncio.wait_for(server.stop(), 10)
            # uvicorn waits for open responses (up to timeout_graceful_shutdown, 1 s here)
            # before it sends lifespan.shutdown, and then cancels them: an SSE stream under
            # plain uvicorn is cut off, not ended cleanly (ssehub's own server and
            # `ssehub serve --http uvicorn` end it first). What the lifespan owes is the rest:
            await stream.read_until_end(timeout=5, strict=False)
        assert hub.closed
        assert hub.client_count() == 0
        assert len(seen.reasons) == 1
        with pytest.raises(HubClosed):
            await hub.publish("/events/a", "after the stop")
        with pytest.raises(HubClosed):
            await hub.subscribe("/events/a")


async def test_uvicorn_stop_with_no_client_shuts_the_hub_down() -> None:
    hub = Hub()
    async with uvicorn_server(hub.asgi, lifespan="on") as server:
        await hub.publish("/events/a", "history")
        await asyncio.wait_for(server.stop(), 10)
        assert hub.closed


async def test_lifespan_startup_failure_is_reported_to_the_server() -> None:
    hub = Hub()
    await hub.shutdown()  # a shut-down hub cannot start again
    sent: list[ASGIMessage] = []
    inbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})

    async def send(message: ASGIMessage) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await asyncio.wait_for(hub.asgi(scope, inbox.get, send), 5)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "shut down" in sent[0]["message"]
