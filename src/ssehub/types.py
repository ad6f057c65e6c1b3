"""Type aliases for the ASGI and WSGI interfaces, shared by the hub, the adapters and the server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = [
    "ASGICallable",
    "ASGIMessage",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "WSGICallable",
    "WSGIEnviron",
]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]

ASGICallable = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application."""

WSGIEnviron = Mapping[str, Any]
StartResponse = Callable[..., Any]
WSGICallable = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
"""A WSGI application."""
