"""The interop tests' view of the hub: publish and count clients over its HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class HubControl:
    """Publish to the hub and watch its client counts over its HTTP API."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url = url
        self._http = http

    async def publish(self, channel: str, data: str, **fields: Any) -> str:
        """POST one event to ``channel``; return the id the hub gave it."""
        response = await self._http.post(self.url + channel, json={"data": data, **fields})
        response.raise_for_status()
        return str(response.json()["id"])

    async def clients(self, channel: str) -> int:
        """Open streams on ``channel`` according to ``GET /channels``."""
        response = await self._http.get(self.url + "/channels")
        response.raise_for_status()
        for row in response.json()["channels"]:
            if row["channel"] == channel:
                return int(row["clients"])
        return 0

    async def until_clients(self, channel: str, count: int, timeout: float = 10.0) -> None:
        """Wait until ``channel`` has exactly ``count`` open streams."""
        async with asyncio.timeout(timeout):
            while await self.clients(channel) != count:
                await asyncio.sleep(0.01)
