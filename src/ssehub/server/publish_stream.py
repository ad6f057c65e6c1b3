"""The streaming publish as data: NDJSON lines in, publications and answer lines out.

``POST /events`` or ``POST /events/{channel}`` with ``Content-Type: application/x-ndjson``
keeps one request open and publishes one event per line, so a publisher pays one request for
any number of events. Sans-IO, like `ssehub.server.publish`: `Lines` splits the body as it
arrives (bounding each line), `parse_line` turns a line into what it publishes, and
`accepted` / `refused` are the answer's lines; the app (`HubServer`) reads, publishes, writes.

A line is one JSON object with the fields of a publish (``data``, ``event``?, ``id``?,
``retry``?, ``private``?). On ``POST /events`` it also names its channel(s): ``"channel":
"/events/a"`` or ``"channels": [...]``; on ``POST /events/{channel}`` the path is the channel
and a line names none. Blank lines are ignored (a publisher may send one to show it is alive).
Each line gets one answer line, in order: ``{"id": ...}`` (with ``"duplicate": true`` for an
id already retained), or ``{"error": ..., "status": ..., "line": N}``; when the hub ends the
stream (a line over the limit or too late, an expired token, a shutdown), its last answer line
says so with ``"end": true``.
"""

from __future__ import annotations

from typing import Any

from ssehub.server._json import dumps, loads
from ssehub.server.publish import (
    MAX_CHANNELS,
    Publication,
    PublishError,
    channel_problem,
    message_from,
)

__all__ = ["NDJSON", "LineTooLong", "Lines", "accepted", "is_ndjson", "parse_line", "refused"]

NDJSON = b"application/x-ndjson"
"""The Content-Type of a streaming publish (and of its answer)."""


def is_ndjson(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's ``Content-Type`` (ASGI headers) is NDJSON: a streaming publish."""
    for name, value in headers:
        if name == b"content-type":
            return value.partition(b";")[0].strip().lower() == NDJSON
    return False


class LineTooLong(PublishError):
    """A line over the limit (413): the stream ends there (what follows it cannot be framed)."""


class Lines:
    """Splits a streamed body into lines (LF or CRLF ended), each at most ``max_line`` bytes.

    `feed` returns the complete lines in a chunk and keeps the start of the next. A line over
    ``max_line`` (an unfinished one as soon as it is that long, so a line without end costs
    ``max_line`` bytes, never more) ends the splitting: `feed` returns the lines before it and
    sets `too_long`; the next `feed` raises it. `pending` is how much of a line is held.
    """

    __slots__ = ("_held", "max_line", "too_long")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._held = b""
        self.too_long: LineTooLong | None = None
        """The refusal of the line that ended the splitting (None while all fit)."""

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._held)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines ``chunk`` completes (without their line end), up to an over-long one
        (see `too_long`); raises `LineTooLong` once one was found."""
        if self.too_long is not None:
            raise self.too_long
        if self._held:
            chunk = self._held + chunk
        lines = chunk.split(b"\n")
        rest = lines.pop()
        max_line = self.max_line
        for i, line in enumerate(lines):
            if len(line) > max_line:
                self._too_long()
                return lines[:i]
        if len(rest) > max_line:
            self._too_long()
            return lines
        self._held = rest
        return lines

    def end(self) -> bytes:
        """What is held once the body ended: a last line without its line end (maybe empty)."""
        rest, self._held = self._held, b""
        return rest

    def _too_long(self) -> None:
        self._held = b""
        self.too_long = LineTooLong(
            413, f"a line is over the limit of {self.max_line} bytes (--max-body); stream ended"
        )


_CHANNEL_FIELDS = frozenset({"channel", "channels"})


def parse_line(line: bytes, channel: str | None) -> Publication | None:
    """What one line publishes (None for a blank line); `PublishError` (400, 413, 415) if bad.

    ``channel`` is the route's (``POST /events/{channel}``), else None: the line names them.
    """
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line or line.isspace():
        return None
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        raise PublishError(415, f"the line is not valid UTF-8 (byte {exc.start})") from None
    try:
        obj = loads(text)
    except ValueError as exc:
        raise PublishError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise PublishError(400, "malformed JSON: nested too deeply") from None
    if type(obj) is not dict:
        raise PublishError(400, f"a line is one JSON object, got {type(obj).__name__}")
    if channel is not None:
        if not obj.keys().isdisjoint(_CHANNEL_FIELDS):
            raise PublishError(
                400, f"this stream publishes to {channel!r}: a line names no channel"
            )
        return Publication((channel,), message_from(obj))
    return Publication(_channels_of(obj), message_from(obj))


def _channels_of(obj: dict[str, Any]) -> tuple[str, ...]:
    if "channel" in obj:
        if "channels" in obj:
            raise PublishError(400, 'give "channel" or "channels", not both')
        name = obj.pop("channel")
        problem = channel_problem(name)
        if problem is not None:
            raise PublishError(400, f"channel: {problem}")
        return (name,)
    names = obj.pop("channels", None)
    if type(names) is not list or not names:
        raise PublishError(
            400,
            'a line on POST /events names "channel": "/events/..." or "channels": [...] '
            "(or stream to POST /events/<channel>)",
        )
    if len(names) > MAX_CHANNELS:
        raise PublishError(413, f"one event may go to at most {MAX_CHANNELS} channels")
    for i, name in enumerate(names):
        problem = channel_problem(name)
        if problem is not None:
            raise PublishError(400, f"channels[{i}]: {problem}")
    distinct = tuple(dict.fromkeys(names))
    if len(distinct) != len(names):
        raise PublishError(400, "channels must be distinct")
    return distinct


def accepted(event_id: str, duplicate: bool = False) -> bytes:
    """The answer line of a published event."""
    if duplicate:
        return dumps({"id": event_id, "duplicate": True}) + b"\n"
    return b'{"id":' + dumps(event_id) + b"}\n"


def refused(status: int, message: str, line: int, *, end: bool = False) -> bytes:
    """The answer line of a line refused; with ``end``, the last line of the stream (the hub
    ends it there: ``line`` is the first line not published)."""
    answer: dict[str, Any] = {"error": message, "status": status, "line": line}
    if end:
        answer["end"] = True
    return dumps(answer) + b"\n"
