"""ssehub: a fast Server-Sent Events hub with isolated channels, broadcast and replay."""

from __future__ import annotations

# The protocol adapters register themselves as Hub.asgi and Hub.wsgi when imported.
from ssehub import asgi as asgi
from ssehub import wsgi as wsgi
from ssehub.backends import Backend, MemoryBackend, PublishResult, Replay, SqliteBackend
from ssehub.errors import (
    BackendUnavailable,
    BroadcastIncomplete,
    EventTooLarge,
    HistoryFileCorrupt,
    HistoryFileError,
    HistoryFileLocked,
    HubClosed,
    InvalidMessage,
    InvalidSelector,
    InvalidToken,
    SSEHubError,
    SubscriptionDenied,
    UnsupportedServer,
)
from ssehub.event_stream import EventStream
from ssehub.hub import GAP_EVENT, Access, Channel, Hub
from ssehub.request import Request
from ssehub.selectors import Selector, Selectors
from ssehub.subscription import CloseReason, Subscription, ThreadedSubscription
from ssehub.wire import EventParser, Message, encode_comment

__all__ = [
    "GAP_EVENT",
    "Access",
    "Backend",
    "BackendUnavailable",
    "BroadcastIncomplete",
    "Channel",
    "CloseReason",
    "EventParser",
    "EventStream",
    "EventTooLarge",
    "HistoryFileCorrupt",
    "HistoryFileError",
    "HistoryFileLocked",
    "Hub",
    "HubClosed",
    "InvalidMessage",
    "InvalidSelector",
    "InvalidToken",
    "MemoryBackend",
    "Message",
    "PublishResult",
    "Replay",
    "Request",
    "SSEHubError",
    "Selector",
    "Selectors",
    "SqliteBackend",
    "Subscription",
    "SubscriptionDenied",
    "ThreadedSubscription",
    "UnsupportedServer",
    "encode_comment",
]

__version__ = "0.1.0"
