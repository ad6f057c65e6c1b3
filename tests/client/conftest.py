"""Fixtures for the client's tests: a real hub served by uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ssehub import Hub
from tests._support.asgi_server import run_uvicorn
from tests._support.hub_app import HubApp, Served


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """A hub that tells clients to reconnect after 50 ms, served on the test's loop."""
    hub = Hub(retry=50, keepalive=None)
    app = HubApp(hub)
    async with run_uvicorn(app) as url:
        yield Served(hub, app, url)
        await hub.shutdown(timeout=1)
