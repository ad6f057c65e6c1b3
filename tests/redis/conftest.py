"""Fixtures for the Redis backend's tests: a real redis-server, hubs on it, and their servers."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from ssehub import Hub
from ssehub.redis import RedisBackend
from tests._support.redis_server import RedisServer

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for the tests that do not crash it (each uses a prefix of its own)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may kill and restart."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests sharing a server never see each other."""
    return f"t{next(_prefixes)}"


class HubPair:
    """Makes hubs on one Redis and shuts them all down at the end of the test."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.hubs: list[Hub] = []

    async def hub(self, **options: object) -> Hub:
        backend_options = options.pop("backend_options", {})
        assert isinstance(backend_options, dict)
        hub = Hub(
            backend=RedisBackend(self.url, prefix=self.prefix, **backend_options),
            **options,  # type: ignore[arg-type]
        )
        await hub.start()
        self.hubs.append(hub)
        return hub


@pytest.fixture
async def hubs(shared_redis: RedisServer, prefix: str) -> AsyncIterator[HubPair]:
    """Hubs on the shared redis-server, under a prefix of the test's own."""
    pair = HubPair(shared_redis.url, prefix)
    yield pair
    for hub in pair.hubs:
        await hub.shutdown(timeout=1)
