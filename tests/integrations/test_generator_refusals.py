"""Each integration's ``EventSourceResponse`` answers 503 once its hub is shut down.

Through each framework's own request handling (its test client, or aiohttp's test server on
127.0.0.1), with a hub of the test's own: the session's servers keep theirs running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import flask
import pytest
import quart
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from ssehub import Hub
from ssehub.integrations import aiohttp as aiohttp_sse
from ssehub.integrations import flask as flask_sse
from ssehub.integrations import litestar as litestar_sse
from ssehub.integrations import quart as quart_sse

pytestmark = pytest.mark.timeout(30)


async def shut_hub() -> Hub:
    """A hub that has been shut down."""
    hub = Hub()
    await hub.shutdown()
    assert hub.closed
    return hub


async def numbers() -> AsyncIterator[int]:
    """A source that must never be read (the stream is refused before it starts)."""
    raise AssertionError("a refused stream read its source")
    yield 1  # pragma: no cover


def refused(status: int, body: Any) -> None:
    assert status == 503
    assert "error" in body


async def test_litestar_refuses_after_shutdown() -> None:
    hub = await shut_hub()

    @get("/count")
    async def count() -> litestar_sse.EventSourceResponse:
        return litestar_sse.EventSourceResponse(numbers(), hub=hub)

    async with AsyncTestClient(Litestar([count])) as client:
        response = await client.get("/count")
    refused(response.status_code, response.json())


async def test_quart_refuses_after_shutdown() -> None:
    hub = await shut_hub()
    app = quart.Quart(__name__)

    @app.get("/count")
    async def count() -> Any:
        return quart_sse.EventSourceResponse(numbers(), hub=hub)

    response = await app.test_client().get("/count")
    refused(response.status_code, await response.get_json())


@pytest.mark.slow  # starts aiohttp's test server
async def test_aiohttp_refuses_after_shutdown() -> None:
    hub = await shut_hub()

    async def count(request: web.Request) -> web.StreamResponse:
        return aiohttp_sse.EventSourceResponse(numbers(), hub=hub)

    app = web.Application()
    app.router.add_get("/count", count)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get("/count")
        refused(response.status, await response.json(content_type=None))


async def test_flask_refuses_after_shutdown() -> None:
    hub = await shut_hub()
    app = flask.Flask(__name__)

    @app.get("/count")
    def count() -> Any:
        return flask_sse.EventSourceResponse(iter([1]), hub=hub)

    response = app.test_client().get("/count")
    refused(response.status_code, response.get_json(force=True))


async def test_django_refuses_after_shutdown() -> None:
    import json

    from ssehub.integrations.django import EventSourceResponse
    from tests.integrations import django_site  # configures Django's settings

    assert django_site.urlpatterns
    hub = await shut_hub()
    response = EventSourceResponse(numbers(), hub=hub)
    body = b"".join([part async for part in response])
    refused(response.status_code, json.loads(body))
