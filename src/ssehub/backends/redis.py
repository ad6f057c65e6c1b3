"""The Redis backend: shared history and fan-out across hub processes and machines.

Install with ``pip install 'ssehub[redis]'`` (redis-py's asyncio client) and pass it to a hub::

    from ssehub import Hub
    from ssehub.redis import RedisBackend

    hub = Hub(backend=RedisBackend("redis://localhost:6379/0"))

How it stores and carries events (see the README's Redis section for the key names):

- Each channel is one Redis Stream. An event's stream id is ``<ms>-<g>``: ``ms`` is Redis's
  clock, ``g`` the prefix's counter (``{prefix}:seq``, one INCR per event), so ids are ordered
  across every hub and every channel, and an event published to several channels has the same
  id in each. A message's own id (``Message(id=...)``) is kept as the SSE id and indexed in a
  hash so a client resuming from it is found. History is trimmed exactly to ``history`` events
  (and to ``history_ttl`` seconds) by the publish script.
- Every publish is one Lua script, whatever the number of channels: append to each stream,
  trim, and ``PUBLISH`` the encoded event once on the prefix's feed channel, atomically, so the
  feed carries events in ``g`` order. A message whose own id is still in (one of) the streams is
  a duplicate: the script stores and publishes nothing, so a retried publish is idempotent
  across every hub. A private event is stored as such (field ``p``) and replayed only to
  subscribers allowed to read it.
- Each hub holds one subscriber connection to the feed and delivers the events of the channels
  it has subscribers on (every channel's while it has ``*`` or template subscribers). When that
  connection drops, it reconnects with backoff and reads each watched stream from the last id it
  delivered, up to the counter read then, merged in ``g`` order with each event once (the feed
  carries what follows), so nothing Redis accepted is missed or repeated.
- The stream id is the order of truth. A replay returns, read atomically with its events, the
  newest stream id, and the hub drops live events at or below it for that client (the feed may
  still be catching up with history): each event reaches a resuming client once. A resume
  across channels (`RedisBackend.replay_selected`) reads the counter first, then each matched
  stream's events after the client's ``g`` up to it: the hub drops live events up to that ``g``
  for that client, and those after it reach the client live.
- Events of several channels touch keys in several Redis Cluster slots: Cluster is not
  supported yet (one script publishes to every channel of an event).
- Each channel has an epoch (a random token in the index hash, set when its stream is made and
  stored in each entry). When a hub's feed reconnects and finds the stream's newest id below the
  last one it delivered (Redis restarted from an older snapshot, or lost its data), or finds a
  new epoch, the channel gets a new epoch: its open streams receive one `ssehub.gap` notice and
  go on live, nothing is delivered twice, and a client resuming with an id of an older epoch is
  told about the gap too.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import AbstractConnection, ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ssehub.redis needs redis-py: pip install 'ssehub[redis]'") from exc

from ssehub.backends.base import Backend, Deliver, Forget, PublishResult, Replay, too_large
from ssehub.errors import BackendUnavailable
from ssehub.resume import Position, gap_notice
from ssehub.selectors import Selectors
from ssehub.wire import Message

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisBackend"]

log = logging.getLogger("ssehub.redis")


def _script(name: str) -> str:
    """A Lua script of ``backends/lua/``, with the shared ``trim`` function put before it."""
    lua = resources.files("ssehub.backends").joinpath("lua")
    return lua.joinpath("trim.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()


def _new_epoch() -> str:
    return secrets.token_hex(6)


_DEAD = (RedisError, OSError, asyncio.TimeoutError)

_PRESENCE_BATCH = 1000  # fields per HSET or HDEL of a presence hash


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq)


def _stream_g(event_id: str) -> int | None:
    """The g of an id shaped as a stream id (``<ms>-<g>``), or None for any other id."""
    ms, dash, g = event_id.partition("-")
    if dash and ms.isascii() and ms.isdigit() and g.isascii() and g.isdigit():
        return int(g)
    return None


def _split(message: Message) -> tuple[bytes, bytes]:
    """The event's bytes before and after its ``id:`` line (comment lines; the other fields)."""
    if message.comment is None:
        head = b""
        if message.id is None:
            return head, message.encode()
    else:
        # A comment-only message encodes as its comment lines followed by b"data: \n\n".
        head = Message(comment=message.comment).encode()[:-8]
    body = Message(message.data, event=message.event, retry=message.retry).encode()
    return head, body


def _entry_event(entry: Any) -> tuple[str, str, bytes, str, bool]:
    """(stream id, SSE id, encoded bytes, epoch, private) of one stream entry.

    Scripts return an entry's fields as a flat list; redis-py's ``xrange`` makes them a dict.
    """
    raw_sid, raw_fields = entry
    sid = raw_sid.decode()
    fields: dict[bytes, bytes] = (
        raw_fields
        if isinstance(raw_fields, dict)
        else dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
    )
    uid = fields.get(b"u")
    sse = sid.encode() if uid is None else uid
    data = fields.get(b"h", b"") + b"id: " + sse + b"\n" + fields.get(b"b", b"")
    return sid, sse.decode(), data, fields.get(b"e", b"").decode(), fields.get(b"p") == b"1"


def _no_script(answer: Any) -> bool:
    return isinstance(answer, NoScriptError)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


_PAGE = 1000
"""Entries read from a stream at a time by a refill."""

DEFAULT_KEY_TTL = 24 * 3600.0
"""Seconds after its last publish that an idle channel's keys expire by default (24 h)."""

REMIND_EVERY = 60.0
"""Seconds between two ``event=redis_down`` reminders while Redis stays unreachable."""


class _FeedLog:
    """The feed's log: one line per change of Redis's state, never one per attempt.

    ``redis_connected`` (first time), ``redis_unreachable`` (the first attempt failed) or
    ``redis_lost`` (an established feed broke), then one ``redis_reconnecting`` with the
    backoff, a ``redis_down`` reminder at most every `REMIND_EVERY` seconds while it lasts,
    and ``redis_recovered`` with how long it lasted and how many attempts it took.
    """

    def __init__(self, url: str, max_backoff: float) -> None:
        self.url = url
        self.max_backoff = max_backoff
        self.ever_connected = False
        self.down_since: float | None = None
        self.attempts = 0
        self.reminded = 0.0

    def connected(self) -> bool:
        """Log the feed's (re)connection; True when it is a reconnection."""
        again = self.ever_connected
        self.ever_connected = True
        if self.down_since is None:
            log.info("event=redis_connected url=%s", self.url)
            return again
        down_for = time.monotonic() - self.down_since
        log.info(
            "event=%s url=%s down_for=%.3fs attempts=%d",
            "redis_recovered" if again else "redis_connected",
            self.url,
            down_for,
            self.attempts,
        )
        self.down_since = None
        self.attempts = 0
        return again

    def failed(self, reason: str, backoff: float, *, lost: bool) -> None:
        """Log a failed attempt (or a broken feed) if it changes the state, or is due a
        reminder."""
        now = time.monotonic()
        self.attempts += 1
        if self.down_since is None:
            self.down_since = self.reminded = now
            if lost:
                log.warning("event=redis_lost url=%s reason=%r", self.url, reason)
            else:
                log.warning(
                    "event=redis_unreachable url=%s reason=%r: serving anyway; publishes get "
                    "503 and history is unavailable until Redis answers",
                    self.url,
                    reason,
                )
            log.info(
                "event=redis_reconnecting url=%s backoff=%gs max_backoff=%gs",
                self.url,
                backoff,
                self.max_backoff,
            )
        elif now - self.reminded >= REMIND_EVERY:
            self.reminded = now
            log.warning(
                "event=redis_down url=%s down_for=%.1fs attempts=%d reason=%r",
                self.url,
                now - self.down_since,
                self.attempts,
                reason,
            )


@dataclass(slots=True)
class _Watch:
    """Where the feed of one watched channel stands."""

    last: tuple[int, int] | None = None
    """The stream id of the last event delivered (None before the first)."""
    last_raw: str | None = None
    last_sse: str | None = None
    """The SSE id of the last event delivered (for the gap notice)."""
    floor: str | None = None
    """The stream's position when the channel was first watched (exclusive, ``(id``) or the
    Redis time then (inclusive, ``ms-0``): where a refill starts when nothing was delivered."""
    resolving: asyncio.Task[None] | None = None
    epoch: str | None = None
    """The channel's epoch the last event delivered belongs to (None before the first)."""
    stale: str | None = None
    """The epoch ``epoch`` replaced: its events still in flight count as the current one's."""
    generation: int = 0
    """How many epoch changes this hub has seen on the channel: the first part of a
    `Position`, so that events of a newer epoch come after every older one."""
    bound: int = -1
    """The counter when the last refill read the stream: the feed's events up to this g were
    the refill's to deliver (it did, or they were trimmed before it could)."""

    def position(self, epoch: str, key: tuple[int, int]) -> Position:
        """The position of an event of ``epoch`` at stream id ``key``, as seen by this watch."""
        generation = self.generation
        if self.epoch is not None and epoch not in (self.epoch, self.stale):
            generation += 1
        return (generation, *key)


@dataclass(slots=True)
class _Entry:
    """One stream entry read by a refill."""

    g: int
    sid: str
    key: tuple[int, int]
    sse: str
    data: bytes
    epoch: str
    private: bool


@dataclass(slots=True)
class _Source:
    """One stream a refill reads, from ``start`` (an XRANGE start), a page at a time."""

    channel: str
    watch: _Watch | None
    """None for a channel read only because every channel is delivered (`watch_all`)."""
    start: str
    fresh_epoch: str | None
    """After an epoch change: the new epoch, whose entries are all delivered."""
    last: tuple[int, int] | None
    """The stream id of the last event the watch delivered before the refill."""
    entries: deque[_Entry] = dataclass_field(default_factory=deque)
    done: bool = False


class RedisBackend(Backend):
    """History and fan-out on Redis, shared by every hub that uses the same Redis and prefix.

    Args:
        url: the Redis URL, e.g. ``redis://localhost:6379/0`` (``rediss://`` for TLS; a password
            in the URL is never shown in `health` or errors).
        prefix: the first part of every key and of the feed channel; hubs that share a prefix
            share channels. Letters, digits and ``_-.:/`` only.
        timeout: seconds a Redis command may take before it counts as failed.
        connect_timeout: seconds to wait for a TCP connection to Redis.
        ping_interval: seconds of silence on the feed after which it is pinged; no answer within
            ``timeout`` more seconds counts as a broken connection.
        max_backoff: the longest wait between two reconnection attempts of the feed.
        key_ttl: seconds after its last publish that an idle channel's keys expire (its
            history goes with them; a client resuming from one of its ids is told about the
            gap); ``0`` keeps them forever. With ``history_ttl``, the shorter of the two.

    `publish` raises `BackendUnavailable` when Redis cannot be reached (the event is then not
    stored; after a timeout it may have been). Open streams stay open through a Redis outage;
    the feed reconnects and resumes from the last event it delivered. Requires Redis 6.2 or
    later. All methods must be called on the hub's event loop.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "ssehub",
        timeout: float = 5.0,
        connect_timeout: float = 2.0,
        ping_interval: float = 5.0,
        max_backoff: float = 2.0,
        key_ttl: float = DEFAULT_KEY_TTL,
    ) -> None:
        if not prefix or any(not (c.isalnum() or c in "_-.:/") for c in prefix):
            raise ValueError(
                f"prefix must be non-empty letters, digits and _-.:/ only, got {prefix!r}"
            )
        if not key_ttl >= 0:
            raise ValueError(f"key_ttl must be seconds >= 0 (0: keep forever), got {key_ttl!r}")
        for name, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("ping_interval", ping_interval),
            ("max_backoff", max_backoff),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive seconds, got {value!r}")
        self.url = url
        self.prefix = prefix
        self._safe_url = _redact(url)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval
        self._max_backoff = max_backoff
        self._feed_channel = f"{prefix}:feed"
        self._deliver: Deliver | None = None
        self._maxlen = 1000
        self._max_event: int | None = None
        self._ttl_ms = 0
        self._key_ttl_ms = math.ceil(key_ttl * 1000)
        self._expire_ms = self._key_ttl_ms
        self._client: aioredis.Redis | None = None
        self._feed_pool: ConnectionPool | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._feed_up = False
        self._last_error: str | None = None
        self._watched: dict[str, _Watch] = {}
        self._clock_offset_ms: float = 0.0
        self._closing = False
        self._first_attempt = asyncio.Event()
        self._publish_script: AsyncScript | None = None
        self._replay_script: AsyncScript | None = None
        self._length_script: AsyncScript | None = None
        self._head_script: AsyncScript | None = None
        self._since_script: AsyncScript | None = None
        self._counter_script: AsyncScript | None = None
        # Every channel's events are delivered, not only the watched ones' (`watch_all`); the
        # refill's bound for those, and where the first refill starts when none ran yet.
        self._all = False
        self._all_bound = -1
        self._all_floor: str | None = None
        # The stream id of the newest event on the feed, the bound of the last refill, and the
        # newest g this process has seen at all (published, delivered or read): publish.lua's
        # floor.
        self._fed_sid: bytes | None = None
        self._refilled_to = -1
        self._top_g = 0
        self.reconnects = 0
        """How many times the feed connection was re-established after a failure."""
        self.refilled = 0
        """Events read back from the streams after a feed outage (delivered once each)."""

    # -- keys --------------------------------------------------------------------------------

    def stream_key(self, channel: str) -> str:
        """The Redis key of ``channel``'s stream: ``{prefix}:{<channel>}`` (hash-tagged)."""
        return f"{self.prefix}:{{{channel}}}"

    def index_key(self, channel: str) -> str:
        """The key of the hash indexing ``channel``'s user-supplied ids (same Cluster slot)."""
        return f"{self.prefix}:{{{channel}}}:index"

    def counter_key(self) -> str:
        """The key of the counter whose value, ``g``, orders events across channels: each
        event's stream id is ``<ms>-<g>``, the same in every channel it is published to."""
        return f"{self.prefix}:seq"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(
        self,
        deliver: Deliver,
        *,
        history: int,
        history_ttl: float | None,
        history_bytes: int | None = None,
        history_memory: int | None = None,
        max_event: int | None = None,
        forget: Forget | None = None,
    ) -> None:
        """Connect, and start the feed in a task of the running loop.

        Does not fail when Redis is down: the feed keeps trying (see `health`). History lives
        in Redis, trimmed by count (``history``) and age (``history_ttl``); ``history_bytes``
        and ``history_memory`` bound in-process history and do not apply here (bound Redis with
        its own ``maxmemory``). ``max_event`` is enforced by `publish`.
        """
        self._deliver = deliver
        self._max_event = max_event
        self._maxlen = history
        self._ttl_ms = 0 if history_ttl is None else max(1, math.ceil(history_ttl * 1000))
        expiries = [ms for ms in (self._ttl_ms, self._key_ttl_ms) if ms > 0]
        self._expire_ms = min(expiries) if expiries else 0
        common: dict[str, Any] = {
            "socket_connect_timeout": self._connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            # RESP2: the feed reads pub/sub messages as plain replies (RESP3 would push them).
            "protocol": 2,
        }
        # No retries: a command retried after Redis ran it once would store the event twice.
        self._client = aioredis.Redis.from_url(self.url, socket_timeout=self._timeout, **common)
        self._feed_pool = ConnectionPool.from_url(self.url, **common)
        self._publish_script = self._client.register_script(_script("publish"))
        self._replay_script = self._client.register_script(_script("replay"))
        self._length_script = self._client.register_script(_script("length"))
        self._head_script = self._client.register_script(_script("head"))
        self._since_script = self._client.register_script(_script("since"))
        self._counter_script = self._client.register_script(_script("counter"))
        self._first_attempt = asyncio.Event()
        self._feed_task = asyncio.get_running_loop().create_task(
            self._run_feed(), name="ssehub-redis-feed"
        )
        # Let the feed's first connection settle, so a hub that starts with Redis up is
        # subscribed when start() returns; with Redis down it keeps trying in the background.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                self._first_attempt.wait(), self._connect_timeout + self._timeout
            )

    async def close(self) -> None:
        """Stop the feed and close the connections."""
        self._closing = True
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._feed_task
            self._feed_task = None
        for watch in self._watched.values():
            if watch.resolving is not None:
                watch.resolving.cancel()
        if self._client is not None:
            await self._client.aclose()
        if self._feed_pool is not None:
            await self._feed_pool.disconnect()

    def _require_client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("RedisBackend.start() has not been called")
        return self._client

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> str:
        """Append to ``channel``'s stream (or each of the channels' streams) and fan out to every
        hub; return the event's id.

        The id is the message's own id when it has one, else the stream id ``<ms>-<g>``, the
        same in every channel (``g`` orders events across channels, see `counter_key`). A
        message whose own id is still in the history of the channel (or of one of them) is
        not stored or published again (``PublishResult(id, duplicate=True)``), whichever hub
        published it first. One round trip, one script, whatever the number of channels.
        Raises `BackendUnavailable` when Redis cannot be reached or refuses the write.
        """
        self._require_client()
        names = (channel,) if isinstance(channel, str) else channel
        keys, args = self._publish_call(names, message, private)
        try:
            assert self._publish_script is not None
            sid, duplicate, _ = await self._publish_script(keys=keys, args=args)
        except _DEAD as exc:
            raise self._unavailable("could not store the event", exc) from exc
        return self._published(message, sid, duplicate)

    async def publish_each(
        self, channels: Sequence[str], message: Message
    ) -> list[PublishResult | BackendUnavailable]:
        """Publish ``message`` to each of ``channels`` as a separate event, pipelined: one round
        trip for the lot (one per node on a Cluster), one script per channel."""
        client = self._require_client()
        assert self._publish_script is not None
        sha = self._publish_script.sha
        calls = [self._publish_call((name,), message, False) for name in channels]
        results: list[PublishResult | BackendUnavailable | None] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(2):
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for i in pending:
                        keys, args = calls[i]
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    answers: list[Any] = await pipe.execute(raise_on_error=False)
            except _DEAD as exc:
                failed = self._unavailable("could not store the event", exc)
                for i in pending:
                    results[i] = failed
                break
            again: list[int] = []
            for i, answer in zip(pending, answers, strict=True):
                if isinstance(answer, NoScriptError) and not attempt:
                    again.append(i)  # the script ran nothing there
                elif isinstance(answer, BaseException):
                    results[i] = self._unavailable("could not store the event", answer)
                else:
                    results[i] = self._published(message, answer[0], answer[1])
            if not again:
                break
            # A node that restarted or was promoted lost the script cache: load it, once.
            pending = again
            try:
                await self._load_publish_script()
            except _DEAD as exc:
                failed = self._unavailable("could not store the event", exc)
                for i in pending:
                    results[i] = failed
                break
        return [result for result in results if result is not None]

    async def _load_publish_script(self) -> None:
        assert self._publish_script is not None
        await self._require_client().script_load(self._publish_script.script)

    def _publish_call(
        self, names: tuple[str, ...], message: Message, private: bool
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of publish.lua for one event to ``names`` (one slot)."""
        head, body = _split(message)
        uid = message.id
        max_event = self._max_event
        if max_event is not None:
            # The id line: "id: " + the id (a stream id is at most 41 characters) + "\n".
            size = len(head) + len(body) + 5 + (len(uid.encode()) if uid is not None else 41)
            if size > max_event:
                raise too_large(size, max_event)
        keys: list[str] = []
        for name in names:
            keys.append(self.stream_key(name))
            keys.append(self.index_key(name))
        keys.append(self.counter_key())
        args: list[Any] = [
            self._maxlen,
            self._ttl_ms,
            self._feed_channel,
            body,
            head,
            uid if uid is not None else "",
            "1" if uid is not None else "0",
            _new_epoch(),
            "1" if private else "0",
            self._top_g,
            self._expire_ms,
            "PUBLISH",
            *names,
        ]
        return keys, args

    def _published(self, message: Message, sid: bytes, duplicate: Any) -> PublishResult:
        text = sid.decode()
        if not duplicate:
            g = _sid_key(text)[1]
            if g > self._top_g:
                self._top_g = g
        uid = message.id
        return PublishResult(uid if uid is not None else text, duplicate=bool(duplicate))

    def _unavailable(self, doing: str, exc: BaseException) -> BackendUnavailable:
        """`BackendUnavailable` for ``exc``, in words: a Cluster's redirection (``MOVED``,
        ``ASK``) or refusal (``CLUSTERDOWN``) is never shown raw to a publisher."""
        text = str(exc) or type(exc).__name__
        word = text.split(" ", 1)[0]
        if word in ("MOVED", "ASK"):
            text = (
                "the channel's slot is served by another Redis Cluster node (the server answered "
                f"{word}): use a redis+cluster:// URL, or retry once the cluster settles"
            )
        elif word in ("CLUSTERDOWN", "TRYAGAIN"):
            text = "the Redis Cluster cannot serve the channel's slot now (failover, resharding)"
        return BackendUnavailable(f"{doing} on Redis at {self._safe_url}: {text}")

    # -- replay ------------------------------------------------------------------------------

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        """The retained events of ``channel`` after ``last_event_id`` (a stream or user id);
        its private events only when ``private`` is true.

        ``head`` is the stream's newest id, read atomically with the events: the hub drops live
        events at or below it for this client. An id of an older epoch is not found (the client
        is told about the gap) and gets what follows it plus the current epoch's events. When
        Redis cannot be reached the history is unavailable: the result says the id was not
        found and holds no events, so the client is told about the gap and stays connected.
        """
        if self._maxlen == 0 or any(c in last_event_id for c in "\r\n\0"):
            return Replay((), found=False)
        self._require_client()
        assert self._replay_script is not None
        try:
            watch = self._watched.get(channel)
            if watch is not None and watch.resolving is not None:
                # The feed's starting point must be fixed before the history is read.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(watch.resolving)
            found, entries, raw_epoch, raw_newest = await self._replay_script(
                keys=[self.stream_key(channel), self.index_key(channel)],
                args=[last_event_id, self._maxlen, self._ttl_ms],
            )
        except _DEAD as exc:
            # One line per outage, not one per client resuming during it (see _FeedLog).
            if self._feed_up:
                log.warning(
                    "event=redis_replay_failed url=%s channel=%s reason=%r",
                    self._safe_url,
                    channel,
                    str(exc) or type(exc).__name__,
                )
            return Replay((), found=False)
        events = []
        for entry in entries:
            _, sse, data, _, hidden = _entry_event(entry)
            if private or not hidden:
                events.append((sse, data))
        head = None
        if raw_newest:
            key = _sid_key(raw_newest.decode())
            watch = self._watched.get(channel)
            head = (0, *key) if watch is None else watch.position(raw_epoch.decode(), key)
        return Replay(tuple(events), found=bool(found), head=head)

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        """The retained events of every channel ``selectors`` match after ``last_event_id``, in
        publish order (``g``), each once; a private event only where ``private`` matches one of
        the matched channels that hold it.

        The id is placed by its ``g``: the stream id of the newest matched entry holding it (a
        user id, found in the channels' indexes), else the id itself when it is a stream id.
        ``head`` is ``(0, 0, G)``: G is the counter read before any history, and the replay
        holds every matched event up to it (those after reach the client live). ``found`` is
        False (and every retained event is replayed) when the id cannot be placed, and False
        when a matched channel trimmed an event after it, the id is from an older epoch (or
        predates a loss of history), or, with ``history_ttl``, it is older than that and a
        channel may have expired whole. Channels of ``*`` and templates are found with
        ``SCAN``. When Redis cannot be reached, nothing is found (as in `replay`).
        """
        if self._maxlen == 0 or any(c in last_event_id for c in "\r\n\0"):
            return Replay((), found=False)
        client = self._require_client()
        try:
            if selectors.exact_only:
                names = sorted(selectors.names)
                before = None
            else:
                # Read before the channels are listed: a channel made after the listing holds
                # only events after G, which reach the client live.
                before = int(await client.get(self.counter_key()) or 0)
                listed = await self._stream_names()
                names = sorted(selectors.names.union(n for n in listed if selectors.matches(n)))
            for name in names:
                watch = self._watched.get(name)
                if watch is not None and watch.resolving is not None:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(watch.resolving)
            return await self._select(names, before, last_event_id, private, exact=before is None)
        except _DEAD as exc:
            if self._feed_up:
                log.warning(
                    "event=redis_replay_failed url=%s channels=%d reason=%r",
                    self._safe_url,
                    len(selectors),
                    str(exc) or type(exc).__name__,
                )
            return Replay((), found=False)

    async def _select(
        self,
        names: list[str],
        before: int | None,
        last_event_id: str,
        private: Selectors | None,
        *,
        exact: bool,
    ) -> Replay:
        client = self._require_client()
        guess = _stream_g(last_event_id)
        readable = ["1" if private is not None and private.matches(n) else "0" for n in names]
        async with client.pipeline(transaction=False) as pipe:
            if before is None:
                pipe.get(self.counter_key())
            for name, flag in zip(names, readable, strict=True):
                await self._since(pipe, name, last_event_id, -2 if guess is None else guess, flag)
            pipe.get(self.counter_key())
            answers = await pipe.execute()
        if before is None:
            before = int(answers.pop(0) or 0)
        newest = int(answers.pop() or 0)
        parts: list[Any] = answers
        # Place the id: the newest anchor, else the g of a stream id no newer than the counter.
        placed: tuple[int, int, bool] | None = None  # (g, ms, of the current epoch)
        for part in parts:
            if part[0]:
                ms, g = _sid_key(part[0].decode())
                if placed is None or g > placed[0]:
                    placed = (g, ms, bool(part[1]))
        found = True
        if placed is None and guess is not None and guess <= newest:
            placed = (guess, _sid_key(last_event_id)[0], True)
        if placed is None:
            start, ms0, found = -1, 0, False
        else:
            start, ms0, current = placed
            found = current
        # Every event up to G is the replay's; the client holds its own id's event and those
        # before it, so a G behind it (the event came after the counter was read) is raised.
        head = max(before, start)
        again = [i for i, part in enumerate(parts) if part[6] == -2 or part[6] > start]
        if again:
            async with client.pipeline(transaction=False) as pipe:
                for i in again:
                    await self._since(pipe, names[i], last_event_id, start, readable[i], fixed=True)
                for i, part in zip(again, await pipe.execute(), strict=True):
                    parts[i] = part
        whole = exact  # whether every matched channel still has its stream
        now = 0
        picked: dict[tuple[str, bytes], tuple[int, str]] = {}
        for part in parts:
            _, _, trimmed, regressed, exists, clock, _, entries = part
            if trimmed > start or regressed >= start:
                found = False  # the channel lost an event the client is owed
            whole = whole and bool(exists)
            now = max(now, clock)
            for entry in entries:
                sid, sse, data, _, _ = _entry_event(entry)
                g = _sid_key(sid)[1]
                if start < g <= head:
                    picked.setdefault((sid, data), (g, sse))
        if self._expire_ms and not whole and found:
            # A channel whose stream expired whole left no trace: if the id's event is older
            # than history_ttl, such a channel may have held events after it.
            if not now:
                seconds, micros = await client.time()
                now = seconds * 1000 + micros // 1000
            if ms0 < now - self._expire_ms:
                found = False
        if head > self._top_g:
            self._top_g = head
        ordered = sorted(picked.items(), key=lambda item: (item[1][0], item[0][0]))
        events = tuple((sse, key[1]) for key, (_, sse) in ordered)
        return Replay(events, found=found, head=(0, 0, head))

    async def _since(
        self,
        pipe: Any,
        name: str,
        last_event_id: str,
        start: int,
        readable: str,
        *,
        fixed: bool = False,
    ) -> None:
        # Queues since.lua on ``pipe`` (run by the pipeline's execute).
        assert self._since_script is not None
        await self._since_script(
            keys=[self.stream_key(name), self.index_key(name)],
            args=[
                last_event_id,
                start,
                "1" if fixed else "0",
                readable,
                self._maxlen,
                self._ttl_ms,
            ],
            client=pipe,
        )

    async def _stream_names(self) -> list[str]:
        """The channels that have a stream, found with ``SCAN`` (expired ones may be listed)."""
        client = self._require_client()
        start = f"{self.prefix}:{{"
        names: list[str] = []
        async for key in client.scan_iter(
            match=_glob_escape(start) + "*", count=1000, _type="stream"
        ):
            text = key.decode()
            if text.startswith(start) and text.endswith("}"):
                names.append(text[len(start) : -1])
        return names

    async def channels(self) -> list[str]:
        """Every channel whose stream holds events (found with ``SCAN``; for `Hub.broadcast`)."""
        client = self._require_client()
        if self._maxlen == 0:
            return []
        try:
            names = await self._stream_names()
            if not names:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    if self._ttl_ms:
                        assert self._length_script is not None
                        await self._length_script(
                            keys=[self.stream_key(name), self.index_key(name)],
                            args=[self._maxlen, self._ttl_ms],
                            client=pipe,
                        )
                    else:
                        pipe.xlen(self.stream_key(name))
                lengths = await pipe.execute()
        except _DEAD as exc:
            raise BackendUnavailable(f"Redis at {self._safe_url} is unreachable: {exc}") from exc
        return sorted(name for name, length in zip(names, lengths, strict=True) if length)

    @property
    def shared(self) -> bool:
        """True: every hub on the same Redis and prefix shares the channels."""
        return True

    def workers_key(self) -> str:
        """The key of the hash where each hub process reports its state (`report`)."""
        return f"{self.prefix}:workers"

    async def report(self, worker: str, state: Mapping[str, Any], ttl: float) -> list[Any]:
        """Write ``state`` as field ``worker`` of the `workers_key` hash and read every field,
        in one round trip; fields not refreshed for ``ttl`` seconds are left out and deleted.

        Each state is stored with the Redis server's time, so hubs on machines whose clocks
        differ agree on which are stale. The hash itself expires when no hub refreshes it.
        """
        client = self._require_client()
        key = self.workers_key()
        try:
            seconds, micros = await client.time()
            now = seconds + micros / 1e6
            entry = json.dumps({"state": dict(state), "seen": now}, separators=(",", ":"))
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(key, worker, entry)
                pipe.expire(key, max(1, math.ceil(ttl * 3)))
                pipe.hgetall(key)
                answers = await pipe.execute()
        except _DEAD as exc:
            raise BackendUnavailable(f"Redis at {self._safe_url} is unreachable: {exc}") from exc
        live: list[Any] = []
        stale: list[bytes] = []
        for field, raw in answers[2].items():
            try:
                entry_value = json.loads(raw)
                fresh = now - float(entry_value["seen"]) <= ttl
                found = entry_value["state"]
            except (ValueError, TypeError, KeyError):
                fresh = False
            if fresh:
                live.append(found)
            else:
                stale.append(field)
        if stale:
            with contextlib.suppress(*_DEAD):
                await client.hdel(key, *stale)
        return live

    async def retire(self, worker: str) -> None:
        """Delete ``worker``'s field of the `workers_key` hash (Redis errors are ignored: the
        report then expires by itself)."""
        if self._client is None:
            return
        with contextlib.suppress(*_DEAD):
            await asyncio.wait_for(self._client.hdel(self.workers_key(), worker), self._timeout)

    # -- presence ----------------------------------------------------------------------------

    def presence_key(self, worker: str | None = None) -> str:
        """The key of hub process ``worker``'s hash of subscriptions (id to JSON text), or,
        without ``worker``, of the sorted set of hub processes sharing one (by Redis time)."""
        return f"{self.prefix}:presence" if worker is None else f"{self.prefix}:presence:{worker}"

    async def share_presence(
        self,
        worker: str,
        changes: Mapping[str, str | None],
        ttl: float,
        *,
        reset: bool = False,
    ) -> None:
        """Apply ``changes`` to ``worker``'s hash (`presence_key`) and stamp it live with the
        Redis server's time, in one transaction; the hash expires ``ttl`` seconds after the
        last call, so the list of a hub that dies goes with it."""
        client = self._require_client()
        key, index = self.presence_key(worker), self.presence_key()
        ttl_ms = max(1, math.ceil(ttl * 1000))
        put = [(field, value) for field, value in changes.items() if value is not None]
        gone = [field for field, value in changes.items() if value is None]
        try:
            seconds, micros = await client.time()
            async with client.pipeline(transaction=True) as pipe:
                if reset:
                    pipe.delete(key)
                for start in range(0, len(put), _PRESENCE_BATCH):
                    pipe.hset(key, mapping=dict(put[start : start + _PRESENCE_BATCH]))
                for start in range(0, len(gone), _PRESENCE_BATCH):
                    pipe.hdel(key, *gone[start : start + _PRESENCE_BATCH])
                pipe.pexpire(key, ttl_ms)
                pipe.zadd(index, {worker: seconds + micros / 1e6})
                pipe.pexpire(index, ttl_ms * 3)
                await pipe.execute()
        except _DEAD as exc:
            raise BackendUnavailable(f"Redis at {self._safe_url} is unreachable: {exc}") from exc

    async def presence(
        self, exclude: str, ttl: float, *, page: int = 1000
    ) -> AsyncGenerator[list[str], None]:
        """Every other hub process's subscriptions: the hashes of those stamped live within
        ``ttl`` seconds (stale stamps are deleted), read with HSCAN ``page`` fields at a time."""
        client = self._require_client()
        index = self.presence_key()
        try:
            seconds, micros = await client.time()
            oldest = seconds + micros / 1e6 - ttl
            async with client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(index, "-inf", f"({oldest}")
                pipe.zrangebyscore(index, oldest, "+inf")
                _, found = await pipe.execute()
        except _DEAD as exc:
            raise BackendUnavailable(f"Redis at {self._safe_url} is unreachable: {exc}") from exc
        for raw in found:
            worker = raw.decode("utf-8", "replace")
            if worker == exclude:
                continue
            key = self.presence_key(worker)
            cursor = 0
            while True:
                try:
                    cursor, fields = await client.hscan(key, cursor, count=page)
                except _DEAD as exc:
                    raise BackendUnavailable(
                        f"Redis at {self._safe_url} is unreachable: {exc}"
                    ) from exc
                values = fields.values() if isinstance(fields, dict) else fields[1::2]
                if values:
                    yield [_text(value) for value in values]
                if not cursor:
                    break

    async def retire_presence(self, worker: str) -> None:
        """Delete ``worker``'s hash and stamp (Redis errors are ignored: both expire)."""
        if self._client is None:
            return
        with contextlib.suppress(*_DEAD):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.delete(self.presence_key(worker))
                pipe.zrem(self.presence_key(), worker)
                await asyncio.wait_for(pipe.execute(), self._timeout)

    async def health(self) -> dict[str, Any]:
        """``{"ok": ..., "backend": "redis", "url": ..., "feed": ...}``; ok needs PING and feed."""
        report: dict[str, Any] = {
            "ok": False,
            "backend": "redis",
            "url": self._safe_url,
            "feed": "connected" if self._feed_up else "reconnecting",
        }
        try:
            await asyncio.wait_for(self._require_client().ping(), self._timeout)
        except (*_DEAD, RuntimeError) as exc:
            report["error"] = str(exc) or type(exc).__name__
            return report
        report["ok"] = self._feed_up
        if not self._feed_up and self._last_error:
            report["error"] = self._last_error
        return report

    # -- the feed ----------------------------------------------------------------------------

    def watch(self, channel: str) -> None:
        """Start delivering ``channel``; note where its stream stands to refill after outages."""
        if channel in self._watched:
            return
        watch = self._watched[channel] = _Watch()
        if self._feed_up and self._client is not None:
            watch.resolving = asyncio.get_running_loop().create_task(
                self._resolve_floor(channel, watch)
            )
        else:
            watch.floor = self._time_floor()

    def unwatch(self, channel: str) -> None:
        """Stop delivering ``channel``."""
        watch = self._watched.pop(channel, None)
        if watch is not None and watch.resolving is not None:
            watch.resolving.cancel()

    def watch_all(self, on: bool) -> None:
        """Deliver every channel's events (``on``: the hub has ``*`` or template subscribers),
        or only the watched channels' again. After a feed outage, the refill then reads every
        stream (found with ``SCAN``) from the feed's last g."""
        self._all = on
        if on and self._fed() is None:
            # The feed never connected: a first refill reads every stream from now.
            self._all_floor = self._time_floor()

    def _time_floor(self) -> str:
        # The Redis clock now, as well as this process knows it, less a margin: every event
        # appended from now on has a stream id at or after it.
        ms = int(time.time() * 1000 + self._clock_offset_ms) - 50
        return f"{max(ms, 0)}-0"

    async def _resolve_floor(self, channel: str, watch: _Watch) -> None:
        try:
            newest: Any = await self._require_client().xrevrange(
                self.stream_key(channel), "+", "-", count=1
            )
            watch.floor = "(" + (newest[0][0].decode() if newest else "0-0")
        except _DEAD:
            watch.floor = self._time_floor()
        finally:
            watch.resolving = None

    async def _sync_clock(self) -> None:
        seconds, micros = await self._require_client().time()
        after = time.time()
        # A lower bound of the offset: Redis read its clock before this process read `after`.
        self._clock_offset_ms = seconds * 1000 + micros / 1000 - after * 1000

    async def _run_feed(self) -> None:
        assert self._feed_pool is not None
        backoff = 0.05
        state = _FeedLog(self._safe_url, self._max_backoff)
        while not self._closing:
            conn: AbstractConnection = self._feed_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                await conn.send_command("SUBSCRIBE", self._feed_channel)
                reply = await conn.read_response(timeout=self._timeout)
                if reply is None:
                    raise TimeoutError("no reply to SUBSCRIBE")
                await self._sync_clock()
                await self._refill()
                self._feed_up = True
                self._first_attempt.set()
                self._last_error = None
                if state.connected():
                    self.reconnects += 1
                backoff = 0.05
                await self._read_feed(conn)
            except asyncio.CancelledError:
                raise
            except _DEAD as exc:
                self._last_error = str(exc) or type(exc).__name__
                state.failed(self._last_error, backoff, lost=self._feed_up)
            finally:
                self._feed_up = False
                self._first_attempt.set()
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)

    async def _read_feed(self, conn: AbstractConnection) -> None:
        awaiting_pong = False
        while True:
            message = await conn.read_response(
                timeout=self._timeout if awaiting_pong else self._ping_interval
            )
            if message is None:
                if awaiting_pong:
                    raise TimeoutError("the Redis feed did not answer PING")
                await conn.send_command("PING")
                awaiting_pong = True
                continue
            awaiting_pong = False
            if message[0] == b"message":
                self._on_feed(message[2])

    def _on_feed(self, payload: bytes) -> None:
        header_end = payload.index(b"\n")
        header = payload[:header_end].split(b" ")
        if len(header) != 4:
            self._on_feed_event(payload, header, header_end + 1)
            return
        # One public event to one channel: the header as before multi-channel events.
        raw_sid, raw_clen, raw_ulen, raw_elen = header
        self._fed_sid = raw_sid
        start = header_end + 1
        clen = int(raw_clen)
        channel = payload[start : start + clen].decode()
        watch = self._watched.get(channel)
        if watch is None and not self._all:
            return
        start += clen
        sid = raw_sid.decode()
        key = _sid_key(sid)
        ulen = int(raw_ulen)
        if ulen >= 0:
            sse = payload[start : start + ulen].decode()
            start += ulen
        else:
            sse = sid
        elen = int(raw_elen)
        epoch = payload[start : start + elen].decode()
        start += elen
        if watch is None:
            if key[1] > self._all_bound:
                assert self._deliver is not None
                self._deliver(channel, sse, payload[start:], (0, *key))
            return
        if key[1] <= watch.bound:
            return  # the last refill's to deliver
        if watch.last is not None and epoch in (watch.epoch, watch.stale) and key <= watch.last:
            return  # already delivered by a refill
        self._deliver_entry(channel, watch, sid, sse, payload[start:], epoch)

    def _on_feed_event(self, payload: bytes, header: list[bytes], start: int) -> None:
        # "<sid> <uid len> <private> (<channel len> <epoch len>)...\n", then each channel and
        # its epoch, the uid and the event: see publish.lua.
        raw_sid = header[0]
        self._fed_sid = raw_sid
        sid = raw_sid.decode()
        key = _sid_key(sid)
        g = key[1]
        parts: list[tuple[str, _Watch | None, str]] = []
        for i in range(3, len(header), 2):
            clen = int(header[i])
            channel = payload[start : start + clen].decode()
            start += clen
            elen = int(header[i + 1])
            epoch = payload[start : start + elen].decode()
            start += elen
            watch = self._watched.get(channel)
            if watch is None:
                if self._all and g > self._all_bound:
                    parts.append((channel, None, epoch))
            elif g > watch.bound and not (
                watch.last is not None and epoch in (watch.epoch, watch.stale) and key <= watch.last
            ):
                parts.append((channel, watch, epoch))
        if not parts:
            return
        ulen = int(header[1])
        if ulen >= 0:
            sse = payload[start : start + ulen].decode()
            start += ulen
        else:
            sse = sid
        self._arrive(parts, sid, key, sse, payload[start:], header[2] == b"1")

    def _deliver_entry(
        self, channel: str, watch: _Watch, sid: str, sse: str, data: bytes, epoch: str
    ) -> None:
        key = _sid_key(sid)
        position = watch.position(epoch, key)
        if position[0] != watch.generation:
            watch.generation = position[0]
            watch.stale = watch.epoch
            watch.epoch = epoch
        elif watch.epoch is None:
            watch.epoch = epoch
        watch.last = key
        watch.last_raw = sid
        watch.last_sse = sse
        assert self._deliver is not None
        self._deliver(channel, sse, data, position)

    def _arrive(
        self,
        parts: list[tuple[str, _Watch | None, str]],
        sid: str,
        key: tuple[int, int],
        sse: str,
        data: bytes,
        private: bool,
    ) -> None:
        """Deliver one event to ``parts``, its channels to deliver as ``(channel, watch or None
        (not watched: `watch_all`), its epoch there)``, once, with the tuple of channels."""
        # One position for every channel: its generation is the highest of theirs, and each
        # watch takes it (a generation only grows), so that positions keep growing in each.
        generation = 0
        for _, watch, epoch in parts:
            if watch is not None:
                own = watch.position(epoch, key)[0]
                if own > generation:
                    generation = own
        for _, watch, epoch in parts:
            if watch is not None:
                if watch.position(epoch, key)[0] != watch.generation:
                    watch.stale = watch.epoch
                    watch.epoch = epoch
                elif watch.epoch is None:
                    watch.epoch = epoch
                watch.generation = generation
                watch.last = key
                watch.last_raw = sid
                watch.last_sse = sse
        position = (generation, *key)
        channel: str | tuple[str, ...] = (
            parts[0][0] if len(parts) == 1 else tuple(part[0] for part in parts)
        )
        assert self._deliver is not None
        if private:
            self._deliver(channel, sse, data, position, True)
        else:
            self._deliver(channel, sse, data, position)

    def _gap(self, channel: str, watch: _Watch) -> None:
        """Tell the channel's open streams, once, that history lost events they may have had."""
        watch.generation += 1
        notice = gap_notice(watch.last_sse or "", 0).encode()
        assert self._deliver is not None
        self._deliver(channel, "", notice, (watch.generation, 0, 0))

    def _fed(self) -> int | None:
        """The newest g the feed has passed (None before its first connection)."""
        sid = self._fed_sid
        if sid is None:
            return None if self._refilled_to < 0 else self._refilled_to
        return max(_sid_key(sid.decode())[1], self._refilled_to)

    async def _refill(self) -> None:
        """Deliver what the feed missed while it was down: each watched stream's events after
        the last one delivered (with `watch_all`, every stream's after the feed's last g), up
        to the counter read now (the feed carries those after it), merged in g order, each
        event once with all of its channels, as the feed would have."""
        assert self._head_script is not None and self._counter_script is not None
        fed = self._fed()
        floor = max(self._top_g, fed or 0)
        bound = int(await self._counter_script(keys=[self.counter_key()], args=[floor]))
        sources: list[_Source] = []
        for channel, watch in list(self._watched.items()):
            if watch.resolving is not None:
                watch.resolving.cancel()
                watch.resolving = None
                watch.floor = self._time_floor()
            # Deliver the entries after `last`, and, after an epoch change, every entry of the
            # new epoch (its ids may be lower, on a Redis whose clock is behind).
            last = watch.last
            fresh_epoch: str | None = None
            if last is not None and watch.last_raw is not None:
                start = "(" + watch.last_raw
                raw_epoch, _ = await self._head_script(
                    keys=[self.stream_key(channel), self.index_key(channel)],
                    args=[watch.epoch or "", watch.last_raw, _new_epoch(), self._expire_ms],
                )
                if self._watched.get(channel) is not watch:
                    continue
                epoch = raw_epoch.decode()
                if epoch != (watch.epoch or ""):
                    # The stream lost events this hub delivered, or was made anew: a new epoch.
                    log.warning("event=redis_history_regressed channel=%s new_epoch=1", channel)
                    self._gap(channel, watch)
                    watch.stale = watch.epoch
                    watch.epoch = fresh_epoch = epoch
                    start = "-"
            elif watch.floor is not None:
                start = watch.floor
            else:  # pragma: no cover - every watch gets a floor
                continue
            sources.append(_Source(channel, watch, start, fresh_epoch, last))
        everything = self._all
        if everything:
            refilling = {source.channel for source in sources}
            for name in await self._stream_names():
                if name in refilling or name in self._watched:
                    continue
                begin = self._all_floor if fed is None else await self._start_after(name, fed)
                if begin is not None:
                    sources.append(_Source(name, None, begin, None, None))
        await self._merge(sources, bound)
        for source in sources:
            if source.watch is not None:
                source.watch.bound = bound
        if everything:
            self._all_bound = bound
        self._refilled_to = max(self._refilled_to, bound)
        if bound > self._top_g:
            self._top_g = bound

    async def _start_after(self, channel: str, g: int) -> str | None:
        """Where ``channel``'s entries after ``g`` begin, as an XRANGE start (None: none)."""
        client = self._require_client()
        upper = "+"
        newest = True
        while True:
            page: Any = await client.xrevrange(self.stream_key(channel), upper, "-", count=100)
            for raw_sid, _ in page:
                if _sid_key(raw_sid.decode())[1] <= g:
                    return None if newest else "(" + raw_sid.decode()
                newest = False
            if len(page) < 100:
                return "-"
            upper = "(" + page[-1][0].decode()

    async def _merge(self, sources: list[_Source], bound: int) -> None:
        """Deliver the entries of ``sources`` up to g ``bound`` in g order, each event once."""
        heap: list[tuple[int, str, int]] = []

        async def advance(index: int) -> _Entry:
            source = sources[index]
            entry = source.entries.popleft()
            if not source.entries:
                await self._fill(source, bound)
            if source.entries:
                head = source.entries[0]
                heapq.heappush(heap, (head.g, head.sid, index))
            return entry

        for index, source in enumerate(sources):
            await self._fill(source, bound)
            if source.entries:
                head = source.entries[0]
                heapq.heappush(heap, (head.g, head.sid, index))
        while heap:
            sid = heap[0][1]
            group: list[tuple[_Source, _Entry]] = []
            while heap and heap[0][1] == sid:
                index = heapq.heappop(heap)[2]
                group.append((sources[index], await advance(index)))
            while group:
                # The same stream id with the same bytes in several streams is one event.
                first = group[0][1]
                same = [item for item in group if item[1].data == first.data]
                group = [item for item in group if item[1].data != first.data]
                parts = [
                    (source.channel, source.watch, entry.epoch)
                    for source, entry in same
                    if (self._watched.get(source.channel) is source.watch)
                    if source.watch is not None or self._all
                ]
                if parts:
                    self.refilled += 1
                    self._arrive(parts, sid, first.key, first.sse, first.data, first.private)

    async def _fill(self, source: _Source, bound: int) -> None:
        """Read ``source``'s next entries up to g ``bound`` (none left: ``source.done``)."""
        client = self._require_client()
        while not source.entries and not source.done:
            entries: Any = await client.xrange(
                self.stream_key(source.channel), source.start, "+", count=_PAGE
            )
            if len(entries) < _PAGE:
                source.done = True
            else:
                source.start = "(" + entries[-1][0].decode()
            fresh, last = source.fresh_epoch, source.last
            for raw in entries:
                sid, sse, data, epoch, private = _entry_event(raw)
                key = _sid_key(sid)
                if key[1] > bound:
                    source.done = True  # published since the counter was read: the feed's
                    break
                if fresh is not None and not (
                    (fresh and epoch == fresh) or (last is not None and key > last)
                ):
                    continue
                source.entries.append(_Entry(key[1], sid, key, sse, data, epoch, private))
