"""A small ASGI app around a `Hub` for client and interop tests, until ``ssehub serve`` is used.

``GET /events/...`` streams through ``hub.asgi``; ``POST /events/...`` publishes a JSON body
``{"data", "event"?, "id"?, "retry"?}`` (or a list of them) like the standalone hub; ``GET /``
serves a blank HTML page so a browser has an origin to open ``EventSource`` from. Every request's
headers are recorded, and answers can be scripted to make the next GETs fail.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ssehub import Hub, Message
from ssehub.types import Receive, Scope, Send

PAGE = b"<!doctype html><html><head><meta charset='utf-8'><title>ssehub</title></head></html>"


@dataclass
class Scripted:
    """An answer to give to the next GET instead of the stream."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Seen:
    """One request the app received."""

    method: str
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    """When it arrived (``time.monotonic()``)."""


@dataclass
class Served:
    """A hub, the `HubApp` serving it and the server's base URL."""

    hub: Hub
    app: HubApp
    url: str

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.url.rsplit(":", 1)[1])


class HubApp:
    """Route GET/POST ``/events/...`` to a hub; record requests; play scripted answers."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.requests: list[Seen] = []
        self.scripted: deque[Scripted] = deque()

    def streams(self, path: str) -> list[Seen]:
        """The GET requests made for ``path`` so far."""
        return [r for r in self.requests if r.method == "GET" and r.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(Seen(method, path, headers))
        if path == "/" and method == "GET":
            await self._answer(send, 200, PAGE, [("content-type", "text/html; charset=utf-8")])
        elif not path.startswith("/events/"):
            await self._answer(send, 404, b"not found")
        elif method == "POST":
            await self._publish(path, receive, send)
        elif method == "GET" and self.scripted:
            answer = self.scripted.popleft()
            await self._answer(send, answer.status, answer.body, answer.headers)
        else:
            await self.hub.asgi(scope, receive, send)

    async def _publish(self, channel: str, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        payload: Any = json.loads(body)
        items = payload if isinstance(payload, list) else [payload]
        ids = [await self.hub.publish(channel, Message(**item)) for item in items]
        await self._answer(
            send, 200, json.dumps({"ids": ids}).encode(), [("content-type", "application/json")]
        )

    @staticmethod
    async def _answer(
        send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
    ) -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers or []]
        if not any(k == b"content-type" for k, _ in raw):
            raw.append((b"content-type", b"text/plain; charset=utf-8"))
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
