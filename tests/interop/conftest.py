"""Fixtures for the interop tests: one real ``ssehub serve`` process for the whole session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.interop.hub_http import HubControl
from tests.server.hub_process import HubProcess

RETRY_MS = 100
"""The reconnection delay the hub sends, kept short so reconnect tests are fast."""


@pytest.fixture(scope="session")
def hub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """``python -m ssehub serve --retry 100`` on a free loopback port."""
    process = HubProcess(["--retry", str(RETRY_MS)], tmp_path_factory.mktemp("hub"))
    yield process
    process.stop()


@pytest.fixture
async def hub(hub_process: HubProcess) -> AsyncIterator[HubControl]:
    """The session's hub, with an HTTP client bound to this test's event loop."""
    async with httpx.AsyncClient(timeout=10) as http:
        yield HubControl(hub_process.url, http)


@pytest.fixture
def channel() -> str:
    """A channel no other test uses."""
    return f"/events/interop/{uuid.uuid4().hex[:12]}"
