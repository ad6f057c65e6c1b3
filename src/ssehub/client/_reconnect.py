"""The reconnection policy of the SSE client, as plain data in and decisions out (sans-IO).

`Reconnection` is what a reconnecting source knows between connections and decides at each
step: the headers of the next request (with ``Last-Event-ID``), what an answer means (`Stream`,
`Stop`, `Retry`, `Fail`, `Reject`), the events a chunk of the stream completes, and how long to
wait after a drop (the server's ``retry:``, doubling with each failure in a row, a random
jitter, ``Retry-After``, all capped). It does no I/O and never imports httpx, so that every
decision is tested with plain values; the async and the sync source only carry them out.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeAlias
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ssehub.client._exceptions import (
    BadContentType,
    BadStatus,
    ClientError,
    ConnectionLost,
    RetryableStatus,
)
from ssehub.wire import EventParser, Message, id_problem

RETRYABLE_STATUS = frozenset({408, 429})
"""Client-error statuses that mean "try again later" rather than "this request is wrong"."""

EXCERPT_BYTES = 512
"""How much of a rejected answer's body to read for `BadStatus.body`."""

MAX_DOUBLINGS = 16
"""The backoff doubles at most this many times (it is capped by ``max_reconnect_delay`` anyway)."""


@dataclass(frozen=True, slots=True)
class Stream:
    """Read the response body as the event stream."""


@dataclass(frozen=True, slots=True)
class Stop:
    """End quietly: close the response (if any) and end the iteration (HTTP 204, or closed)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Close the response (if any), wait ``delay`` seconds, then connect again."""

    delay: float


@dataclass(frozen=True, slots=True)
class Fail:
    """Close the response (if any) and raise ``error``."""

    error: ClientError


@dataclass(frozen=True, slots=True)
class Reject:
    """Read up to `EXCERPT_BYTES` of the body, close the response, raise ``error(body)``."""

    url: str
    status_code: int

    def error(self, body: bytes) -> BadStatus:
        """The `BadStatus` to raise, with the start of the body as the server's message."""
        text = body[:EXCERPT_BYTES].decode("utf-8", "replace").strip()
        return BadStatus(self.url, self.status_code, text)


STREAM = Stream()
STOP = Stop()

Answer: TypeAlias = Stream | Stop | Retry | Fail | Reject
"""What to do with a response: the result of `Reconnection.on_response`."""

AfterDrop: TypeAlias = Stop | Retry | Fail
"""What to do once a connection failed or ended: the result of `Reconnection.dropped`."""


def wait_or_raise(decision: Stop | Retry | Fail) -> float | None:
    """The seconds to wait before connecting again (None after `Stop`); raises a `Fail`'s error."""
    if isinstance(decision, Fail):
        raise decision.error
    return decision.delay if isinstance(decision, Retry) else None


def retry_after_seconds(value: str | None) -> float | None:
    """The delay a ``Retry-After`` header asks for in seconds, or None when absent or a date."""
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is rare for SSE; the normal backoff applies then
    return float(value.strip())


class Reconnection:
    """The state and the decisions of one reconnecting source, shared by both sources (no I/O).

    Holds the URL and headers, the last event id to resend, the reconnection time (updated by
    the server's ``retry:``), the count of failed attempts in a row, the current stream's
    parser, the events received but not yet delivered, and whether the source is closed.
    ``rng`` gives the random fraction in [0, 1) of the jitter (tests pass their own).
    Not thread-safe beyond what the sync source needs: `close` may race with the reader.
    """

    __slots__ = (
        "closed",
        "delay",
        "delivered_id",
        "headers",
        "jitter",
        "max_delay",
        "max_reconnects",
        "parser",
        "pending",
        "reconnects",
        "rng",
        "streak",
        "stream_id",
        "url",
    )

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect_delay: float = 3.0,
        max_reconnect_delay: float = 30.0,
        max_reconnects: int | None = None,
        jitter: float = 0.1,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if reconnect_delay < 0:
            raise ValueError(f"reconnect_delay must be >= 0 seconds, got {reconnect_delay!r}")
        if max_reconnect_delay < 0:
            raise ValueError(
                f"max_reconnect_delay must be >= 0 seconds, got {max_reconnect_delay!r}"
            )
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or None, got {max_reconnects!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
        if last_event_id is not None and any(c in last_event_id for c in "\r\n\0"):
            raise ValueError(f"last_event_id may not contain CR, LF or NUL: {last_event_id!r}")
        self.url = url
        # The spec's request: ask for an event stream and never a cached one.
        self.headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        lower = {name.lower(): name for name in self.headers}
        for name, value in (headers or {}).items():
            self.headers.pop(lower.get(name.lower(), name), None)
            self.headers[name] = value
        self.stream_id = last_event_id
        """The id to resend as ``Last-Event-ID``: the last one the stream set."""
        self.delivered_id = last_event_id
        """The id of the last event handed to the caller."""
        self.delay = reconnect_delay
        self.max_delay = max_reconnect_delay
        self.max_reconnects = max_reconnects
        self.jitter = jitter
        self.rng = rng
        self.streak = 0
        """Failed attempts in a row since the last stream opened."""
        self.reconnects = 0
        self.parser: EventParser | None = None
        self.pending: deque[Message] = deque()
        self.closed = False

    # -- what the caller sees --------------------------------------------------------------------

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event delivered; the stream's id once every event is delivered."""
        return self.delivered_id if self.pending else self.stream_id

    @property
    def streaming(self) -> bool:
        """True while a stream is open (between `Stream` and the next drop)."""
        return self.parser is not None

    def next_event(self) -> Message | None:
        """The next event to deliver, or None when there is none (or the source is closed)."""
        if self.closed:
            return None
        try:
            message = self.pending.popleft()
        except IndexError:  # empty, or emptied by a `close` in another thread
            return None
        self.delivered_id = message.id
        return message

    def close(self) -> None:
        """Close for good: events not yet delivered are dropped, and every answer is `Stop`."""
        self.closed = True
        self.pending.clear()

    # -- one connection ----------------------------------------------------------------------

    def request_headers(self) -> dict[str, str]:
        """The headers of the next request, with ``Last-Event-ID`` once the stream set an id.

        An id that a header cannot carry (leading or trailing whitespace, a control character
        other than tab: see `ssehub.wire.id_problem`) is sent in the URL instead
        (`request_url`).
        """
        headers = dict(self.headers)
        event_id = self.stream_id
        # An empty id resets it: then no header is sent, as a browser does.
        if event_id and id_problem(event_id) is None:
            headers["Last-Event-ID"] = event_id
        return headers

    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """`request_headers` as bytes: values in UTF-8, as browsers send ``Last-Event-ID``."""
        return [
            (name.encode("ascii"), value.encode()) for name, value in self.request_headers().items()
        ]

    def request_url(self) -> str:
        """The URL of the next request: ``url``, with a ``lastEventId`` query parameter (as
        ssehub and EventSource polyfills read) when the id cannot travel in a header."""
        event_id = self.stream_id
        if not event_id or id_problem(event_id) is None:
            return self.url
        parts = urlsplit(self.url)
        query = [
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key != "lastEventId"
        ]
        query.append(("lastEventId", event_id))
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    def on_response(self, status_code: int, headers: Mapping[str, str]) -> Answer:
        """What to do with an answer, given its status and headers (names in any case)."""
        if self.closed:
            return STOP
        fields = {name.lower(): value for name, value in headers.items()}
        if status_code == 204:
            self.close()
            return STOP
        if status_code >= 500 or status_code in RETRYABLE_STATUS:
            retry_after = retry_after_seconds(fields.get("retry-after"))
            return self._backoff(RetryableStatus(status_code), retry_after)
        if status_code != 200:
            self.close()
            return Reject(self.url, status_code)
        content_type = fields.get("content-type")
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != "text/event-stream":
            self.close()
            return Fail(BadContentType(self.url, content_type))
        self.streak = 0
        self.parser = EventParser()
        return STREAM

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the open stream; the events they complete become pending."""
        if self.closed or self.parser is None:
            return
        parser = self.parser
        events = parser.feed(chunk)
        if events and self.stream_id is not None:
            # A new connection's parser starts without an id; the stream's id carries over.
            events = [replace(m, id=self.stream_id) if m.id is None else m for m in events]
        if parser.last_event_id is not None:
            self.stream_id = parser.last_event_id
        if parser.retry is not None:
            self.delay = parser.retry / 1000
        self.pending.extend(events)

    def dropped(self, error: BaseException | None = None) -> AfterDrop:
        """What to do after a failed connect, a failed read (``error``) or the stream's end."""
        if self.closed:
            return STOP
        return self._backoff(error, None)

    def interrupted(self) -> None:
        """The caller abandoned the open stream: the next connection is made at once."""
        self.parser = None

    def _backoff(self, error: BaseException | None, retry_after: float | None) -> Retry | Fail:
        self.parser = None
        self.streak += 1
        if self.max_reconnects is not None and self.streak > self.max_reconnects:
            tries = self.streak - 1
            reason = f" (last error: {error})" if error is not None else ""
            lost = ConnectionLost(
                f"lost the stream {self.url} and gave up after {tries} failed reconnection "
                f"attempt{'s' if tries != 1 else ''}{reason}"
            )
            lost.__cause__ = error
            self.close()
            return Fail(lost)
        self.reconnects += 1
        delay = min(self.delay, self.max_delay) * 2.0 ** min(self.streak - 1, MAX_DOUBLINGS)
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay *= 1 + self.jitter * self.rng()
        return Retry(min(delay, self.max_delay))
