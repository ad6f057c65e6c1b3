"""A Server-Sent Events client that reconnects on its own and resumes with ``Last-Event-ID``.

It behaves like a browser's ``EventSource``: after any drop (connection error, the server ending
the stream, a 5xx answer) it waits the reconnection time (the server's ``retry:``, capped), then
asks again with the last event id it saw, so a hub that keeps history replays what was missed.
An HTTP 204 ends it quietly, as the spec says; other client errors raise `BadStatus`.
``Last-Event-ID`` is sent as UTF-8, as browsers send it; an id no header can carry (leading or
trailing whitespace, a control character other than tab) is sent as ``?lastEventId=`` instead,
which ssehub reads the same way.

    async with ssehub.client.connect(url, headers={"Authorization": "Bearer T"}) as events:
        async for message in events:
            print(message.id, message.event, message.data)

    with ssehub.client.connect_sync(url) as events:  # the same, for plain threads
        for message in events:
            ...

To publish, `Publisher` (async) and `SyncPublisher` (threads) keep one streaming POST open
to the hub and pipeline events over it, one NDJSON line each, returning each event's id:

    async with ssehub.client.Publisher(hub + "/events/news", headers=auth) as publisher:
        event_id = await publisher.publish("hello")

Built on httpx (the ``ssehub[client]`` extra), imported only when a source is created, and on
ssehub's own `EventParser`; events are `ssehub.Message` values.
"""

from __future__ import annotations

from ssehub.client._async import EventSource, connect
from ssehub.client._exceptions import (
    BadContentType,
    BadStatus,
    ClientError,
    ConnectionLost,
    UnsendableRequest,
)
from ssehub.client._publisher import Publisher, PublishRefused, SyncPublisher
from ssehub.client._sync import SyncEventSource, connect_sync

__all__ = [
    "BadContentType",
    "BadStatus",
    "ClientError",
    "ConnectionLost",
    "EventSource",
    "PublishRefused",
    "Publisher",
    "SyncEventSource",
    "SyncPublisher",
    "UnsendableRequest",
    "connect",
    "connect_sync",
]
