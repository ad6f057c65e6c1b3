"""Presence for ``ssehub serve --presence``: which subscriptions are open, listed and announced.

Each stream the hub opens (``GET /events...``) is noted by `Presence.join` and described by a
`SubscriptionEntry`: a unique ``id``, the ``selectors`` it reads (its channel for a one-channel
stream), the ``payload`` claim of its token (None without one), ``active`` and the ``hub``
process serving it. When the subscription ends it leaves (its ``on_close``, chained).

- ``GET /subscriptions`` lists them, ``GET /subscriptions/{channel...}`` those whose selectors
  match the channel (`Presence.answer`), at most ``?limit=`` (`DEFAULT_LIMIT`, up to
  `MAX_LIMIT`); ``"truncated": true`` says the list was cut.
- Every join and leave is published on the reserved channel `PRESENCE_CHANNEL` as a **private**
  event of type `PRESENCE_EVENT` whose data is the entry (``"active": false`` for a leave), as
  Mercure does: only subscribers allowed to read that channel's private events get them. The
  events are published one at a time by a task of their own, in order, never by the request
  that opened the stream; at most `MAX_PENDING` wait (more are dropped and counted).
- Across hubs on a shared backend (``--redis``) each hub shares its list (`Backend.
  share_presence`: a hash per hub with a ttl), at once after a change and every
  `SHARE_INTERVAL` seconds; a listing is this hub's own entries, then every other live hub's
  (`Backend.presence`). A hub that dies drops out after `PRESENCE_TTL` seconds; one that stops
  cleanly announces the leave of each of its streams first (best effort, with a deadline) and
  withdraws its list.

A listing is O(subscriptions) at worst (a per-channel one scans until it has ``limit``), and
yields to the event loop every `_SLICE` entries and between pages read from the backend.
Who may list them (`HubServer` decides): the admin token, as for ``/channels``; with a JWT key,
a token whose ``subscribe`` selectors match `PRESENCE_CHANNEL` (or, for one channel's list,
``/subscriptions/{channel...}`` itself), or an admin token set as such (`presence_reader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from ssehub.asgi import request_from_scope
from ssehub.errors import (
    BackendUnavailable,
    EventTooLarge,
    HubClosed,
    InvalidSelector,
    InvalidToken,
)
from ssehub.hub import Hub
from ssehub.selectors import Selectors
from ssehub.server._json import dumps, loads
from ssehub.server.auth import BEARER_REALM, INVALID_TOKEN, token_in
from ssehub.server.routing import Endpoint, HTTPError
from ssehub.subscription import Subscription
from ssehub.types import Receive, Scope, Send
from ssehub.wire import Message

if TYPE_CHECKING:  # ssehub.authz needs PyJWT, which a hub without JWTs does without
    from ssehub.authz import JWTAuth

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_PENDING",
    "PRESENCE_CHANNEL",
    "PRESENCE_EVENT",
    "PRESENCE_TTL",
    "SHARE_INTERVAL",
    "Presence",
    "SubscriptionEntry",
    "parse_limit",
    "presence_reader",
    "selectors_of",
]

log = logging.getLogger("ssehub.server")

PRESENCE_CHANNEL = "/subscriptions"
"""The reserved channel of join and leave events (private); also the listing's path."""

PRESENCE_EVENT = "subscription"
"""The event type of a join or leave; its data is a `SubscriptionEntry` as JSON."""

DEFAULT_LIMIT = 1000
"""Subscriptions listed by default (``?limit=``)."""

MAX_LIMIT = 10_000
"""The most subscriptions one listing may ask for."""

SHARE_INTERVAL = 1.0
"""Seconds between two refreshes of this hub's shared list (changes are shared at once)."""

PRESENCE_TTL = 5.0
"""Seconds after its last refresh that a hub's shared list is left out."""

MAX_PENDING = 10_000
"""Join and leave events waiting to be published, past which new ones are dropped."""

_SLICE = 2000  # local entries looked at between two yields to the event loop
_MIN_GAP = 0.05  # seconds between two shares, so that a burst of joins is shared in one


class SubscriptionEntry(TypedDict):
    """One subscription as listed and announced."""

    id: str
    """Unique to the subscription (a UUID), across hubs."""
    selectors: list[str]
    """The channel selectors it reads (its channel, for a one-channel stream)."""
    payload: Any
    """Its token's ``payload`` claim (`ssehub.Subscription.payload`), or None."""
    active: bool
    """True while it is open; False in its leave event."""
    hub: str
    """The hub process serving it (``host:pid``)."""


def selectors_of(sub: Subscription) -> list[str]:
    """The selectors ``sub`` reads, as text."""
    if sub.selectors is None:
        return [sub.channel]
    return [selector.text for selector in sub.selectors]


def _reads(sub: Subscription, channel: str) -> bool:
    selectors = sub.selectors
    return sub.channel == channel if selectors is None else selectors.matches(channel)


def _shared_entry(text: str, channel: str | None) -> SubscriptionEntry | None:
    """Another hub's entry (JSON text) when it is one and it reads ``channel`` (None: any)."""
    try:
        entry = loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
        return None
    selectors = entry.get("selectors")
    if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
        return None
    if channel is not None:
        try:
            if not Selectors(selectors).matches(channel):
                return None
        except InvalidSelector:
            return None
    return SubscriptionEntry(
        id=entry["id"],
        selectors=selectors,
        payload=entry.get("payload"),
        active=True,
        hub=str(entry.get("hub", "")),
    )


def parse_limit(query: Mapping[str, str]) -> int:
    """The ``limit`` query parameter (default `DEFAULT_LIMIT`); HTTPError 400 when it is not a
    whole number from 1 to `MAX_LIMIT`."""
    text = query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise HTTPError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return int(text)


def presence_reader(jwt: JWTAuth, admin_token: bytes | None, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` (a listing), for a request with ``admin_token`` (when set), or a JWT whose
    ``subscribe`` selectors match `PRESENCE_CHANNEL` or the request's path (``/subscriptions/
    events/news`` for that channel's list): 401 without a usable token, 403 for one that may
    not read it."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if admin_token is None or not token_in(scope, admin_token):
            _check_reader(jwt, scope)
        await endpoint(scope, receive, send)

    return guarded


def _check_reader(jwt: JWTAuth, scope: Scope) -> None:
    try:
        grant = jwt.grant_for(request_from_scope(scope))
    except InvalidToken as exc:
        raise HTTPError(401, str(exc), INVALID_TOKEN) from None
    if grant is None:
        raise HTTPError(
            401,
            f"listing subscriptions needs a JWT whose subscribe claim matches {PRESENCE_CHANNEL} "
            "('Authorization: Bearer <token>', a cookie or ?authorization=<token>)",
            BEARER_REALM,
        )
    allowed = grant.subscribe
    path: str = scope["path"]
    if not (allowed.matches(PRESENCE_CHANNEL) or allowed.matches(path)):
        raise HTTPError(
            403, f"the token may not read {path}: no selector of its subscribe claim matches it"
        )


class Presence:
    """The open subscriptions of a hub, listed on request and announced as they come and go.

    Args:
        hub: the hub whose streams are noted (`join`) and where events are published.
        name: this hub process's name (``host:pid``), in every entry it makes.
        interval: seconds between two refreshes of the shared list.
        ttl: seconds a shared list lives without a refresh.
        max_pending: join and leave events that may wait to be published.

    Every method runs on the hub's event loop.
    """

    def __init__(
        self,
        hub: Hub,
        name: str,
        *,
        interval: float = SHARE_INTERVAL,
        ttl: float = PRESENCE_TTL,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.hub = hub
        self.name = name
        self.interval = interval
        self.ttl = ttl
        self.max_pending = max_pending
        self.dropped = 0
        """Join and leave events dropped (too many waiting, or the backend refused them)."""
        self.error: str | None = None
        """Why the last share of this hub's list failed (None when it succeeded)."""
        self._entries: dict[Subscription, SubscriptionEntry] = {}
        self.listeners: list[Callable[[SubscriptionEntry], None]] = []
        """Called with each join's entry and each leave's (``"active": false``), on the loop,
        after the event is queued (the Mercure subscription events are made so). A listener
        must not block, nor raise."""
        self._pending: deque[str] = deque()
        self._publish_wake = asyncio.Event()
        # This hub's list changes not shared yet (id to JSON text, None for a leave); with
        # _reset, the whole list is shared instead.
        self._changes: dict[str, str | None] = {}
        self._reset = True
        self._share_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._last_failure: str | None = None

    def __len__(self) -> int:
        """The subscriptions open on this hub."""
        return len(self._entries)

    @property
    def pending(self) -> int:
        """Join and leave events waiting to be published."""
        return len(self._pending)

    @property
    def shared(self) -> bool:
        """Whether other hubs share the list (the backend is shared)."""
        return self.hub.backend.shared

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start publishing events and, on a shared backend, sharing the list."""
        if self._tasks or self._stopped:
            return
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._publish(), name="ssehub-presence-events"))
        if self.shared:
            self._tasks.append(loop.create_task(self._share(), name="ssehub-presence-share"))

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop noting streams. On a shared backend, first announce the leave of every stream
        still open (they end with the hub; other hubs' subscribers get the events), waiting up
        to ``timeout`` seconds for them to be published, then withdraw this hub's list."""
        if self._stopped:
            return
        self._stopped = True
        if self.shared:
            for sub in list(self._entries):
                self._leave(sub)
            deadline = time.monotonic() + timeout
            while self._pending and time.monotonic() < deadline and self._tasks:
                await asyncio.sleep(0.01)
        self._entries.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.shared:
            await self.hub.backend.retire_presence(self.name)

    # -- joins and leaves --------------------------------------------------------------------

    def join(self, sub: Subscription) -> None:
        """Note ``sub``, a stream that just opened: list it, announce it, and have it leave
        when it closes."""
        if self._stopped or sub.closed or sub in self._entries:
            return
        entry = SubscriptionEntry(
            id=str(uuid.uuid4()),
            selectors=selectors_of(sub),
            payload=sub.payload,
            active=True,
            hub=self.name,
        )
        self._entries[sub] = entry
        previous = sub.on_close

        def on_close(closed: Subscription) -> None:
            if previous is not None:
                previous(closed)
            self._leave(closed)

        sub.on_close = on_close
        text = dumps(entry).decode()
        self._announce(text)
        self._changed(entry["id"], text)
        for listener in self.listeners:
            listener(entry)

    def _leave(self, sub: Subscription) -> None:
        entry = self._entries.pop(sub, None)
        if entry is None:
            return
        left = SubscriptionEntry(**{**entry, "active": False})
        self._announce(dumps(left).decode())
        self._changed(entry["id"], None)
        for listener in self.listeners:
            listener(left)

    def _announce(self, data: str) -> None:
        if len(self._pending) >= self.max_pending:
            if not self.dropped:
                log.warning(
                    "event=presence_dropped pending=%d: joins and leaves come faster than "
                    "they are published; some are not announced",
                    len(self._pending),
                )
            self.dropped += 1
            return
        self._pending.append(data)
        self._publish_wake.set()

    async def _publish(self) -> None:
        pending = self._pending
        while True:
            await self._publish_wake.wait()
            self._publish_wake.clear()
            while pending:
                message = Message(pending[0], event=PRESENCE_EVENT)
                try:
                    await self.hub.publish(PRESENCE_CHANNEL, message, private=True)
                except HubClosed:
                    pending.clear()
                    return
                except (BackendUnavailable, EventTooLarge) as exc:
                    self._failed(str(exc))
                except NotImplementedError as exc:  # a backend without private events
                    self._failed(str(exc))
                except Exception as exc:  # the task goes on: later events may get through
                    log.exception("event=presence_publish_error")
                    self._failed(repr(exc))
                pending.popleft()

    def _failed(self, error: str) -> None:
        # One line per kind of failure, not one per event.
        self.dropped += 1
        if error != self._last_failure:
            self._last_failure = error
            log.warning("event=presence_publish_failed error=%r", error)

    # -- sharing -----------------------------------------------------------------------------

    def _changed(self, entry_id: str, text: str | None) -> None:
        if not self.shared:
            return
        if not self._reset:
            self._changes[entry_id] = text
        self._share_wake.set()

    async def share_once(self) -> None:
        """Share this hub's list changes (the whole list after a failure), refreshing its ttl."""
        reset = self._reset
        if reset:
            changes: dict[str, str | None] = {
                entry["id"]: dumps(entry).decode() for entry in self._entries.values()
            }
            self._changes = {}
            self._reset = False
        else:
            changes, self._changes = self._changes, {}
        try:
            await asyncio.wait_for(
                self.hub.backend.share_presence(self.name, changes, self.ttl, reset=reset),
                self.ttl,
            )
        except (BackendUnavailable, TimeoutError, OSError) as exc:
            if self.error is None:
                log.warning("event=presence_share_failed worker=%s error=%r", self.name, str(exc))
            self.error = str(exc) or type(exc).__name__
            self._reset = True  # what was taken is lost: share everything next time
            self._changes = {}
            return
        self.error = None

    async def _share(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._share_wake.wait(), self.interval)
            self._share_wake.clear()
            started = loop.time()
            await self.share_once()
            await asyncio.sleep(max(0.0, _MIN_GAP - (loop.time() - started)))

    # -- listing -----------------------------------------------------------------------------

    async def subscriptions(
        self, channel: str | None = None, limit: int = DEFAULT_LIMIT
    ) -> tuple[list[SubscriptionEntry], bool]:
        """The open subscriptions (those whose selectors match ``channel``, when given): this
        hub's, then every other live hub's; at most ``limit`` of them, and whether there were
        more. Raises `BackendUnavailable` when the other hubs' lists cannot be read."""
        found: list[SubscriptionEntry] = []
        for count, (sub, entry) in enumerate(list(self._entries.items()), 1):
            if channel is None or _reads(sub, channel):
                found.append(entry)
                if len(found) > limit:
                    return found[:limit], True
            if not count % _SLICE:
                await asyncio.sleep(0)
        if not self.shared:
            return found, False
        seen: set[str] = set()  # a page read while a hash grows may repeat an entry
        pages = self.hub.backend.presence(self.name, self.ttl)
        async with contextlib.aclosing(pages):
            async for page in pages:
                for text in page:
                    shared = _shared_entry(text, channel)
                    if shared is None or shared["id"] in seen:
                        continue
                    seen.add(shared["id"])
                    found.append(shared)
                    if len(found) > limit:
                        return found[:limit], True
                await asyncio.sleep(0)
        return found, False

    async def answer(self, channel: str | None, query: Mapping[str, str]) -> bytes:
        """The JSON body of a listing: ``{"subscriptions": [...], "truncated": bool}``.
        HTTPError 400 for a bad ``limit``, 503 when other hubs' lists cannot be read."""
        limit = parse_limit(query)
        try:
            found, truncated = await self.subscriptions(channel, limit)
        except BackendUnavailable as exc:
            raise HTTPError(503, f"the backend is unavailable: {exc}") from None
        return dumps({"subscriptions": found, "truncated": truncated})
