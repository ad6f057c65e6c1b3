"""The stream policy every adapter shares: headers, CORS, refusals, and the write loop.

Each adapter (ASGI, WSGI, aiohttp, the framework integrations, the standalone server) turns a
request into a subscription and the subscription into response bytes. What they must agree on
lives here, decided as data (`Answer`) so that each adapter keeps only what its framework needs:
how to send an `Answer`, and how to write a chunk.

- A stream's response headers are the hub's (`Hub.headers`: the defaults of `DEFAULT_HEADERS`
  plus the configured ones, e.g. CORS). Every other answer carries the configured ones only
  (`cors_headers`).
- ``OPTIONS`` answers a CORS preflight (204) and any method but ``GET`` gets 405, both with
  ``Allow: GET, OPTIONS`` (`answer_before_stream`).
- A subscription the hub refuses is answered with a JSON ``{"error": ...}`` body: 403 when the
  ``authorize`` hook says no, 503 when the hub is shutting down or its backend is unreachable
  (`open_stream`).
- Async writers drain a subscription with `drain`; a writer blocked on a client that the hub
  drops as too slow is cancelled (`cancel_on_slow_drop`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypedDict

from ssehub.errors import (
    BackendUnavailable,
    HubClosed,
    InvalidSelector,
    InvalidToken,
    SubscriptionDenied,
)
from ssehub.hub import DEFAULT_HEADERS, Hub, Selection
from ssehub.request import Request
from ssehub.subscription import CloseReason, Subscription

__all__ = [
    "ALLOW",
    "DIRECT_STREAM",
    "REFUSED",
    "Answer",
    "DirectStream",
    "Reply",
    "answer_before_stream",
    "cancel_on_slow_drop",
    "cors_headers",
    "drain",
    "error_answer",
    "iter_subscription",
    "open_stream",
    "refusal",
]

ALLOW = "GET, OPTIONS"
"""The methods an event stream's route answers."""

_STREAM_HEADER_NAMES = frozenset(name for name, _ in DEFAULT_HEADERS)

Headers = Sequence[tuple[str, str]]

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A complete answer as a server writes it: status, headers (``content-length`` included) and
body; what the standalone hub's app gives its native server for a publish
(``HubServer.answer_now``)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete non-stream response, decided before any I/O: status, headers and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    @property
    def status_line(self) -> str:
        """The status as WSGI wants it, e.g. ``"403 Forbidden"``."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def cors_headers(hub: Hub) -> list[tuple[str, str]]:
    """The hub's configured headers (CORS and the like), without the stream's own ones."""
    return [(k, v) for k, v in hub.headers if k.lower() not in _STREAM_HEADER_NAMES]


def error_answer(hub: Hub, status: int, error: str, extra: Headers = ()) -> Answer:
    """A JSON ``{"error": error}`` answer with ``status``, ``extra`` and the hub's CORS headers."""
    body = json.dumps({"error": error}).encode()
    headers = (
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        *extra,
        *cors_headers(hub),
    )
    return Answer(status, headers, body)


def answer_before_stream(hub: Hub, method: str) -> Answer | None:
    """The answer to a request that cannot open a stream by its method, or None for ``GET``.

    ``OPTIONS`` gets a 204 preflight answer with the hub's CORS headers; other methods 405.
    """
    if method == "GET":
        return None
    if method == "OPTIONS":
        return Answer(204, (("allow", ALLOW), *cors_headers(hub)))
    return error_answer(
        hub, 405, f"method {method} not allowed; subscribe with GET", [("allow", ALLOW)]
    )


REFUSED = (SubscriptionDenied, HubClosed, BackendUnavailable, InvalidToken, InvalidSelector)
"""The exceptions with which `Hub.open_stream` refuses a subscription (see `refusal`)."""


def refusal(hub: Hub, exc: Exception) -> Answer:
    """The answer to a subscription the hub refused with ``exc``, one of `REFUSED`: 400 for a
    bad channel selector, 401 for a bad token, 403 when the ``authorize`` hook said no, 503
    when the hub is shutting down or its backend is down."""
    if isinstance(exc, InvalidSelector):
        return error_answer(hub, 400, str(exc))
    if isinstance(exc, InvalidToken):
        return error_answer(hub, 401, str(exc), [("www-authenticate", "Bearer")])
    if isinstance(exc, SubscriptionDenied):
        return error_answer(hub, 403, str(exc))
    if isinstance(exc, BackendUnavailable):
        return error_answer(hub, 503, f"the backend is unavailable: {exc}")
    return error_answer(hub, 503, "the hub is shutting down")


async def open_stream(
    hub: Hub, request: Request, *, channel: Selection | None = None, threaded: bool = False
) -> Subscription | Answer:
    """`Hub.open_stream`, with a refusal turned into its `Answer` (403 or 503)."""
    try:
        return await hub.open_stream(request, channel=channel, threaded=threaded)
    except REFUSED as exc:
        return refusal(hub, exc)


def cancel_on_slow_drop(sub: Subscription, task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` if the hub drops ``sub`` as too slow while a write to it is blocked.

    A client that stopped reading blocks its writer forever; cancelling the writer frees it.
    Chains the subscription's previous ``on_close`` hook (the hub's count of slow drops).
    """
    if task is None:
        return
    previous = sub.on_close

    def on_close(closed: Subscription) -> None:
        if previous is not None:
            previous(closed)
        if closed.close_reason == CloseReason.SLOW and closed.writing:
            task.cancel()

    sub.on_close = on_close


async def drain(sub: Subscription, write: Callable[[bytes], Awaitable[object]]) -> None:
    """Write ``sub``'s pending bytes with ``write``, one coalesced chunk per wake-up, until the
    subscription ends. ``sub.writing`` is True while a write is under way."""
    while True:
        chunk = await sub.next_chunk()
        if chunk is None:
            return
        sub.writing = True
        await write(chunk)
        sub.writing = False


async def iter_subscription(hub: Hub, sub: Subscription) -> AsyncIterator[bytes]:
    """Yield ``sub``'s pending bytes, coalesced, until it ends; then unsubscribe it.

    For frameworks whose streaming responses take an async iterator and cancel it when the
    client disconnects: the cancellation ends the iteration and the subscription with it.
    """
    try:
        while True:
            chunk = await sub.next_chunk()
            if chunk is None:
                return
            yield chunk
    finally:
        hub.unsubscribe(sub)


DIRECT_STREAM = "ssehub.direct_stream"
"""ASGI extension of ssehub's native server: it writes a subscription straight to its socket.

An app sees it in ``scope["extensions"]`` and hands the subscription over by sending one
`DirectStream` message instead of ``http.response.start`` and body messages."""


class DirectStream(TypedDict):
    """The ASGI message that hands a subscription to a server offering `DIRECT_STREAM`."""

    type: str
    """Always `DIRECT_STREAM`."""
    hub: Hub
    """The hub the subscription belongs to (the server unsubscribes it there at the end)."""
    subscription: Subscription
    """The subscription to write until either side ends it."""
    headers: list[tuple[str, str]]
    """The response headers of the stream."""
