"""The exceptions ssehub raises."""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "HubClosed",
    "InvalidMessage",
    "SSEHubError",
    "SubscriptionDenied",
]


class SSEHubError(Exception):
    """Base class of every ssehub error."""


class InvalidMessage(SSEHubError, ValueError):
    """A message field breaks the SSE wire format (the message says which field and why)."""


class HubClosed(SSEHubError, RuntimeError):
    """The hub is shut down: it takes no new subscriptions or publishes."""


class BackendUnavailable(SSEHubError, ConnectionError):
    """The backend (e.g. Redis) cannot be reached; the event was not stored."""


class SubscriptionDenied(SSEHubError, PermissionError):
    """The hub's ``authorize`` hook refused the subscription."""
