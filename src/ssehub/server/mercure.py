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
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from urllib.parse import parse_qsl

from ssehub.errors import InvalidSelector
from ssehub.hub import Hub
from ssehub.mercure import (
    FORM_TYPE,
    HUB_PATH,
    InvalidUpdate,
    last_event_id,
    new_id,
    parse_update,
    resume_header,
    subscribe_topics,
)
from ssehub.request import Request
from ssehub.selectors import Selectors
from ssehub.server.auth import Publisher
from ssehub.server.routing import HTTPError
from ssehub.subscription import Subscription
from ssehub.types import Scope

__all__ = [
    "MODES",
    "check_form",
    "enabled",
    "is_mercure_path",
    "mercure_scope",
    "publish",
    "resume_headers",
    "subscription_request",
    "text_error",
]

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
