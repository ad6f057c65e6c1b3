"""The exceptions ssehub raises."""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "EventTooLarge",
    "HubClosed",
    "InvalidMessage",
    "InvalidToken",
    "SSEHubError",
    "SubscriptionDenied",
    "UnsupportedServer",
]


class SSEHubError(Exception):
    """Base class of every ssehub error."""


class InvalidMessage(SSEHubError, ValueError):
    """A message field breaks the SSE wire format (the message says which field and why)."""


class EventTooLarge(InvalidMessage):
    """An event whose encoding is larger than a client's buffer (the hub's ``max_buffer``): no
    subscriber could ever receive it, so it is refused before it is stored or delivered."""


class HubClosed(SSEHubError, RuntimeError):
    """The hub is shut down: it takes no new subscriptions or publishes."""


class BackendUnavailable(SSEHubError, ConnectionError):
    """The backend (e.g. Redis) cannot be reached; the event was not stored."""


class SubscriptionDenied(SSEHubError, PermissionError):
    """The hub's ``authorize`` hook refused the subscription."""


class InvalidToken(SSEHubError, PermissionError):
    """An authorization token that is expired, badly signed, malformed or of the wrong shape
    (answered 401); the message says which, and never holds the token."""


class UnsupportedServer(SSEHubError, RuntimeError):
    """The server runs the app in a way ssehub does not support (gevent or eventlet green
    threads for the thread-based WSGI integration); the message says what to run instead."""
