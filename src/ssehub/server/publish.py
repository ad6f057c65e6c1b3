"""Publish requests as data: a request's head and body in, messages or a typed refusal out.

Sans-IO, like h11: nothing here reads a socket or awaits. The app reads the body; this module
decides. The checks run in two steps, so that a refusal happens as early as it can:

1. `check_head`, from the headers alone, before the body is read: the publish token (401), on a
   hub without one a browser's ``Origin`` that is neither the hub's own nor allowed (403), a
   declared ``Content-Length`` over the limit (413), a compressed body (415).
2. `parse_body`, once the body is in: a charset other than UTF-8 or bytes that are not UTF-8
   (415); then, for ``application/json`` (or any ``+json`` type), one JSON object
   ``{"data", "event"?, "id"?, "retry"?, "private"?}`` or an array of them (400 when
   malformed, with an unknown field, a value of the wrong type, or a value `Message` refuses);
   ``data`` that is not a string (``{"price": 42}``, a list, a number, ``true``, ``null``) is
   sent as compact JSON; ``"private": true`` makes it a `PrivateMessage`; otherwise the raw
   text is the data. `parse_channels` reads the body of ``POST /events``: one JSON object that
   also names its ``channels``.

Every refusal is a `PublishError` with its HTTP status and a message that says what was wrong
and what is allowed. `parse_publish` runs both steps on a complete request.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ssehub.errors import InvalidMessage
from ssehub.server._json import loads
from ssehub.server.cors import CORS
from ssehub.server.routing import HTTPError
from ssehub.wire import Message, id_problem

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY",
    "MAX_CHANNELS",
    "PrivateMessage",
    "Publication",
    "PublishError",
    "PublishHead",
    "check_event_sizes",
    "check_head",
    "parse_body",
    "parse_channels",
    "parse_publish",
]

DEFAULT_MAX_BODY = 1024 * 1024
"""The largest publish body accepted by default (1 MiB)."""

DEFAULT_MAX_BATCH = 1000
"""The most messages one JSON array may publish by default (more gets 413)."""

FIELDS = frozenset({"data", "event", "id", "retry", "private"})
"""The fields of a JSON message."""

MAX_CHANNELS = 64
"""The most channels one ``POST /events`` may name (more gets 413), as many as the selectors one
stream may read."""

EVENTS_PREFIX = "/events/"

_BEARER_REALM = [(b"www-authenticate", b'Bearer realm="ssehub"')]


class PublishError(HTTPError):
    """A publish refused: ``status`` (400, 401, 403, 413 or 415) and a ``message`` for the
    client."""


class PrivateMessage(Message):
    """A `Message` published with ``"private": true``: only subscribers allowed to read the
    channel's private events get it (``Hub.publish(..., private=True)``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Publication:
    """What a ``POST /events`` body publishes: one event to several channels."""

    channels: tuple[str, ...]
    """The channels, distinct, in the order given."""
    message: Message
    """The event (a `PrivateMessage` for ``"private": true``)."""


@dataclass(frozen=True, slots=True)
class PublishHead:
    """What a publish request's head says about its body, once `check_head` accepted it."""

    json: bool
    """Whether the body is JSON (``application/json`` or a ``+json`` type)."""
    charset: bytes | None = None
    """The ``charset`` parameter of the Content-Type, lowercased, if it has one."""


_JSON_HEAD = PublishHead(json=True)
_TEXT_HEAD = PublishHead(json=False)


def check_head(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    token: bytes | None,
    max_body: int,
    cors: CORS | None = None,
) -> PublishHead:
    """Check a publish request's head (ASGI headers: lowercase names); raise `PublishError`.

    ``token``, when set, must come as ``Authorization: Bearer <token>`` (401 otherwise). Without
    a token, a request with an ``Origin`` that ``cors`` does not allow to publish
    (`CORS.allows_publish`: same origin or an allowed one) gets 403: a browser cannot be made to
    publish from another site. A declared ``Content-Length`` over ``max_body`` gets 413, a
    ``Content-Encoding`` other than identity 415.
    """
    content_type = b""
    authorization = None
    origin = None
    host = None
    length = -1
    encoded = False
    for name, value in headers:
        if name == b"content-type":
            content_type = value
        elif name == b"authorization":
            authorization = value
        elif name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"content-encoding":
            encoded = value.strip().lower() != b"identity"
        elif name == b"origin":
            origin = value
        elif name == b"host":
            host = value
    if token is not None and (
        authorization is None
        or authorization[:7].lower() != b"bearer "
        or not hmac.compare_digest(authorization[7:].strip(), token)
    ):
        raise PublishError(
            401,
            "publishing needs the header 'Authorization: Bearer <publish token>'",
            _BEARER_REALM,
        )
    if (
        token is None
        and origin is not None
        and cors is not None
        and not cors.allows_publish(origin, host)
    ):
        raise PublishError(
            403,
            f"publishing from the origin {origin.decode('latin-1')!r} is not allowed: only "
            "the hub's own origin and --cors-origin origins may publish from a browser "
            "(or set a publish token)",
        )
    if length > max_body:
        raise too_large(max_body)
    if encoded:
        raise PublishError(415, "compressed bodies are not accepted; send identity encoding")
    mime, _, params = content_type.partition(b";")
    mime = mime.strip().lower()
    charset = None
    if params and b"charset" in params.lower():
        # Only a parameter named exactly "charset" (not, say, "x-charset-hint") names one.
        for param in params.lower().split(b";"):
            name, _, value = param.partition(b"=")
            if name.strip() == b"charset":
                charset = value.strip(b" \"'")
                break
    json = mime == b"application/json" or mime.endswith(b"+json")
    if charset is None:  # the usual case, on the hot path: no new object
        return _JSON_HEAD if json else _TEXT_HEAD
    return PublishHead(json=json, charset=charset)


def too_large(max_body: int) -> PublishError:
    """The 413 for a body over ``max_body`` bytes (declared, or counted while it is read)."""
    return PublishError(413, f"the body is over the limit of {max_body} bytes")


def parse_body(
    head: PublishHead, body: bytes, *, max_batch: int = DEFAULT_MAX_BATCH
) -> Message | list[Message]:
    """The message (or, for a JSON array, the messages in order) that ``body`` publishes.

    Raises `PublishError`: 415 for a charset other than UTF-8 or bytes that are not UTF-8, 400
    for malformed JSON (nested too deeply included) or a message that is not valid (the error
    names the item of an array), 413 for an array of more than ``max_batch`` messages. One bad
    item refuses the whole array: every item is a valid, encodable `Message` before any is
    published.
    """
    text = _text(head, body)
    if head.json:
        parsed = _json(text)
        if type(parsed) is list:
            if len(parsed) > max_batch:
                raise PublishError(
                    413,
                    f"a batch may hold at most {max_batch} messages, got {len(parsed)}; "
                    "split it into several requests",
                )
            return [message_from(item, f"item {i}: ") for i, item in enumerate(parsed)]
        return message_from(parsed)
    try:
        return Message(text)
    except InvalidMessage as exc:  # pragma: no cover - any str is valid data
        raise PublishError(400, str(exc)) from None


def _text(head: PublishHead, body: bytes) -> str:
    if head.charset is not None and head.charset not in (b"utf-8", b"utf8"):
        raise PublishError(415, f"only UTF-8 bodies are accepted, not {head.charset.decode()!r}")
    try:
        return body.decode()
    except UnicodeDecodeError as exc:
        raise PublishError(
            415, f"the body is not valid UTF-8 (byte {exc.start}): only UTF-8 is accepted"
        ) from None


def _json(text: str) -> Any:
    try:
        return loads(text)
    except ValueError as exc:
        raise PublishError(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise PublishError(400, "malformed JSON: nested too deeply") from None


_CHANNELS_FIELDS = FIELDS | {"channels"}
_CHANNELS_EXAMPLE = '{"channels": ["/events/a", "/events/b"], "data": "..."}'


def parse_channels(
    head: PublishHead, body: bytes, *, max_channels: int = MAX_CHANNELS
) -> Publication:
    """The event a ``POST /events`` body publishes, and its channels.

    The body is one JSON object: ``channels`` (a non-empty list of distinct channel names, each
    a full path such as ``/events/news``, not a selector: no ``*``, no ``{``), the fields of a
    message (`message_from`: ``data``, ``event``?, ``id``?, ``retry``?, ``private``?).

    Raises `PublishError`: 415 for a body that is not JSON (by its Content-Type) or not UTF-8,
    400 for malformed JSON, an array, a bad channel list or a bad message, 413 for more than
    ``max_channels`` channels.
    """
    if not head.json:
        raise PublishError(
            415,
            "POST /events takes a JSON object (Content-Type: application/json): "
            + _CHANNELS_EXAMPLE,
        )
    parsed = _json(_text(head, body))
    if type(parsed) is not dict:
        raise PublishError(
            400,
            f"POST /events takes one JSON object like {_CHANNELS_EXAMPLE}, got "
            f"{type(parsed).__name__} (a batch goes to POST /events/<channel>)",
        )
    if not parsed.keys() <= _CHANNELS_FIELDS:
        unknown = ", ".join(sorted(repr(k) for k in parsed.keys() - _CHANNELS_FIELDS))
        raise PublishError(
            400,
            f"unknown field(s) {unknown}; allowed: channels, data, event, id, retry, private",
        )
    channels = parsed.pop("channels", None)
    if type(channels) is not list or not channels:
        raise PublishError(
            400, f'"channels" must be a non-empty list of channel names: {_CHANNELS_EXAMPLE}'
        )
    if len(channels) > max_channels:
        raise PublishError(
            413,
            f"one event may go to at most {max_channels} channels, got {len(channels)}; "
            "split it into several requests",
        )
    for i, channel in enumerate(channels):
        problem = channel_problem(channel)
        if problem is not None:
            raise PublishError(400, f"channels[{i}]: {problem}")
    names = tuple(dict.fromkeys(channels))
    if len(names) != len(channels):
        twice = next(name for i, name in enumerate(channels) if name in channels[:i])
        raise PublishError(400, f"channels must be distinct: {twice!r} is given twice")
    return Publication(names, message_from(parsed))


def channel_problem(name: object) -> str | None:
    """What makes ``name`` unfit as a channel to publish to, or None: it must be a str, a full
    path (``/events/`` and a name), without control characters, and not a selector (``*`` or
    a URI template: ``{`` or ``}``)."""
    if type(name) is not str:
        return f"a channel name is a string, got {type(name).__name__}"
    if not name.startswith(EVENTS_PREFIX) or len(name) == len(EVENTS_PREFIX):
        return f"{name!r} is not a channel name: channels are full paths such as /events/news"
    if "{" in name or "}" in name or name == "*":
        return f"{name!r} is a selector, not a channel name: publish to channels by name"
    if not name.isprintable():
        return f"{name!r} holds a control character"
    return None


def check_event_sizes(messages: list[Message], body_size: int, max_event: int) -> None:
    """Refuse (413) a batch holding an event that would encode to more than ``max_event``
    bytes (a client's buffer), before any of it is published.

    ``body_size`` is the request body's: an event encodes to at most 4 bytes per body byte
    (a JSON ``"\\n"`` becomes ``"\\ndata: "``) plus its id line, so a batch that small is
    accepted without looking at its items. Otherwise each item's size is bounded from above
    (exact for ASCII text), which may refuse an event that would fit by a few bytes per line.
    """
    if 4 * body_size + 96 * len(messages) <= max_event:
        return
    for i, message in enumerate(messages):
        size = _size_bound(message)
        if size > max_event:
            raise PublishError(
                413,
                f"item {i}: the event is about {size} bytes once encoded, larger than a "
                f"client's buffer of {max_event} bytes (raise --max-buffer to send it)",
            )


def _text_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _size_bound(message: Message) -> int:
    data = message.data
    size = _text_size(data) + 7 * (data.count("\n") + data.count("\r") + 1) + 1
    size += 5 + (48 if message.id is None else _text_size(message.id))
    if message.event is not None:
        size += 8 + _text_size(message.event)
    if message.retry is not None:
        size += 28
    if message.comment is not None:
        comment = message.comment
        size += _text_size(comment) + 3 * (comment.count("\n") + comment.count("\r") + 1)
    return size


def message_from(obj: Any, where: str = "") -> Message:
    """The `Message` a parsed JSON value describes; `PublishError` (400) prefixed by ``where``."""
    if type(obj) is not dict:
        raise PublishError(
            400,
            f"{where}a message must be a JSON object like "
            f'{{"data": "...", "event": "...", "id": "...", "retry": 1000}}, '
            f"got {type(obj).__name__}",
        )
    if not obj.keys() <= FIELDS:
        unknown = ", ".join(sorted(repr(k) for k in obj.keys() - FIELDS))
        raise PublishError(
            400, f"{where}unknown field(s) {unknown}; allowed: data, event, id, retry, private"
        )
    if "data" not in obj:
        raise PublishError(400, f'{where}missing field "data" (a string, or any JSON value)')
    # A string is the data as it is; any other JSON value is sent as compact JSON (Message).
    data = obj["data"]
    cls = Message
    if "private" in obj:
        private = obj["private"]
        if type(private) is not bool:
            raise PublishError(
                400, f'{where}"private" must be true or false, got {type(private).__name__}'
            )
        if private:
            cls = PrivateMessage
    try:
        message = cls(data, id=obj.get("id"), event=obj.get("event"), retry=obj.get("retry"))
    except InvalidMessage as exc:
        raise PublishError(400, f"{where}{exc}") from None
    if message.id is not None and (problem := id_problem(message.id)) is not None:
        raise PublishError(400, f"{where}id {message.id!r} cannot be resumed from: {problem}")
    return message


def parse_publish(
    headers: Iterable[tuple[bytes, bytes]],
    body: bytes,
    *,
    token: bytes | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> Message | list[Message]:
    """Both steps on a complete request: `check_head`, the body's size, then `parse_body`."""
    head = check_head(headers, token=token, max_body=max_body)
    if len(body) > max_body:
        raise too_large(max_body)
    return parse_body(head, body, max_batch=max_batch)
