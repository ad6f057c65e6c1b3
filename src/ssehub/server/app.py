"""The standalone hub's HTTP API as one plain ASGI app: subscribe, publish, inspect, dashboard.

Routes (the contract in DESIGN.md), as the table in `HubServer.__init__`:

- ``GET /events/{channel...}`` streams the channel (its name is the full request path);
  ``POST`` to the same path publishes to it.
- ``GET /events?channel=<selector>`` (repeatable) streams every channel its selectors match
  (exact names, ``*``, URI templates); ``POST /events`` publishes one event to the channels its
  JSON body names.
- ``POST /broadcast`` publishes to every channel.
- ``GET /channels``, ``GET /metrics``, ``GET /healthz``, ``GET /`` (the dashboard),
  ``GET /dashboard/stats`` (the dashboard's own live feed, on a hub of its own) and
  ``GET /dashboard/watch/events/{channel...}`` (the dashboard's live view of a channel: a
  stream that is not counted as a client).
- With Mercure on (``mercure``), ``GET /.well-known/mercure?topic=<selector>`` subscribes and
  ``POST /.well-known/mercure`` publishes a form-encoded update, on the same channels
  (`ssehub.server.mercure`); answers there are Mercure's (``text/plain``, errors included).
- With ``presence``: ``GET /subscriptions`` and ``GET /subscriptions/{channel...}`` list the open
  subscriptions, and joins and leaves are private events on the reserved channel
  ``/subscriptions`` (`ssehub.server.presence`); that channel is left out of ``/channels`` and
  of broadcasts (and no publish can name it: every channel a client names is under ``/events/``).
- ``OPTIONS`` on any route answers a CORS preflight; another method the route does not list
  gets 405. Both carry the route's ``Allow``.

Who may publish and subscribe (the shared tokens, JWTs) is `ssehub.server.auth.Auth`'s to say.

Exposure: with an admin token (``admin_token``, else the subscribe token), ``/channels``,
``/metrics`` (unless ``public_metrics``) and the dashboard's statistics and watch need it, as
``Authorization: Bearer`` or ``?token=``. With ``allowed_hosts``, a request whose ``Host`` is
not listed gets 400 (DNS rebinding). Channel names come from the raw path (`decode_path`), the
same under any ASGI server.

Publishing is the hot path: one route lookup, one scan of the headers (`publish.check_head`),
the body read in one piece, one JSON parse (`publish.parse_body`), `Hub.publish` awaited, a
small JSON answer. Nothing else happens per event; metrics read the hub's own counters when
scraped. Subscribing goes through the stream policy every adapter shares (`ssehub._serving`:
the 403/503 refusals), with this server's own per-origin CORS (`cors.CORS`), and past
``max_clients`` open streams a new one gets 503 (publishes and reads still get through).

A server that reads request bodies itself asks `HubServer.refuse_head` once the headers are in:
the same route, method, publish-head and stream-cap rules as the app, decided from the head
alone, so that a refused request's body is never read (ssehub's native server does this).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from ssehub._serving import DIRECT_STREAM, Answer, Reply, open_stream
from ssehub.asgi import request_from_scope, stream_subscription
from ssehub.backends.base import PublishResult
from ssehub.backends.localbus import LocalBusBackend, in_order
from ssehub.errors import (
    BackendUnavailable,
    EventTooLarge,
    HubClosed,
    InvalidMessage,
    InvalidSelector,
)
from ssehub.hub import Hub
from ssehub.mercure import HUB_PATH, SUBSCRIPTIONS_PATH
from ssehub.request import Request
from ssehub.selectors import Selector
from ssehub.server import mercure
from ssehub.server._json import dumps, loads
from ssehub.server.auth import BEARER_REALM, INVALID_TOKEN, Auth, Publisher, token_in
from ssehub.server.cors import CORS
from ssehub.server.dashboard import STATS_PATH, WATCH_PREFIX, Dashboard
from ssehub.server.mercure import SubscriptionEvents
from ssehub.server.presence import PRESENCE_CHANNEL, Presence, presence_reader
from ssehub.server.publish import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY,
    EVENTS_PREFIX,
    PrivateMessage,
    Publication,
    PublishError,
    PublishHead,
    check_event_sizes,
    check_head,
    parse_body,
    parse_channels,
    too_large,
)
from ssehub.server.publish_stream import (
    NDJSON,
    Lines,
    accepted,
    is_ndjson,
    parse_line,
    refused,
)
from ssehub.server.routing import Endpoint, HTTPError, Resource, Route, Router, decode_path
from ssehub.server.workers import Workers, WorkerState, version
from ssehub.subscription import Subscription
from ssehub.types import Receive, Scope, Send
from ssehub.wire import Message

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_BODY",
    "DEFAULT_METRICS_CHANNELS",
    "EVENTS_PREFIX",
    "STATS_PATH",
    "HubServer",
    "host_allowed",
]

log = logging.getLogger("ssehub.server")

DEFAULT_METRICS_CHANNELS = 50
"""Channels given their own series in ``/metrics`` by default (the busiest; the rest summed)."""

_JSON_CT = (b"content-type", b"application/json")
_UNBOUNDED = 1 << 62  # no Content-Length is too large for a streaming publish
_STREAM_SLICE = 256  # lines of a streaming publish handled between two yields to the loop
_STREAM_POLL = 0.5  # seconds between two looks at the clock and at a shutdown, when idle
_TEXT_CT = (b"content-type", b"text/plain; charset=utf-8")
_NO_STORE = [(b"cache-control", b"no-store")]


class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


def _full_path(scope: Scope) -> str:
    # The same rule as ssehub.asgi.request_from_scope, so GET and POST name channels alike.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    return path


def host_allowed(host: bytes, allowed: frozenset[bytes]) -> bool:
    """Whether a ``Host`` header names one of ``allowed`` (lowercase host names, optionally
    with ``:port``; ``.example.com`` allows every subdomain of example.com)."""
    host = host.strip().lower()
    if host in allowed:
        return True
    name = host.rsplit(b":", 1)[0] if not host.endswith(b"]") else host
    if name in allowed:
        return True
    return any(entry[:1] == b"." and name.endswith(entry) for entry in allowed)


# What a publish request publishes to (see HubServer._publish_head).
_CHANNEL = "channel"  # the channel its path names
_CHANNELS = "channels"  # the channels its body names (POST /events)
_BROADCAST = "broadcast"  # every channel
_MERCURE = "mercure"  # the topics its form names (POST /.well-known/mercure)

_TARGETS = {_CHANNELS: "/events", _BROADCAST: "/broadcast", _MERCURE: HUB_PATH}

# The scope extension where `HubServer.refuse_head` leaves a plain publish's checked head
# (its channel, `PublishHead` and when the publisher's token expires) for
# `HubServer.answer_now`.
_CHECKED_HEAD = "ssehub.checked_publish"


def _target(kind: str, scope: Scope) -> str:
    """What a publish request targets, as logged: its channel, ``/events``, ``/broadcast`` or
    the Mercure hub's path."""
    if kind == _CHANNEL:
        return _full_path(scope)
    return _TARGETS[kind]


_IDS_SLICE = 2000  # channels encoded between two yields of a broadcast's answer


async def _dumps_ids(ids: Mapping[str, str]) -> bytes:
    """``ids`` (a broadcast's ids by channel) as a JSON object, yielding to the event loop
    between slices: 100k channels take tens of milliseconds to encode."""
    if len(ids) <= _IDS_SLICE:
        return dumps(ids)
    items = list(ids.items())
    parts = []
    for start in range(0, len(items), _IDS_SLICE):
        parts.append(dumps(dict(items[start : start + _IDS_SLICE]))[1:-1])
        await asyncio.sleep(0)
    return b"{" + b",".join(parts) + b"}"


def _not_found(path: str) -> HTTPError:
    if path == EVENTS_PREFIX:
        return HTTPError(
            404, "no channel given: use /events/<channel> or /events?channel=<selector>"
        )
    return HTTPError(
        404,
        f"no route {path}; the routes are /events/<channel>, /events, /broadcast, /channels, "
        "/metrics, /healthz and /",
    )


_CHANNEL_QUERY_HINT = (
    "GET /events reads the channels named by ?channel=<selector> (repeatable): a full "
    "channel name such as /events/news, '*' or a URI template such as /events/rooms/{id}"
)


def _selectors_of(
    request: Request, reserved: tuple[str, ...] = (), *, topics: bool = False
) -> list[str]:
    """The ``?channel=`` selectors of ``GET /events``; `HTTPError` 400 when there is none or
    an exact name is not a full channel path (it could never match a channel) nor one of the
    ``reserved`` channels (the presence channel), unless ``topics`` (Mercure is on: any topic
    is a channel, ``https://example.com/books/1`` too)."""
    selectors = request.query_values("channel")
    if not selectors:
        raise HTTPError(400, f"no channel given: {_CHANNEL_QUERY_HINT}")
    for text in selectors:
        try:
            exact = Selector(text).kind == "exact"
        except InvalidSelector as exc:
            raise HTTPError(400, f"bad channel selector {text!r}: {exc}") from None
        if exact and not topics and not text.startswith(EVENTS_PREFIX) and text not in reserved:
            raise HTTPError(400, f"{text!r} is not a channel name: {_CHANNEL_QUERY_HINT}")
    return selectors


class HubServer:
    """The ASGI app of ``ssehub serve``: the HTTP API around one `Hub`.

    Args:
        hub: the hub to serve (its ``channel_name`` should stay the default, the path).
        publish_token: when set, ``POST`` requests need ``Authorization: Bearer <token>``.
        subscribe_token: when set, streams need the same header or ``?token=<token>``.
        auth: the rules of the shared tokens and JWTs, instead of ``publish_token`` and
            ``subscribe_token`` (see `ssehub.server.auth`); with a JWT key, the hub must be
            built with ``authorize=auth.authorize``.
        cors_origins: origins allowed to call the hub from a browser (``"*"`` for any).
        max_body: the largest publish body in bytes (larger ones get 413).
        max_batch: the most messages one JSON array publishes (more gets 413).
        stats_interval: seconds between the dashboard's statistics updates.
        admin_token: needed for ``/channels``, ``/metrics`` and the dashboard's statistics
            (default: the subscribe token; with neither, they are open).
        public_metrics: serve ``/metrics`` without the admin token.
        allowed_hosts: the ``Host`` values served (empty: any); others get 400.
        metrics_channels: channels given their own series in ``/metrics`` (the busiest by
            events published; the others are summed under ``channel="(other)"``).
        max_clients: open streams (of the hub and the dashboard) past which a new one gets
            503; None for no cap. Publishes and reads are never counted or refused by it.
        mercure: speak the Mercure protocol at ``/.well-known/mercure`` (its topics are the
            hub's channels; see `ssehub.server.mercure`), and let ``GET /events?channel=``
            name any topic, not only ``/events/...`` paths.
        presence: list the open subscriptions at ``/subscriptions`` (for the admin token, or
            with JWTs a token whose subscribe selectors match ``/subscriptions``) and announce
            joins and leaves on the reserved channel ``/subscriptions``.
        line_timeout: seconds a streaming publish (NDJSON) has to send each line, counted from
            the end of the one before (blank lines count); 0 for no bound.
        stream_rate: events per second one streaming publish may publish (0: no bound); past
            it the hub reads the stream more slowly (the publisher waits), nothing is refused.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        publish_token: str | None = None,
        subscribe_token: str | None = None,
        cors_origins: Iterable[str] = (),
        max_body: int = DEFAULT_MAX_BODY,
        max_batch: int = DEFAULT_MAX_BATCH,
        stats_interval: float = 1.0,
        admin_token: str | None = None,
        public_metrics: bool = False,
        allowed_hosts: Iterable[str] = (),
        metrics_channels: int = DEFAULT_METRICS_CHANNELS,
        max_clients: int | None = None,
        auth: Auth | None = None,
        mercure: bool = False,
        presence: bool = False,
        line_timeout: float = 30.0,
        stream_rate: float = 0.0,
    ) -> None:
        if auth is None:
            auth = Auth(publish_token=publish_token, subscribe_token=subscribe_token)
        elif publish_token or subscribe_token:
            raise ValueError("give the tokens to Auth, not next to it")
        if max_body <= 0:
            raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")
        if max_batch <= 0:
            raise ValueError(f"max_batch must be a positive number of messages, got {max_batch!r}")
        if metrics_channels < 0:
            raise ValueError(f"metrics_channels must be 0 or more, got {metrics_channels!r}")
        if max_clients is not None and max_clients < 0:
            raise ValueError(f"max_clients must be 0 or more, got {max_clients!r}")
        self.hub = hub
        self.max_body = max_body
        self.max_batch = max_batch
        self.line_timeout = line_timeout
        self.stream_rate = stream_rate
        self.metrics_channels = metrics_channels
        """Channels with series of their own in ``/metrics`` (the rest are summed)."""
        self.max_clients = max_clients
        """Open streams past which a new one gets 503 (None: no cap)."""
        self.auth = auth
        """Who may publish and subscribe (`ssehub.server.auth.Auth`)."""
        self.mercure = mercure
        """Whether the hub speaks Mercure at ``/.well-known/mercure``."""
        self._admin_token = admin_token.encode() if admin_token else auth.subscribe_token
        self._public_metrics = public_metrics
        hosts = [h.strip().lower() for h in allowed_hosts]
        if not all(h and h.isascii() and h.isprintable() and " " not in h for h in hosts):
            raise ValueError(f"allowed hosts are ASCII names (punycode for IDNs): {hosts!r}")
        self._allowed_hosts = frozenset(h.encode() for h in hosts)
        self.cors = CORS(cors_origins)
        """The cross-origin policy (``cors_origins``)."""
        self.publish_errors: dict[int, int] = {}
        """Rejected publishes and broadcasts, by HTTP status."""
        self.started_at = time.time()
        self.version = version()
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self.workers = Workers(hub.backend, self.worker_state)
        """This process's numbers and, with a shared backend (``--workers``), every other
        hub process's (see `ssehub.server.workers`)."""
        self.presence = Presence(hub, self.workers.name) if presence else None
        """The open subscriptions, listed and announced (None without ``presence``)."""
        # Channels that are the hub's own, not its users': never listed nor broadcast to, and
        # no Mercure publisher may name them.
        self._reserved: tuple[str, ...] = (PRESENCE_CHANNEL,) if presence else ()
        self.mercure_events = (
            SubscriptionEvents(hub, self.presence)
            if mercure and self.presence is not None
            else None
        )
        """Mercure's subscription events (with Mercure and presence on), else None."""
        self.dashboard = Dashboard(
            hub,
            self.publish_errors,
            stats_interval,
            workers=self.workers,
            started=self.started_at,
            version=self.version,
        )
        """The dashboard page and its statistics feed."""
        self._closing = False
        self._inflight = 0
        self._idle: asyncio.Event | None = None
        self._registry: Any = None
        # Whether answers name the process that gave them (other processes share the hub).
        self._label = hub.backend.shared
        # What refuse_head checks beyond the route: a publish's head (by what it publishes
        # to), a stream's cap.
        self._publishers: dict[Endpoint, str] = {
            self._publish: _CHANNEL,
            self._publish_channels: _CHANNELS,
            self._broadcast: _BROADCAST,
            self._mercure_publish: _MERCURE,
        }
        watch = self._admin(self._watch)
        self._subscribers: tuple[Endpoint, ...] = (
            self._subscribe,
            self._subscribe_channels,
            self._get_stats_stream,
            watch,
            self._mercure_subscribe,
        )
        self.router = Router(
            [
                Route(EVENTS_PREFIX, self._subscribe, ("GET",), prefix=True),
                Route(EVENTS_PREFIX, self._publish, ("POST",), prefix=True),
                Route("/events", self._subscribe_channels, ("GET",)),
                Route("/events", self._publish_channels, ("POST",)),
                Route("/broadcast", self._broadcast, ("POST",)),
                Route("/", self._get_dashboard),
                Route("/channels", self._admin(self._get_channels)),
                Route(
                    "/metrics",
                    self._get_metrics if public_metrics else self._admin(self._get_metrics),
                ),
                Route("/healthz", self._get_health),
                Route(STATS_PATH, self._admin(self._get_stats_stream)),
                Route(WATCH_PREFIX + "/", watch, ("GET",), prefix=True),
                *self._mercure_routes(),
                *self._presence_routes(),
            ]
        )
        """The route table."""

    def _mercure_routes(self) -> list[Route]:
        if not self.mercure:
            return []
        routes = [
            Route(HUB_PATH, self._mercure_subscribe),
            Route(HUB_PATH, self._mercure_publish, ("POST",)),
        ]
        if self.mercure_events is not None:
            listing: Endpoint = self._mercure_subscriptions
            if self.auth.jwt is None:
                listing = self._admin(listing)
            routes += [
                Route(SUBSCRIPTIONS_PATH, listing),
                Route(SUBSCRIPTIONS_PATH + "/", listing, prefix=True),
            ]
        return routes

    def _presence_routes(self) -> list[Route]:
        if self.presence is None:
            return []
        jwt = self.auth.jwt
        if jwt is None:
            listing = self._admin(self._get_subscriptions)
        else:
            # With JWTs: a token allowed to read the presence channel, or an admin token given
            # as such (the subscribe token, which every subscriber holds, is not enough).
            explicit = self._admin_token
            if explicit == self.auth.subscribe_token:
                explicit = None
            listing = presence_reader(jwt, explicit, self._get_subscriptions)
        return [
            Route(PRESENCE_CHANNEL, listing),
            Route(PRESENCE_CHANNEL + "/", listing, prefix=True),
        ]

    def auth_names(self) -> list[str]:
        """What guards this hub, by name (never a value): ``jwt``,
        ``require-subscriber-token``, ``publish-token``, ``subscribe-token``, ``admin-token``."""
        names = self.auth.names()
        if self._admin_token is not None and self._admin_token != self.auth.subscribe_token:
            names.append("admin-token")
        return names

    @property
    def stats_hub(self) -> Hub:
        """The dashboard's statistics hub (never in ``/channels``, metrics or broadcasts)."""
        return self.dashboard.stats_hub

    async def stats(self) -> dict[str, Any]:
        """A new snapshot for the dashboard (see `Dashboard.snapshot`)."""
        return await self.dashboard.snapshot()

    @property
    def open_streams(self) -> int:
        """Streams open now, on the hub and the dashboard (what ``max_clients`` caps)."""
        hub = self.hub
        return hub.client_count() + hub.observer_count() + self.stats_hub.client_count()

    def worker_state(self) -> WorkerState:
        """This process's own numbers (`WorkerState`); O(1) but for the channel count."""
        hub = self.hub
        now = time.monotonic()
        mark, total = self._rate_mark
        if now - mark >= 1.0:
            # Events/s over the last second or more, sampled when asked.
            self._rate = (hub.published_total - total) / (now - mark)
            self._rate_mark = (now, hub.published_total)
        return {
            "worker": self.workers.name,
            "pid": os.getpid(),
            "version": self.version,
            "started": self.started_at,
            "uptime": round(time.time() - self.started_at, 1),
            "clients": hub.client_count(),
            "channels": len(hub.channels()),
            "published": hub.published_total,
            "replayed": hub.replayed,
            "dropped_slow": hub.dropped_slow,
            "publish_errors": sum(self.publish_errors.values()),
            "rate": round(self._rate, 2),
            "viewers": self.stats_hub.client_count(),
        }

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub (and fail early if its backend cannot start)."""
        await self.hub.start()
        await self.stats_hub.start()
        self.workers.start()
        if self.presence is not None:
            self.presence.start()
        if self.mercure_events is not None:
            self.mercure_events.start()

    async def close(self, timeout: float = 5.0) -> None:
        """Refuse new publishes, let in-flight ones finish, then end every stream cleanly."""
        if not self._closing:
            self._closing = True
            if self._inflight:
                self._idle = asyncio.Event()
                try:
                    await asyncio.wait_for(self._idle.wait(), timeout)
                except TimeoutError:
                    log.warning("event=shutdown_timeout inflight_publishes=%d", self._inflight)
            self.dashboard.stop()
            await self.workers.stop()
            if self.presence is not None:
                await self.presence.stop()
            if self.mercure_events is not None:
                await self.mercure_events.stop()
        await asyncio.gather(self.hub.shutdown(timeout), self.stats_hub.shutdown(timeout))

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                await self._lifespan(receive, send)
                return
            raise RuntimeError(f"ssehub serve speaks http, not {kind!r}")
        try:
            scope = self._prepare(scope)
            endpoint, resource = self._route(scope["path"], scope["method"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
            else:
                await self._send_preflight(scope, send, resource.allow)
        except HTTPError as exc:
            await self._send_error(scope, send, exc.status, exc.message, exc.headers)
        except _ClientGone:
            pass

    def _prepare(self, scope: Scope) -> Scope:
        """The scope with the path named as ssehub names channels, once the ``Host`` is checked.

        Another ASGI server decodes the path its own way (an encoded slash as a slash, bad
        UTF-8 as U+FFFD): re-decode the raw path as the native server does (400 when it is not
        UTF-8). Raises HTTPError 400 for a ``Host`` outside ``allowed_hosts``.
        """
        raw_path = scope.get("raw_path")
        if raw_path is not None and DIRECT_STREAM not in scope.get("extensions", ()):
            try:
                decoded = decode_path(raw_path)
            except ValueError:
                raise HTTPError(400, "the request path is not UTF-8 once percent-decoded") from None
            if decoded != scope["path"]:
                scope = {**scope, "path": decoded}
        if self._allowed_hosts:
            self._check_host(scope)
        return scope

    def _route(self, path: str, method: str) -> tuple[Endpoint | None, Resource]:
        """The endpoint for ``method`` on ``path`` (None: an OPTIONS preflight); 404/405."""
        resource = self.router.match(path)
        if resource is None:
            raise _not_found(path)
        endpoint = resource.endpoints.get(method)
        if endpoint is None and method != "OPTIONS":
            allow = resource.allow
            raise HTTPError(
                405,
                f"method {method} not allowed here; allowed: {allow}",
                [(b"allow", allow.encode())],
            )
        return endpoint, resource

    def refuse_head(self, scope: Scope) -> Answer | None:
        """The answer refusing an HTTP request from its head alone, or None to read its body.

        For a server that reads request bodies itself: call it once the headers are in and
        before any body byte is buffered (ssehub's native server does, for every request that
        declares a body). The rules are the app's own, in the same order: a ``Host`` outside
        ``allowed_hosts`` or a path that is not UTF-8 (400), no route (404), a method the route
        does not serve (405), then for a publish the hub shutting down (503), the token (401;
        a JWT is verified), a channel or a broadcast outside a JWT's publish claim (403), a
        cross-site ``Origin`` (403), a declared ``Content-Length`` over ``max_body`` (413) and
        a compressed body (415), and for a stream the ``max_clients`` cap (503). A publish
        refused here is counted and logged as the app would. The answer is JSON
        ``{"error": ...}`` with this server's CORS headers for the request's origin.
        Synchronous and cheap.
        """
        try:
            scope = self._prepare(scope)
            endpoint, _ = self._route(scope["path"], scope["method"])
            kind = self._publishers.get(endpoint) if endpoint is not None else None
            if kind is not None:
                target = _target(kind, scope)
                streamed = self.stream_body(scope)
                try:
                    head, publisher = self._publish_head(scope, kind, target, streamed)
                except HTTPError as exc:
                    self._rejected(exc.status, target, scope, exc.message)
                    raise
                extensions = scope.get("extensions")
                if kind == _CHANNEL and extensions is not None and not streamed:
                    # Checked: `answer_now` may publish its body without the ASGI cycle.
                    extensions[_CHECKED_HEAD] = (target, head, publisher.expires)
            elif endpoint in self._subscribers:
                self._check_capacity()
        except HTTPError as exc:
            if self.mercure and mercure.is_mercure_path(scope["path"]):
                headers, body = mercure.text_error(exc.status, exc.message)
                headers += exc.headers
            else:
                body = dumps({"error": exc.message})
                headers = [_JSON_CT, (b"content-length", b"%d" % len(body)), *exc.headers]
            if self.cors.enabled:
                headers += self.cors.simple_headers(scope["headers"])
            return Answer(
                exc.status,
                tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers),
                body,
            )
        return None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    log.error("event=startup_failed error=%r", str(exc))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- exposure ----------------------------------------------------------------------------

    def _check_host(self, scope: Scope) -> None:
        for name, value in scope["headers"]:
            if name == b"host":
                if host_allowed(value, self._allowed_hosts):
                    return
                break
        raise HTTPError(400, "this hub does not serve that Host (see --allowed-host)")

    def _admin(self, endpoint: Endpoint) -> Endpoint:
        """``endpoint``, needing the admin token when there is one (401 without it)."""
        token = self._admin_token
        if token is None:
            return endpoint

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if not token_in(scope, token):
                raise HTTPError(
                    401,
                    "this needs the admin token (or the subscribe token when no admin token is "
                    "set): 'Authorization: Bearer <token>' or ?token=<token>",
                    BEARER_REALM,
                )
            await endpoint(scope, receive, send)

        return guarded

    # -- responses ---------------------------------------------------------------------------

    async def _send(
        self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_json(
        self,
        scope: Scope,
        send: Send,
        status: int,
        body: bytes,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        headers = self._json_headers(scope, body, extra)
        # Sent here rather than through _send: this answers every publish.
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _json_headers(
        self, scope: Scope, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> list[tuple[bytes, bytes]]:
        headers = [_JSON_CT, (b"content-length", b"%d" % len(body)), *extra]
        cors = self.cors
        if cors.enabled:
            headers += cors.simple_headers(scope["headers"])
        return headers

    async def _send_text(self, scope: Scope, send: Send, status: int, body: bytes) -> None:
        headers = [_TEXT_CT, (b"content-length", b"%d" % len(body))]
        headers += self.cors.simple_headers(scope["headers"])
        await self._send(send, status, headers, body)

    async def _send_error(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        extra: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """A refusal: JSON ``{"error": message}``, or on a Mercure route the message as text."""
        if self.mercure and mercure.is_mercure_path(scope["path"]):
            headers, body = mercure.text_error(status, message)
            headers += extra
            headers += self.cors.simple_headers(scope["headers"])
            await self._send(send, status, headers, body)
            return
        await self._send(send, *self._error_reply(scope, HTTPError(status, message, extra)))

    async def _send_preflight(self, scope: Scope, send: Send, allow: str) -> None:
        headers = self.cors.preflight_headers(scope["headers"], allow.encode())
        await self._send(send, 204, headers, b"")

    # -- publishing (the hot path) -----------------------------------------------------------

    async def _read_body(self, receive: Receive) -> bytes:
        max_body = self.max_body
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            if len(body) > max_body:
                raise too_large(max_body)
            return body
        chunks = [body]
        size = len(body)
        while True:
            if size > max_body:
                raise too_large(max_body)
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            body = message.get("body", b"")
            chunks.append(body)
            size += len(body)
            if not message.get("more_body", False):
                break
        if size > max_body:
            raise too_large(max_body)
        return b"".join(chunks)

    def _rejected(self, status: int, where: str, scope: Scope, error: str) -> None:
        self.publish_errors[status] = self.publish_errors.get(status, 0) + 1
        client = scope.get("client")
        log.warning(
            "event=publish_rejected status=%d target=%s client=%s error=%r",
            status,
            where,
            f"{client[0]}:{client[1]}" if client else "-",
            error,
        )

    def _publish_head(
        self, scope: Scope, kind: str, target: str, streamed: bool
    ) -> tuple[PublishHead, Publisher]:
        """What a publish's head says of its body, and who publishes it; HTTPError when it is
        refused from the head (``kind`` says what it publishes to: `_CHANNEL` ``target``,
        `_CHANNELS` named by its body, or `_BROADCAST`; ``streamed``: a streaming publish, whose
        body has no size limit, as `stream_body` says)."""
        if self._closing:
            raise HTTPError(503, "the hub is shutting down")
        if kind == _MERCURE:
            publisher = self.auth.publisher(mercure.mercure_scope(scope))
            mercure.check_form(scope["headers"])
        else:
            publisher = self.auth.publisher(scope)
        if kind == _CHANNEL:
            publisher.check((target,))
        elif kind == _BROADCAST:
            publisher.check_broadcast()
        # A credential sent on purpose cannot come from another site's page: no Origin check.
        cors = None if publisher.explicit else self.cors
        # A streaming publish has no body size (each line is bounded instead).
        max_body = _UNBOUNDED if streamed else self.max_body
        head = check_head(scope["headers"], token=None, max_body=max_body, cors=cors)
        return head, publisher

    def stream_body(self, scope: Scope) -> bool:
        """Whether this request is a streaming publish (NDJSON ``POST /events[/{channel}]``),
        whose body is read as it arrives. Synchronous and cheap."""
        if scope["method"] != "POST":
            return False
        path = scope["path"]
        if path != "/events" and not path.startswith(EVENTS_PREFIX):
            return False
        return is_ndjson(scope["headers"])

    async def _publish(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /events/{channel}``: publish the body's message(s) to the path's channel."""
        await self._publishing(scope, receive, send, _CHANNEL)

    async def _publish_channels(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /events``: publish one event to the channels its JSON body names."""
        await self._publishing(scope, receive, send, _CHANNELS)

    async def _broadcast(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /broadcast``: publish the body's message(s) to every channel."""
        await self._publishing(scope, receive, send, _BROADCAST)

    async def _mercure_publish(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /.well-known/mercure``: publish a Mercure update (a form) to its topics."""
        await self._publishing(scope, receive, send, _MERCURE)

    async def _publishing(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        """Publish a request's message(s) (``kind``: see `_publish_head`).

        Every refusal is counted in `publish_errors` and logged; a publish that started before
        `close` is let finish.
        """
        target = _target(kind, scope)
        if (kind in (_CHANNEL, _CHANNELS)) and self.stream_body(scope):
            await self._publish_stream(scope, receive, send, kind, target)
            return
        self._inflight += 1
        try:
            head, publisher = self._publish_head(scope, kind, target, streamed=False)
            body = await self._read_body(receive)
            if kind == _CHANNEL:
                answer = await self._publish_to(target, self._parse(head, body), len(body))
            elif kind == _CHANNELS:
                answer = await self._publish_to_channels(head, body, publisher)
            elif kind == _MERCURE:
                event_id = await mercure.publish(self.hub, publisher, body, self._reserved)
                answer = event_id.encode()
            else:
                answer = await self._publish_everywhere(head, body)
        except Exception as exc:
            refusal = self._refusal(exc, target, scope)
            if refusal is None:
                raise
            raise refusal from None
        finally:
            self._done()
        if kind == _MERCURE:  # the update's id
            await self._send_text(scope, send, 200, answer)
        else:
            await self._send_json(scope, send, 200, answer)

    def _refusal(self, exc: Exception, target: str, scope: Scope) -> HTTPError | None:
        """The answer to a publish that raised ``exc``, counted and logged; None for an error
        that is not the publisher's (a bug: a 500)."""
        if isinstance(exc, HTTPError):
            refusal = exc
        elif isinstance(exc, EventTooLarge):
            refusal = HTTPError(413, str(exc))
        elif isinstance(exc, InvalidMessage):  # what the body's checks let through, if any
            refusal = HTTPError(400, str(exc))
        elif isinstance(exc, HubClosed):
            self._rejected(503, target, scope, "the hub is shut down")
            return HTTPError(503, "the hub is shutting down")
        elif isinstance(exc, BackendUnavailable):
            self._rejected(503, target, scope, str(exc))
            return HTTPError(503, f"the backend is unavailable: {exc}")
        else:
            return None
        self._rejected(refusal.status, target, scope, refusal.message)
        return refusal

    def _done(self) -> None:
        """A publish counted in `_inflight` ended."""
        self._inflight -= 1
        if self._idle is not None and not self._inflight:
            self._idle.set()

    async def _publish_stream(
        self, scope: Scope, receive: Receive, send: Send, kind: str, target: str
    ) -> None:
        """A streaming publish: one event per NDJSON line, one answer line per line, in order.

        Bounded: a line is at most ``max_body`` bytes (413 and the end of the stream past it),
        each must end within ``line_timeout`` of the one before (408 and the end), at most
        ``stream_rate`` events per second (the stream is read more slowly past it), and the
        work done between two yields to the loop is at most `_STREAM_SLICE` lines. What was
        answered ``{"id": ...}`` is published; a refused line changes nothing else.
        """
        try:
            _, publisher = self._publish_head(scope, kind, target, streamed=True)
        except HTTPError as exc:
            self._rejected(exc.status, target, scope, exc.message)
            raise
        headers = [(b"content-type", NDJSON), *_NO_STORE]
        if self.cors.enabled:
            headers += self.cors.simple_headers(scope["headers"])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        channel = target if kind == _CHANNEL else None
        lines = Lines(self.max_body)
        loop = asyncio.get_running_loop()
        line_timeout = self.line_timeout
        deadline = loop.time() + line_timeout
        rate = self.stream_rate
        allowance = rate  # a token bucket of one second's events
        refilled = loop.time()
        number = 0  # lines answered
        end: bytes | None = None  # the last answer line, when the stream ends on a refusal
        more = True
        while more and end is None:
            now = loop.time()
            if self._closing:
                end = refused(
                    503, "the hub is shutting down; publish again elsewhere", number + 1, end=True
                )
                break
            expires = publisher.expires
            if expires is not None and time.time() >= expires:
                end = refused(401, "the token expired; open a new stream", number + 1, end=True)
                break
            wait = _STREAM_POLL
            if line_timeout:
                if now >= deadline:
                    end = refused(
                        408,
                        f"no complete line within {line_timeout:g} s (--body-timeout); a "
                        "publisher with nothing to say sends a blank line now and then",
                        number + 1,
                        end=True,
                    )
                    break
                wait = min(wait, deadline - now)
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                continue
            if message["type"] != "http.request":
                return  # the publisher went away: what it was answered stands
            more = message.get("more_body", False)
            out: list[bytes] = []
            # Lines parsed and not yet published: an answer (a refused line) or its number and
            # what it publishes. Published together: over a shared backend, pipelined.
            batch: list[bytes | tuple[int, Publication]] = []
            self._inflight += 1
            try:
                found = lines.feed(message.get("body", b""))
                if not more and lines.too_long is None:
                    found.append(lines.end())
                for line in found:
                    number += 1
                    if line_timeout:
                        deadline = loop.time() + line_timeout
                    if rate:
                        now = loop.time()
                        allowance = min(rate, allowance + (now - refilled) * rate)
                        refilled = now
                        if allowance < 1:
                            out += await self._publish_batch(scope, target, batch)
                            await self._flush_lines(send, out)
                            await asyncio.sleep((1 - allowance) / rate)
                            allowance, refilled = 1.0, loop.time()
                        allowance -= 1
                    item = self._stream_line(scope, target, line, number, channel, publisher)
                    if item is None:
                        number -= 1  # a blank line is not answered
                        continue
                    batch.append(item)
                    if len(batch) >= _STREAM_SLICE:
                        out += await self._publish_batch(scope, target, batch)
                        await self._flush_lines(send, out)
                        await asyncio.sleep(0)
                out += await self._publish_batch(scope, target, batch)
                if lines.too_long is not None:
                    # The lines before it are answered; the stream ends at it.
                    too_long = lines.too_long
                    self._rejected(too_long.status, target, scope, too_long.message)
                    end = refused(too_long.status, too_long.message, number + 1, end=True)
            finally:
                self._inflight -= 1
                if self._idle is not None and not self._inflight:
                    self._idle.set()
            await self._flush_lines(send, out)
        if end is not None:
            await self._flush_lines(send, [end])
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _flush_lines(self, send: Send, out: list[bytes]) -> None:
        if out:
            body = b"".join(out)
            out.clear()
            await send({"type": "http.response.body", "body": body, "more_body": True})

    def _stream_line(
        self,
        scope: Scope,
        target: str,
        line: bytes,
        number: int,
        channel: str | None,
        publisher: Publisher,
    ) -> bytes | tuple[int, Publication] | None:
        """Line ``number`` of a streaming publish, checked: what it publishes, its refusal
        line (counted and logged as any publish's), or None for a blank line."""
        try:
            publication = parse_line(line, channel)
            if publication is None:
                return None
            if channel is None:
                publisher.check(publication.channels)
            check_event_sizes([publication.message], len(line), self.hub.max_buffer)
        except HTTPError as exc:
            self._rejected(exc.status, target, scope, exc.message)
            return refused(exc.status, exc.message, number)
        return number, publication

    async def _publish_batch(
        self, scope: Scope, target: str, batch: list[bytes | tuple[int, Publication]]
    ) -> list[bytes]:
        """Publish the lines of ``batch`` in order and empty it; their answer lines.

        On the local bus (``--workers`` without Redis) the publishes are pipelined: each goes
        through the ring at once, and from the first one that takes the round trip (an id of
        its own, a busy or full ring) the rest follow it in order over the bus's one socket
        (`ssehub.backends.localbus.in_order`), all before the first answer is awaited, so one
        stream's events keep their order without a round trip each. Elsewhere they go one by one:
        in one process each completes at once, and Redis' connection pool would not keep
        concurrent commands in order."""
        hub = self.hub
        jobs = [item for item in batch if type(item) is tuple]
        results: list[PublishResult | BaseException]
        if isinstance(hub.backend, LocalBusBackend) and len(jobs) > 1:
            with in_order():
                results = await asyncio.gather(
                    *(self._publish_publication(publication) for _, publication in jobs),
                    return_exceptions=True,
                )
        else:
            results = []
            for _, publication in jobs:
                try:
                    results.append(await self._publish_publication(publication))
                except Exception as exc:
                    results.append(exc)
        answers = iter(results)
        out: list[bytes] = []
        for item in batch:
            if isinstance(item, bytes):
                out.append(item)
                continue
            number = item[0]
            result = next(answers)
            if isinstance(result, PublishResult):
                out.append(accepted(result, result.duplicate))
                continue
            if isinstance(result, EventTooLarge):
                status, error = 413, str(result)
            elif isinstance(result, InvalidMessage):
                status, error = 400, str(result)
            elif isinstance(result, HubClosed):
                status, error = 503, "the hub is shutting down"
            elif isinstance(result, BackendUnavailable):
                status, error = 503, f"the backend is unavailable: {result}"
            else:
                raise result
            self._rejected(status, target, scope, error)
            out.append(refused(status, error, number))
        batch.clear()
        return out

    async def _publish_publication(self, publication: Publication) -> PublishResult:
        channels, message = publication.channels, publication.message
        return await self.hub.publish(
            channels[0] if len(channels) == 1 else channels,
            message,
            private=type(message) is PrivateMessage,
        )

    def _parse(self, head: PublishHead, body: bytes) -> Message | list[Message]:
        return parse_body(head, body, max_batch=self.max_batch)

    async def _publish_to(
        self, channel: str, messages: Message | list[Message], size: int
    ) -> bytes:
        """Publish a ``size``-byte body's ``messages`` to ``channel``; the answer."""
        hub = self.hub
        answer: dict[str, Any]
        if type(messages) is list:
            # All or nothing: an event no client could receive refuses the whole batch.
            check_event_sizes(messages, size, hub.max_buffer)
            ids = [
                await hub.publish(channel, m, private=type(m) is PrivateMessage) for m in messages
            ]
            answer = {"ids": ids, "channel": channel, "clients": hub.client_count(channel)}
            if self._label:
                answer["worker"] = self.workers.name
            duplicates = [event_id for event_id in ids if event_id.duplicate]
            if duplicates:
                answer["duplicates"] = duplicates
            return dumps(answer)
        event_id = await hub.publish(channel, messages, private=type(messages) is PrivateMessage)
        return self._published(channel, event_id)

    def _published(self, channel: str, event_id: PublishResult) -> bytes:
        """The answer to a publish of one event to ``channel``."""
        answer = {"id": event_id, "channel": channel, "clients": self.hub.client_count(channel)}
        if self._label:
            # Several processes serve the channel: "clients" is this one's share.
            answer["worker"] = self.workers.name
        if event_id.duplicate:
            # Already in the channel's history (a retried publish): not sent again.
            answer["duplicate"] = True
        return dumps(answer)

    def answer_now(self, scope: Scope, body: bytes) -> Reply | Awaitable[Reply] | None:
        """The answer to a ``POST /events/{channel}`` publish without the ASGI cycle, or None:
        run the app for this request.

        For a server that reads request bodies itself and called `refuse_head` on this
        request's head (ssehub's native server), with the whole body in hand. When that head
        was a publish to a channel, checked and accepted, the body is parsed and published
        here, and the answer is the app's own (status, headers with ``content-length``, body),
        refusals included (counted and logged). It is given at once for one event on a hub
        that publishes without waiting (`ssehub.Hub.publish_nowait`: the in-memory default,
        the durable backend for the events it writes at once, the local bus of ``--workers``
        for an event without an id of its own), as an awaitable of it otherwise (a batch,
        Redis, ``--data`` past the events it writes at once). None for any other request,
        and while the app closes or when the token expired while the body arrived (the app
        answers 503 or 401). Raises only for an error that is not the publisher's (a bug:
        answer 500).
        """
        extensions = scope.get("extensions")
        checked = extensions.get(_CHECKED_HEAD) if extensions else None
        if checked is None:
            return None
        channel, head, expires = checked
        if self._closing or (expires is not None and time.time() >= expires):
            return None
        try:
            messages = self._parse(head, body)
            if type(messages) is not list:
                event_id = self.hub.publish_nowait(
                    channel, messages, private=type(messages) is PrivateMessage
                )
                if event_id is not None:
                    answer = self._published(channel, event_id)
                    return 200, self._json_headers(scope, answer), answer
        except Exception as exc:
            refusal = self._refusal(exc, channel, scope)
            if refusal is None:
                raise
            return self._error_reply(scope, refusal)
        return self._answer_later(scope, channel, messages, len(body))

    async def _answer_later(
        self, scope: Scope, channel: str, messages: Message | list[Message], size: int
    ) -> Reply:
        self._inflight += 1
        try:
            answer = await self._publish_to(channel, messages, size)
        except Exception as exc:
            refusal = self._refusal(exc, channel, scope)
            if refusal is None:
                raise
            return self._error_reply(scope, refusal)
        finally:
            self._done()
        return 200, self._json_headers(scope, answer), answer

    def _error_reply(self, scope: Scope, refusal: HTTPError) -> Reply:
        """``refusal`` as `_send_error` answers it off the Mercure routes."""
        body = dumps({"error": refusal.message})
        return refusal.status, self._json_headers(scope, body, refusal.headers), body

    async def _publish_to_channels(
        self, head: PublishHead, body: bytes, publisher: Publisher
    ) -> bytes:
        hub = self.hub
        publication = parse_channels(head, body)
        channels = publication.channels
        publisher.check(channels)
        message = publication.message
        event_id = await hub.publish(channels, message, private=type(message) is PrivateMessage)
        answer: dict[str, Any] = {
            "id": event_id,
            "channels": channels,
            # Per channel: a subscriber of several of them is counted in each (it gets one).
            "clients": {channel: hub.client_count(channel) for channel in channels},
        }
        if self._label:
            answer["worker"] = self.workers.name
        if event_id.duplicate:
            answer["duplicate"] = True
        return dumps(answer)

    async def _publish_everywhere(self, head: PublishHead, body: bytes) -> bytes:
        hub = self.hub
        messages = parse_body(head, body, max_batch=self.max_batch)
        if type(messages) is list:
            if any(type(m) is PrivateMessage for m in messages):
                raise PublishError(400, "a broadcast is public: it may not hold a private event")
            check_event_sizes(messages, len(body), hub.max_buffer)
            results = [await hub.broadcast(m, exclude=self._reserved) for m in messages]
            ids_json = b"[" + b",".join([await _dumps_ids(r) for r in results]) + b"]"
        else:
            if type(messages) is PrivateMessage:
                raise PublishError(400, "a broadcast is public: it may not be private")
            ids_json = await _dumps_ids(await hub.broadcast(messages, exclude=self._reserved))
        answer = b'{"ids":%b,"clients":%d}' % (ids_json, hub.client_count())
        if self._label:
            answer = answer[:-1] + b',"worker":%b}' % dumps(self.workers.name)
        return answer

    # -- subscribing -------------------------------------------------------------------------

    def _check_capacity(self) -> None:
        max_clients = self.max_clients
        if max_clients is not None and self.open_streams >= max_clients:
            raise HTTPError(
                503,
                f"the hub serves its maximum of {max_clients} streams; retry later",
                [(b"retry-after", b"5")],
            )

    async def _stream(
        self,
        hub: Hub,
        scope: Scope,
        receive: Receive,
        send: Send,
        channel: str | list[str] | None,
        *,
        admin: bool = False,
        request: Request | None = None,
        extra: Callable[[Subscription], list[tuple[str, str]]] | None = None,
    ) -> None:
        """Stream ``channel`` (a name, selectors, or None: the ``?channel=`` selectors of
        ``GET /events``), for ``request`` (default: the scope's), with the response headers
        ``extra`` gives for the open stream."""
        if request is None:
            request = request_from_scope(scope)
        if not admin:  # the statistics stream is guarded by the admin token instead
            self.auth.check_subscribe(scope, request)
        selection = (
            _selectors_of(request, self._reserved, topics=self.mercure)
            if channel is None
            else channel
        )
        self._check_capacity()
        opened = await open_stream(hub, request, channel=selection)
        if isinstance(opened, Answer):
            # The shared refusal (400, 401, 403 or 503, its JSON body), with this server's CORS
            # for the request's origin rather than the hub's fixed headers.
            challenge = INVALID_TOKEN if opened.status == 401 else ()
            message = loads(opened.body.decode())["error"]
            await self._send_error(scope, send, opened.status, message, challenge)
            return
        if self.presence is not None and hub is self.hub:
            self.presence.join(opened)
        headers = hub.headers if extra is None else hub.headers + extra(opened)
        cors = self.cors
        if cors.enabled:
            allowed = cors.simple_headers(scope["headers"])
            headers = headers + [(k.decode(), v.decode("latin-1")) for k, v in allowed]
        await stream_subscription(hub, opened, receive, send, headers, scope)

    async def _subscribe(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The path names the channel, whatever the query says.
        await self._stream(self.hub, scope, receive, send, _full_path(scope))

    async def _subscribe_channels(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stream(self.hub, scope, receive, send, None)

    async def _mercure_subscribe(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /.well-known/mercure?topic=<selector>``: a Mercure subscriber's stream."""
        scope = mercure.mercure_scope(scope)
        request, topics = mercure.subscription_request(request_from_scope(scope))
        await self._stream(
            self.hub,
            scope,
            receive,
            send,
            topics,
            request=request,
            extra=mercure.resume_headers,
        )

    async def _get_stats_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._stream(self.stats_hub, scope, receive, send, _full_path(scope), admin=True)

    async def _watch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The dashboard's live view of a channel: its live events on a stream that no count
        includes (guarded by the admin token, and capped by ``max_clients`` like a stream)."""
        channel = _full_path(scope)[len(WATCH_PREFIX) :]
        if not channel.startswith(EVENTS_PREFIX) or len(channel) == len(EVENTS_PREFIX):
            raise HTTPError(404, f"watch a channel as {WATCH_PREFIX}/events/<channel>")
        self._check_capacity()
        hub = self.hub
        try:
            sub = await hub.subscribe(channel, request=request_from_scope(scope), observer=True)
        except (HubClosed, BackendUnavailable):
            raise HTTPError(503, "the hub is shutting down") from None
        await stream_subscription(hub, sub, receive, send, hub.headers, scope)

    # -- reading -----------------------------------------------------------------------------

    async def _get_channels(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        channels = []
        for name in sorted(hub.channels()):
            if name in self._reserved:
                continue
            ch = hub.get_channel(name)
            channels.append(
                {
                    "channel": name,
                    "clients": len(ch) if ch is not None else 0,
                    "published": hub.published_count(name),
                    "delivered": ch.delivered if ch is not None else 0,
                }
            )
        answer: dict[str, Any] = {
            "channels": channels,
            "clients": hub.client_count(),
            "worker": self.workers.name,
        }
        if self._label:
            states = self.workers.all()
            answer["workers"] = states
            answer["totals"] = self.workers.totals(states)
        await self._send_json(scope, send, 200, dumps(answer), _NO_STORE)

    async def _get_subscriptions(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /subscriptions[/{channel...}]``: the open subscriptions (of the channel)."""
        assert self.presence is not None
        channel = scope["path"][len(PRESENCE_CHANNEL) :] or None
        body = await self.presence.answer(channel, request_from_scope(scope).query)
        await self._send_json(scope, send, 200, body, _NO_STORE)

    async def _mercure_subscriptions(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]``: Mercure's
        subscriptions API (JSON-LD), for a JWT whose subscribe selectors match the URL, or the
        admin token."""
        assert self.presence is not None and self.mercure_events is not None
        topic, who = mercure.subscription_path(scope["path"])
        jwt = self.auth.jwt
        admin = self._admin_token
        if jwt is not None and (
            admin is None or admin == self.auth.subscribe_token or not token_in(scope, admin)
        ):
            mercure.check_subscriptions_reader(jwt, scope, topic, who)
        try:
            body = await mercure.subscriptions_answer(
                self.presence, self.mercure_events, topic, who
            )
        except BackendUnavailable as exc:
            raise HTTPError(503, f"the backend is unavailable: {exc}") from None
        headers = [
            (b"content-type", b"application/ld+json"),
            (b"content-length", b"%d" % len(body)),
            *_NO_STORE,
            *self.cors.simple_headers(scope["headers"]),
        ]
        await self._send(send, 200, headers, body)

    async def _get_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Imported here: prometheus-client is only needed once /metrics is scraped.
        from ssehub.server.metrics import build_registry, render

        if self._registry is None:
            self._registry = build_registry(self)
        body, content_type = render(self._registry)
        headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
        headers += self.cors.simple_headers(scope["headers"])
        await self._send(send, 200, headers, body)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the hub can serve, and a JSON-able report (backend state, clients, uptime)."""
        hub = self.hub
        try:
            backend = await asyncio.wait_for(hub.backend.health(), 5.0)
        except (TimeoutError, BackendUnavailable, OSError) as exc:
            backend = {"ok": False, "backend": type(hub.backend).__name__, "error": str(exc)}
        ok = bool(backend.get("ok")) and not hub.closed and not self._closing
        report: dict[str, Any] = {
            "ok": ok,
            "status": "shutting down" if (hub.closed or self._closing) else "serving",
            "backend": backend,
            "channels": len(hub.channels()),
            "clients": hub.client_count(),
            "uptime": round(time.time() - self.started_at, 3),
            "pid": os.getpid(),
            "worker": self.workers.name,
            "version": self.version,
            # What guards the hub, by name (never a value): jwt, publish-token, ...
            "auth": self.auth_names(),
        }
        if self._label:
            # Each number above is this process's; these cover every live one.
            states = self.workers.all()
            report["workers"] = states
            report["totals"] = self.workers.totals(states)
            if self.workers.error is not None:
                report["workers_error"] = self.workers.error
        return ok, report

    async def _get_health(self, scope: Scope, receive: Receive, send: Send) -> None:
        ok, report = await self.health()
        await self._send_json(scope, send, 200 if ok else 503, dumps(report), _NO_STORE)

    async def _get_dashboard(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.dashboard.page()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-cache"),
        ]
        await self._send(send, 200, headers, body)
