"""The exceptions ssehub raises."""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "BroadcastIncomplete",
    "EventTooLarge",
    "HistoryFileCorrupt",
    "HistoryFileError",
    "HistoryFileLocked",
    "HubClosed",
    "InvalidMessage",
    "InvalidSelector",
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


class BroadcastIncomplete(BackendUnavailable):
    """A broadcast that the backend stored on some channels only.

    ``ids`` holds the id of each channel that got the event, ``failed`` the reason for each
    channel that did not (the event is not stored there: publish it again, with a message id
    to make the retry idempotent).
    """

    def __init__(self, ids: dict[str, str], failed: dict[str, str]) -> None:
        shown = ", ".join(list(failed)[:20]) + (", ..." if len(failed) > 20 else "")
        reason = next(iter(failed.values()), "")
        super().__init__(
            f"the broadcast was not stored on {len(failed)} of {len(ids) + len(failed)} "
            f"channels ({shown}): {reason}"
        )
        self.ids = ids
        self.failed = failed


class SubscriptionDenied(SSEHubError, PermissionError):
    """The hub's ``authorize`` hook refused the subscription."""


class UnsupportedServer(SSEHubError, RuntimeError):
    """The server runs the app in a way ssehub does not support (gevent or eventlet green
    threads for the thread-based WSGI integration); the message says what to run instead."""


class InvalidSelector(SSEHubError, ValueError):
    """A channel selector that cannot be used: empty, too long, holding a control character, a
    ``{`` or ``}`` that does not form a valid RFC 6570 expression, or too many selectors in one
    set (the message says which)."""


class InvalidToken(SSEHubError, PermissionError):
    """A JWT that was presented but cannot be trusted or used: malformed, too large, expired, not
    yet valid, badly signed, signed with an algorithm that is not allowed, or holding a claim of
    the wrong shape. The message says which; it never holds the token."""


class HistoryFileError(SSEHubError, RuntimeError):
    """The history file of a durable backend (``ssehub serve --data DIR``, `SqliteBackend`)
    cannot be used: it cannot be created, opened or read (the message says which file and
    why). Raised at start, never later: a hub does not start with an empty history instead."""


class HistoryFileLocked(HistoryFileError):
    """Another hub (another process, or another backend in this one) holds the history file:
    two hubs writing one history would assign the same ids."""


class HistoryFileCorrupt(HistoryFileError):
    """The history file is damaged, is not an ssehub history file, or was written by a newer
    ssehub; nothing was changed in it."""
