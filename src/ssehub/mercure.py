"""The Mercure protocol as data (sans-IO): discovery, publish forms, subscribe queries, resuming.

Mercure (an IETF draft, https://mercure.rocks) is the most deployed protocol for SSE hubs.
``ssehub serve`` speaks it at `HUB_PATH` (see the README's "Mercure" section); this module holds
every decision of the protocol that needs no socket, so that it is tested with plain data and
the server only reads requests and sends answers:

- `link_header`: the ``Link: <...>; rel="mercure"`` header by which a web app tells its clients
  where the hub is (discovery), for library users too.
- `parse_update`: a form-encoded publish body (``topic`` repeated, ``data``, ``private``, ``id``,
  ``type``, ``retry``) to an `Update`, or an `InvalidUpdate` with its HTTP status.
- `subscribe_topics` and `last_event_id`: what a subscribe request's query asks for.
- `resume_header`: the ``Last-Event-ID`` response header of a resumed subscription.

Topics are ssehub channels, name for name: an update to ``https://example.com/books/1`` is an
event of the channel of that name, and a topic selector is a channel selector (exact, ``*``,
RFC 6570 template: `ssehub.selectors`). The protocol is the one deployed today (the reference
hub's, draft 07 of the spec); names of the newer draft are accepted where they do not conflict
(``match`` and ``match_exact`` for exact topics, ``last_event_id``, the ``mercureAccessToken``
cookie and the ``access_token`` parameter).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlsplit

from ssehub.errors import InvalidMessage
from ssehub.resume import EARLIEST
from ssehub.selectors import MAX_SELECTOR_LENGTH, MAX_SELECTORS
from ssehub.wire import Message, id_problem

__all__ = [
    "EARLIEST_ID",
    "FORM_TYPE",
    "HUB_PATH",
    "JSONLD_CONTEXT",
    "MAX_TOPICS",
    "MAX_TOPIC_LENGTH",
    "SUBSCRIPTIONS_PATH",
    "InvalidUpdate",
    "Update",
    "addresses_hub",
    "last_event_id",
    "link_header",
    "new_id",
    "parse_update",
    "pattern_template",
    "resume_header",
    "subscribe_topics",
    "subscription",
    "subscription_topic",
    "subscriptions",
    "topic_problem",
]

HUB_PATH: Final = "/.well-known/mercure"
"""The path of a Mercure hub (RFC 8615 well-known URI), and of the namespace reserved to it."""

SUBSCRIPTIONS_PATH: Final = HUB_PATH + "/subscriptions"
"""The subscriptions API's collection, and the prefix of subscription events' topics."""

JSONLD_CONTEXT: Final = "https://mercure.rocks/"
"""The ``@context`` of the subscriptions API's JSON-LD documents."""

FORM_TYPE: Final = "application/x-www-form-urlencoded"
"""The media type of a publish body."""

EARLIEST_ID: Final = "earliest"
"""The reserved ``Last-Event-ID`` asking for every retained update (and the answer of a resume
that has no event before the first one sent)."""

MAX_TOPICS: Final = MAX_SELECTORS
"""The most topics one publish may name, and the most selectors one subscription may read."""

MAX_TOPIC_LENGTH: Final = MAX_SELECTOR_LENGTH
"""The longest topic a publish may name, in characters (a longer one could not be selected)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_EXACT_PARAMS = frozenset({"topic", "match", "match_exact"})
_PATTERN_PARAMS = frozenset({"match_urlpattern", "matchURLPattern"})
# A URL pattern's named group (``:id``) or wildcard (``*``); any other pattern syntax (regexp
# groups, ``{...}`` groups, modifiers, escapes) is not translated.
_PATTERN_PART = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)|\*")
_PATTERN_SYNTAX = frozenset("(){}\\?+")
_ID_PARAMS = ("lastEventID", "lastEventId", "last_event_id", "Last-Event-ID")


class InvalidUpdate(ValueError):
    """A Mercure request refused for what it says: ``status`` (400, 413 or 415) and a message
    for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Update:
    """What a Mercure publish asks for: one event to ``topics`` (the first is canonical)."""

    topics: tuple[str, ...]
    """The topics (channels), distinct, in the order given."""
    data: str = ""
    """The event's data (empty when the form has no ``data``)."""
    private: bool = False
    """Whether only subscribers allowed to read one of the topics' private events get it."""
    id: str | None = None
    """The publisher's id for the event, or None (the hub makes one: `new_id`)."""
    type: str | None = None
    """The SSE ``event`` field, or None."""
    retry: int | None = None
    """The SSE ``retry`` field, or None."""

    def message(self, event_id: str) -> Message:
        """The `Message` of this update, carrying ``event_id`` (its own id, or one made)."""
        return Message(self.data, id=event_id, event=self.type, retry=self.retry)


def new_id() -> str:
    """An id for an update published without one: ``urn:uuid:`` and a random UUID (v4)."""
    return f"urn:uuid:{uuid.uuid4()}"


def link_header(
    hub_url: str,
    topic: str | None = None,
    *,
    last_event_id: str | None = None,
    content_type: str | None = None,
) -> str:
    """The value of the ``Link`` header that advertises a Mercure hub (discovery).

    ``hub_url`` is the hub's Mercure URL (``https://hub.example.com/.well-known/mercure``) or its
    base URL, to which `HUB_PATH` is added. With ``topic``, a ``rel="self"`` link names the
    topic subscribers should use; ``last_event_id`` (the newest update the page reflects, which
    the subscriber passes back as ``lastEventID``) and ``content_type`` (of the updates) are
    the hub link's attributes. Raises ValueError for a URL or value that could break the
    header (a control character, ``<``, ``>``, or a quote in an attribute).

    >>> link_header("https://hub.example.com")
    '<https://hub.example.com/.well-known/mercure>; rel="mercure"'
    """
    base = hub_url.rstrip("/")
    url = base if urlsplit(base).path.endswith(HUB_PATH) else base + HUB_PATH
    links = [f'<{_link_target(url)}>; rel="mercure"']
    for name, value in (("last-event-id", last_event_id), ("content-type", content_type)):
        if value is not None:
            if _CONTROL.search(value) or '"' in value or "\\" in value:
                raise ValueError(f"{name} {value!r} cannot be a Link attribute")
            links[0] += f'; {name}="{value}"'
    if topic is not None:
        links.append(f'<{_link_target(topic)}>; rel="self"')
    return ", ".join(links)


def _link_target(url: str) -> str:
    if not url or _CONTROL.search(url) or "<" in url or ">" in url:
        raise ValueError(f"{url!r} cannot be a Link target")
    return url


def addresses_hub(topic: str) -> bool:
    """Whether ``topic`` names the hub's own namespace (`HUB_PATH` and below), where only the
    hub publishes (its subscription events).

    The topic's path is compared once resolved as a URL (percent-encoded unreserved characters
    decoded, dot segments removed), whatever its scheme and host, so that
    ``https://hub/.well-known/%6Dercure/x`` or ``/a/../.well-known/mercure`` are caught too; as
    in the reference hub, a topic that holds `HUB_PATH` anywhere is caught as well.
    """
    if HUB_PATH in topic:
        return True
    try:
        path = urlsplit(topic).path
    except ValueError:
        return False
    path = _PERCENT.sub(_decode_unreserved, path)
    path = _remove_dot_segments(path)
    return path == HUB_PATH or path.startswith(HUB_PATH + "/")


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0)


def _remove_dot_segments(path: str) -> str:
    # RFC 3986, section 5.2.4, on the segments of an absolute or relative path.
    out: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == ".":
            if last:
                out.append("")
        elif segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/".join(out)


def topic_problem(topic: str, reserved: Collection[str] = ()) -> tuple[int, str] | None:
    """Why ``topic`` may not be published to, as ``(status, message)``, or None.

    Refused: an empty topic, one with a control character, ``*`` (it selects every topic), one
    in the hub's namespace (`addresses_hub`) or among ``reserved`` (the hub's own channels),
    with 400; one longer than `MAX_TOPIC_LENGTH`, with 413.
    """
    if not topic:
        return 400, "a topic may not be empty"
    if len(topic) > MAX_TOPIC_LENGTH:
        return 413, f"a topic is at most {MAX_TOPIC_LENGTH} characters, got {len(topic)}"
    if _CONTROL.search(topic):
        return 400, f"the topic {topic!r} holds a control character"
    if topic == "*":
        return 400, "'*' is the selector of every topic: it cannot be published to"
    if addresses_hub(topic) or topic in reserved:
        return 400, f"the topic {topic!r} is reserved to the hub"
    return None


def parse_update(
    body: bytes, *, reserved: Collection[str] = (), max_topics: int = MAX_TOPICS
) -> Update:
    """The `Update` a form-encoded publish body (`FORM_TYPE`) asks for.

    Fields: ``topic`` (at least one, at most ``max_topics``; repeated for alternate topics, the
    first being canonical; duplicates count once), ``data`` (default empty), ``private`` (its
    presence, whatever its value, makes the update private), ``id`` (not starting with ``#``,
    not ``earliest``, nothing a client could not send back as ``Last-Event-ID``), ``type`` and
    ``retry`` (digits only). A field given twice counts by its first value (``topic`` aside);
    an empty ``id``, ``type`` or ``retry`` counts as absent; unknown fields are ignored.

    Raises `InvalidUpdate`: 400 for a body that is not UTF-8 or a field that breaks a rule
    above (`topic_problem` for each topic), 413 for too many topics or too long a one.
    """
    try:
        text = body.decode()
        fields = parse_qsl(
            text, keep_blank_values=True, errors="strict", max_num_fields=4 * max_topics + 64
        )
    except UnicodeDecodeError:
        raise InvalidUpdate(400, "the body is not UTF-8 (once percent-decoded)") from None
    except ValueError:
        raise InvalidUpdate(
            413, f"too many fields: a publish names at most {max_topics} topics"
        ) from None
    topics: list[str] = []
    first: dict[str, str] = {}
    private = False
    for name, value in fields:
        if name == "topic":
            topics.append(value)
        elif name == "private":
            private = True
        else:
            first.setdefault(name, value)
    if not topics:
        raise InvalidUpdate(400, 'missing "topic": a publish names at least one topic')
    names = tuple(dict.fromkeys(topics))
    if len(names) > max_topics:
        raise InvalidUpdate(
            413, f"one update may name at most {max_topics} topics, got {len(names)}"
        )
    for topic in names:
        problem = topic_problem(topic, reserved)
        if problem is not None:
            raise InvalidUpdate(*problem)
    event_id = first.get("id") or None
    if event_id is not None:
        if event_id.startswith("#"):
            raise InvalidUpdate(400, f'the id {event_id!r} may not start with "#"')
        if event_id == EARLIEST_ID:
            raise InvalidUpdate(400, '"earliest" is reserved: it cannot be an update\'s id')
        problem_text = id_problem(event_id)
        if problem_text is not None:
            raise InvalidUpdate(400, f"the id {event_id!r} cannot be resumed from: {problem_text}")
    event_type = first.get("type") or None
    if event_type is not None and _CONTROL.search(event_type):
        raise InvalidUpdate(400, f"the type {event_type!r} holds a control character")
    retry_text = first.get("retry") or None
    retry = None
    if retry_text is not None:
        if not (retry_text.isascii() and retry_text.isdigit()):
            raise InvalidUpdate(
                400, f'"retry" is a number of milliseconds (digits only), got {retry_text!r}'
            )
        retry = int(retry_text)
    update = Update(names, first.get("data", ""), private, event_id, event_type, retry)
    try:
        update.message(event_id or "x")
    except InvalidMessage as exc:  # what the checks above let through, should there be any
        raise InvalidUpdate(400, str(exc)) from None
    return update


def subscribe_topics(params: Sequence[tuple[str, str]]) -> list[str]:
    """The topic selectors of a subscribe request's query (its ``(name, value)`` pairs).

    ``topic`` (exact topics, URI templates, ``*``), the newer draft's ``match`` and
    ``match_exact`` (exact topics, or ``*``), and its ``match_urlpattern`` (or
    ``matchURLPattern``) for the URL patterns `pattern_template` translates. Any other
    parameter in the reserved ``match`` namespace is refused, as is a request with no topic or
    an empty one: `InvalidUpdate` 400. Selectors are checked by the hub (`ssehub.Selectors`).
    """
    topics: list[str] = []
    for name, value in params:
        if name in _EXACT_PARAMS:
            if name != "topic" and value != "*" and ("{" in value or "}" in value):
                raise InvalidUpdate(
                    400,
                    f"{name}={value!r}: ssehub cannot select a topic holding braces exactly "
                    "(it reads them as a URI template); use topic=",
                )
            if not value:
                raise InvalidUpdate(400, f"{name}= is empty: name a topic selector")
            topics.append(value)
        elif name in _PATTERN_PARAMS:
            topics.append(pattern_template(value))
        elif name.lower().startswith("match"):
            raise InvalidUpdate(
                400,
                f"the matcher {name!r} is not supported: use topic= with an exact topic, '*' or "
                "a URI template (RFC 6570) such as https://example.com/books/{id}",
            )
    if not topics:
        raise InvalidUpdate(
            400,
            'missing "topic": subscribe with ?topic=<selector> (repeatable): an exact topic, '
            "'*' or a URI template",
        )
    return topics


def pattern_template(pattern: str) -> str:
    """The URI template that selects what the URL pattern ``pattern`` (the newer draft's
    ``match_urlpattern``) matches, for the patterns made of literal text, named groups
    (``:id``, one path segment: ``{id}``) and ``*`` wildcards (anything: ``{+any}``).

    `InvalidUpdate` 400 for any other pattern syntax (regexp and ``{...}`` groups, modifiers,
    escapes), which ssehub does not translate. A relative pattern matches relative topics as
    they are written (the hub's URL is not prepended).
    """
    if pattern == "*":
        return "*"
    if not pattern:
        raise InvalidUpdate(400, "match_urlpattern= is empty: name a URL pattern")
    out: list[str] = []
    position = 0
    for count, found in enumerate(_PATTERN_PART.finditer(pattern), 1):
        out.append(_literal(pattern[position : found.start()], pattern))
        out.append(f"{{{found.group(1)}}}" if found.group(1) else f"{{+any{count}}}")
        position = found.end()
        if pattern[position : position + 1] in ("?", "+", "*") and found.group(1):
            raise InvalidUpdate(400, _unsupported(pattern))
    out.append(_literal(pattern[position:], pattern))
    return "".join(out)


def _literal(text: str, pattern: str) -> str:
    if any(char in _PATTERN_SYNTAX for char in text):
        raise InvalidUpdate(400, _unsupported(pattern))
    return text


def _unsupported(pattern: str) -> str:
    return (
        f"the URL pattern {pattern!r} is not supported: ssehub takes literal text, named "
        "groups (:id) and * wildcards; or use topic= with a URI template"
    )


def last_event_id(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """Where a subscriber resumes: the ``Last-Event-ID`` header, else the ``lastEventID`` query
    parameter (or ``lastEventId``, ``last_event_id``, ``Last-Event-ID``), else None.

    ``earliest`` (every retained update) is `ssehub.resume.EARLIEST`, which the hub understands;
    ``headers`` has lower-case names.
    """
    value = headers.get("last-event-id")
    if not value:
        value = next((query[name] for name in _ID_PARAMS if query.get(name)), None)
    if value == EARLIEST_ID:
        return EARLIEST
    return value


def resume_header(requested: str | None, resumed: bool | None) -> str | None:
    """The ``Last-Event-ID`` response header of a subscription that asked to resume after
    ``requested`` (None: it did not ask, and gets no header).

    The id of the event before the first one sent: ``requested`` when history held it
    (``resumed``), else `EARLIEST_ID` (every retained update was sent, from the oldest: the
    subscriber compares it with the id it asked for to learn that it may have lost some).
    """
    if requested is None:
        return None
    if requested == EARLIEST or not resumed:
        return EARLIEST_ID
    return requested


def subscription_topic(topic: str, subscriber: str) -> str:
    """The topic (and the subscriptions API's URL path) of the subscription of ``subscriber`` to
    the selector ``topic``: ``/.well-known/mercure/subscriptions/{topic}/{subscriber}``, each
    value percent-encoded as RFC 6570 expands it (everything but unreserved characters)."""
    return f"{SUBSCRIPTIONS_PATH}/{quote(topic, safe='')}/{quote(subscriber, safe='')}"


def subscription(
    topic: str,
    subscriber: str,
    *,
    active: bool = True,
    payload: Any = None,
    context: bool = False,
    last_event_id: str | None = None,
) -> dict[str, Any]:
    """The JSON-LD document of one subscription (a subscription event's data, an item of a
    collection, or, with ``context`` and ``last_event_id``, the API's answer for it)."""
    document: dict[str, Any] = {}
    if context:
        document["@context"] = JSONLD_CONTEXT
    document["id"] = subscription_topic(topic, subscriber)
    document["type"] = "Subscription"
    document["topic"] = topic
    document["subscriber"] = subscriber
    document["active"] = active
    if payload is not None:
        document["payload"] = payload
    if last_event_id is not None:
        document["lastEventID"] = last_event_id
    return document


def subscriptions(
    url: str, last_event_id: str, items: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The JSON-LD document of a collection of subscriptions (`subscription` documents),
    answered at ``url``; ``last_event_id`` is where a subscriber to subscription events resumes
    so that it misses no change made after this list (`EARLIEST_ID` when there is none yet)."""
    return {
        "@context": JSONLD_CONTEXT,
        "id": url,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": list(items),
    }
