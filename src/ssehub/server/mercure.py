"""``ssehub serve`` as a Mercure hub: the HTTP side of `ssehub.mercure` at ``/.well-known/mercure``.

`HubServer` routes ``GET /.well-known/mercure`` (subscribe) and ``POST /.well-known/mercure``
(publish) here when Mercure is on (``--mercure``: `enabled`). The protocol's decisions are
`ssehub.mercure`'s (sans-IO); this module turns a request into them and their results into
answers, on the hub's own channels, history, replay and JWT rules (`ssehub.server.auth`):

- Subscribing: `subscription_request` reads the topic selectors and where the subscriber
  resumes; the stream is an ordinary ssehub stream of those selectors (`HubServer._stream`), whose
  response carries the ``Last-Event-ID`` header Mercure names (`resume_headers`).
- Publishing: `check_form` refuses a body that is not form-encoded from the head (415), and
  `publish` parses it, checks every topic against the publisher's JWT (403) and publishes one
  event to all its topics; the answer is the update's id as ``text/plain``.
- Tokens: Mercure reads the ``authorization`` query parameter before a cookie (ssehub's own
  routes read the cookie first), so `mercure_scope` drops the cookies of a request that carries
  a token in its query and none in its header.
- Refusals are ``text/plain`` (`text_error`), as the reference hub answers: Mercure clients
  show the body as it is.
- With presence on (``--presence``), the subscriptions API and subscription events are built on
  `ssehub.server.presence`: every presence entry (one stream) is a Mercure subscriber
  (``urn:uuid:`` and its id) with one subscription per selector it reads. `SubscriptionEvents`
  publishes each join and leave as Mercure names them (one private update per selector, on
  `ssehub.mercure.subscription_topic`), and `subscriptions_answer` lists them as JSON-LD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote

from ssehub.asgi import request_from_scope
from ssehub.errors import (
    BackendUnavailable,
    EventTooLarge,
    HubClosed,
    InvalidSelector,
    InvalidToken,
)
from ssehub.hub import Hub
from ssehub.mercure import (
    EARLIEST_ID,
    FORM_TYPE,
    HUB_PATH,
    SUBSCRIPTIONS_PATH,
    InvalidUpdate,
    last_event_id,
    new_id,
    parse_update,
    resume_header,
    subscribe_topics,
    subscription,
    subscriptions,
)
from ssehub.request import Request
from ssehub.selectors import Selectors
from ssehub.server._json import dumps
from ssehub.server.auth import BEARER_REALM, INVALID_TOKEN, Publisher
from ssehub.server.presence import MAX_LIMIT, MAX_PENDING, Presence, SubscriptionEntry
from ssehub.server.routing import HTTPError
from ssehub.subscription import Subscription
from ssehub.types import Scope

if TYPE_CHECKING:
    from ssehub.authz import JWTAuth
from ssehub.wire import Message

__all__ = [
    "MODES",
    "SUBSCRIBER_PREFIX",
    "SubscriptionEvents",
    "check_form",
    "check_subscriptions_reader",
    "enabled",
    "is_mercure_path",
    "mercure_scope",
    "publish",
    "resume_headers",
    "subscription_path",
    "subscription_request",
    "subscriptions_answer",
    "text_error",
]

log = logging.getLogger("ssehub.server")

SUBSCRIBER_PREFIX = "urn:uuid:"
"""A Mercure subscriber's id is this and its presence entry's id (a UUID)."""

MODES = ("auto", "on", "off")
"""The values of ``--mercure``: on when a JWT key is configured (``auto``), always, never."""

_TOKEN_PARAMS = frozenset({"authorization", "access_token"})
_TEXT_CT = (b"content-type", b"text/plain; charset=utf-8")


def enabled(mode: str, *, jwt: bool) -> bool:
    """Whether ``ssehub serve`` speaks Mercure with ``--mercure mode`` (``jwt``: whether a JWT
    key is configured). ValueError for a mode not in `MODES`."""
    if mode not in MODES:
        raise ValueError(f"--mercure is one of {', '.join(MODES)}, not {mode!r}")
    return mode == "on" or (mode == "auto" and jwt)


def is_mercure_path(path: str) -> bool:
    """Whether ``path`` is the hub's Mercure URL or below it (answered in Mercure's way)."""
    return path == HUB_PATH or path.startswith(HUB_PATH + "/")


def mercure_scope(scope: Scope) -> Scope:
    """``scope`` with Mercure's token precedence: a request with no ``Authorization`` header
    and a token in its query (``authorization``, ``access_token``) loses its cookies, so that
    the query's token is the one read (ssehub's rule reads the cookie first)."""
    headers = scope["headers"]
    if any(name == b"authorization" for name, _ in headers):
        return scope
    query = scope.get("query_string", b"")
    if not query or not any(
        name in _TOKEN_PARAMS for name, _ in parse_qsl(query.decode("latin-1"))
    ):
        return scope
    if not any(name == b"cookie" for name, _ in headers):
        return scope
    return {**scope, "headers": [(k, v) for k, v in headers if k != b"cookie"]}


def check_form(headers: Collection[tuple[bytes, bytes]]) -> None:
    """Refuse (`HTTPError` 415) a publish whose body is not declared form-encoded."""
    content_type = b""
    for name, value in headers:
        if name == b"content-type":
            content_type = value
            break
    mime = content_type.partition(b";")[0].strip().lower()
    if mime != FORM_TYPE.encode():
        shown = mime.decode("latin-1") or "none"
        raise HTTPError(
            415,
            f"a Mercure publish is a form: Content-Type: {FORM_TYPE} (got {shown}), with the "
            "fields topic, data, private, id, type, retry",
        )


async def publish(
    hub: Hub, publisher: Publisher, body: bytes, reserved: Collection[str] = ()
) -> str:
    """Publish the update a form body asks for, as ``publisher``; return its id.

    Raises `HTTPError`: 400 or 413 for a bad form (`ssehub.mercure.parse_update`), 403 when a
    topic is outside the publisher's JWT (every topic must be allowed: nothing is published
    otherwise). The hub's errors (`EventTooLarge`, `BackendUnavailable`, ...) pass through.
    """
    try:
        update = parse_update(body, reserved=reserved)
    except InvalidUpdate as exc:
        raise HTTPError(exc.status, exc.message) from None
    publisher.check(update.topics)
    topics = update.topics
    result = await hub.publish(
        topics[0] if len(topics) == 1 else list(topics),
        update.message(update.id or new_id()),
        private=update.private,
    )
    return str(result)


def subscription_request(request: Request) -> tuple[Request, list[str]]:
    """What a Mercure subscribe asks for: the request as the hub reads it (its
    ``Last-Event-ID`` header set to where it resumes, `ssehub.mercure.last_event_id`), and its
    topic selectors. `HTTPError` 400 when it names none, a bad one (more than
    `ssehub.mercure.MAX_TOPICS` too), or an unsupported matcher."""
    try:
        topics = subscribe_topics(request.params)
        Selectors(topics)
    except InvalidUpdate as exc:
        raise HTTPError(exc.status, exc.message) from None
    except InvalidSelector as exc:
        raise HTTPError(400, f"bad topic selector: {exc}") from None
    resume = last_event_id(request.headers, request.query)
    headers = {k: v for k, v in request.headers.items() if k != "last-event-id"}
    if resume is not None:
        headers["last-event-id"] = resume
    query = {k: v for k, v in request.query.items() if k != "lastEventId"}
    return replace(request, headers=headers, query=query), topics


def resume_headers(sub: Subscription) -> list[tuple[str, str]]:
    """The Mercure response headers of an open stream: ``Last-Event-ID`` when it resumed
    (`ssehub.mercure.resume_header`), as the UTF-8 of the id."""
    value = resume_header(sub.last_event_id, sub.resumed)
    if value is None:
        return []
    return [("last-event-id", value.encode().decode("latin-1"))]


def text_error(status: int, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a refusal on a Mercure route: the message as ``text/plain``."""
    body = message.encode() + b"\n"
    return [_TEXT_CT, (b"content-length", b"%d" % len(body))], body


class SubscriptionEvents:
    """Mercure's subscription events, made from presence's joins and leaves: for each selector
    of a stream that opens or ends, one private update on the topic
    ``/.well-known/mercure/subscriptions/{topic}/{subscriber}`` whose data is the subscription's
    JSON-LD document (``"active": false`` for a leave).

    The updates are published in order by a task of their own (`start`), never by the request
    that opened the stream; at most `MAX_PENDING` wait (more are dropped, with one log line).
    `last_event_id` is the id of the newest one published (the subscriptions API's
    ``lastEventID``). Every method runs on the hub's event loop.
    """

    def __init__(self, hub: Hub, presence: Presence, *, max_pending: int = MAX_PENDING) -> None:
        self.hub = hub
        self.max_pending = max_pending
        self.last_event_id = EARLIEST_ID
        """The id of the newest subscription event this hub published (`EARLIEST_ID` before
        the first)."""
        self.dropped = 0
        """Subscription events not published (too many waiting, or the hub refused them)."""
        self._pending: deque[tuple[str, str]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        presence.listeners.append(self._changed)

    def _changed(self, entry: SubscriptionEntry) -> None:
        subscriber = SUBSCRIBER_PREFIX + entry["id"]
        for topic in entry["selectors"]:
            if len(self._pending) >= self.max_pending:
                if not self.dropped:
                    log.warning(
                        "event=mercure_subscription_events_dropped pending=%d", self.max_pending
                    )
                self.dropped += 1
                continue
            document = subscription(
                topic, subscriber, active=entry["active"], payload=entry["payload"], context=True
            )
            self._pending.append((document["id"], dumps(document).decode()))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Subscription events waiting to be published."""
        return len(self._pending)

    def start(self) -> None:
        """Start publishing (the task ends with `stop`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._publish(), name="ssehub-mercure-subscription-events"
            )

    async def stop(self, timeout: float = 2.0) -> None:
        """Publish what waits (up to ``timeout`` seconds: presence announces the leave of every
        stream of a hub that stops on a shared backend), then stop."""
        deadline = time.monotonic() + timeout
        while self._pending and self._task is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _publish(self) -> None:
        pending = self._pending
        while True:
            await self._wake.wait()
            self._wake.clear()
            while pending:
                topic, data = pending[0]
                try:
                    result = await self.hub.publish(topic, Message(data), private=True)
                except HubClosed:
                    pending.clear()
                    return
                except (BackendUnavailable, EventTooLarge) as exc:
                    self.dropped += 1
                    log.warning("event=mercure_subscription_event_failed error=%r", str(exc))
                else:
                    self.last_event_id = str(result)
                pending.popleft()


def subscription_path(path: str) -> tuple[str | None, str | None]:
    """The topic selector and subscriber a subscriptions API path names (each None when it
    names none): ``/.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]``, each value
    percent-encoded (``path`` as `ssehub.server.routing.decode_path` gives it: an encoded
    slash is still ``%2F``). `HTTPError` 404 for a path that is not one of those."""
    rest = path[len(SUBSCRIPTIONS_PATH) :]
    if not rest:
        return None, None
    parts = rest[1:].split("/")
    if len(parts) > 2 or not all(parts):
        raise HTTPError(
            404,
            f"no such resource: the subscriptions API is {SUBSCRIPTIONS_PATH}"
            "[/{topic}[/{subscriber}]]",
        )
    topic = unquote(parts[0])
    return topic, unquote(parts[1]) if len(parts) == 2 else None


def check_subscriptions_reader(
    jwt: JWTAuth, scope: Scope, topic: str | None, who: str | None
) -> None:
    """Whether the request may read the subscriptions API resource it names, as the spec says:
    its JWT's ``subscribe`` selectors must match the resource's URL (its canonical,
    percent-encoded path, e.g. with the selector
    ``/.well-known/mercure/subscriptions{/topic}{/subscriber}``). `HTTPError` 401 without a
    usable token, 403 for one that may not read it."""
    try:
        grant = jwt.grant_for(request_from_scope(mercure_scope(scope)))
    except InvalidToken as exc:
        raise HTTPError(401, str(exc), INVALID_TOKEN) from None
    if grant is None:
        raise HTTPError(
            401,
            "the subscriptions API needs a JWT whose mercure.subscribe selectors match its URL",
            BEARER_REALM,
        )
    url = SUBSCRIPTIONS_PATH
    for part in (topic, who):
        if part is not None:
            url += "/" + quote(part, safe="")
    if not grant.subscribe.matches(url):
        raise HTTPError(
            403, f"the token may not read {url}: no selector of its subscribe claim matches it"
        )


async def subscriptions_answer(
    presence: Presence, events: SubscriptionEvents, topic: str | None, subscriber: str | None
) -> bytes:
    """The subscriptions API's JSON-LD answer: the collection of every open subscription (of
    ``topic``, a selector, when given), or one subscription (`HTTPError` 404 when it is not
    open). At most `ssehub.server.presence.MAX_LIMIT` streams are looked at. Raises
    `BackendUnavailable` when other hubs' lists cannot be read."""
    cursor = events.last_event_id  # before the list is read: no change after it is missed
    entries, _ = await presence.subscriptions(None, MAX_LIMIT)
    items: list[dict[str, Any]] = []
    for entry in entries:
        who = SUBSCRIBER_PREFIX + entry["id"]
        if subscriber is not None and who != subscriber:
            continue
        for selector in entry["selectors"]:
            if topic is None or selector == topic:
                items.append(subscription(selector, who, payload=entry["payload"]))
    if subscriber is not None:
        assert topic is not None
        if not items:
            raise HTTPError(404, f"no open subscription of {subscriber!r} to {topic!r}")
        one = subscription(
            topic, subscriber, payload=items[0].get("payload"), context=True, last_event_id=cursor
        )
        return dumps(one)
    url = SUBSCRIPTIONS_PATH if topic is None else f"{SUBSCRIPTIONS_PATH}/{quote(topic, safe='')}"
    return dumps(subscriptions(url, cursor, items))
