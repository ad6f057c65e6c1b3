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
- On a Redis Cluster (a node is detected at start, or ``redis+cluster://``), each slot has its
  own counter and its own shard channel as feed (``{prefix}:seq:{<tag>}``,
  ``{prefix}:feed:{<tag>}``, ``<tag>`` a hash tag of the slot), so that one script per publish
  runs on the channel's slot and ``SPUBLISH`` carries the event to that node only; each hub
  subscribes (``SSUBSCRIBE``) on every primary to the slots it serves. ``g`` orders the events
  of one slot; a publish to channels of several slots is one script per slot. After a
  failover the feed subscribes again on the new map and refills per slot, as after an outage.
  ``redis+sentinel://host:port[,host:port]/service`` follows a Sentinel's primary.
- Idle channels' keys expire ``key_ttl`` after their last publish (bounded keys).
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
import functools
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
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import AbstractConnection, ConnectionPool, parse_url
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import (
        Sentinel,
        SentinelConnectionPool,
        SentinelManagedSSLConnection,
    )
    from redis.backoff import NoBackoff
    from redis.crc import key_slot
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

_Client = aioredis.Redis | RedisCluster


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


_SLOTS = 16384


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For each Redis Cluster slot, a short hash tag that lies in it (computed once, ~0.2 s):
    the per-slot counter and feed of a channel are named with the tag of its slot."""
    tags: list[str] = [""] * _SLOTS
    missing = _SLOTS
    i = 0
    while missing:
        tag = format(i, "x")
        slot = key_slot(tag.encode())
        if not tags[slot]:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tuple(tags)


_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SENTINEL_SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}


@dataclass(frozen=True, slots=True)
class _Target:
    """What a URL names: one Redis (``single``), a Cluster, a Sentinel-managed primary, or a
    Redis whose kind the server tells (``auto``: a Cluster node says so)."""

    mode: str
    url: str
    """The URL for redis-py (without ``+cluster``); for Sentinel, that of the primary."""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""


def _target(url: str) -> _Target:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a Redis URL: {_redact(url)!r}")
    if scheme in _CLUSTER_SCHEMES:
        return _Target("cluster", f"{_CLUSTER_SCHEMES[scheme]}://{rest}")
    if scheme not in _SENTINEL_SCHEMES:
        return _Target("auto", url)
    # redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]
    netloc, _, path = rest.partition("/")
    auth, at, hosts = netloc.rpartition("@")
    service, _, db = path.partition("/")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = port, "26379"
        if not host or not port.isdigit():
            raise ValueError(f"{_redact(url)!r}: {item!r} is not host:port of a Sentinel")
        sentinels.append((host.strip("[]"), int(port)))
    if not service:
        raise ValueError(
            f"{_redact(url)!r} names no service: redis+sentinel://host:port[,host:port]/service"
        )
    primary = f"{_SENTINEL_SCHEMES[scheme]}://{auth}{at}sentinel/{db or '0'}"
    return _Target("sentinel", primary, tuple(sentinels), unquote(service))


def _raise_first(answers: list[Any]) -> list[Any]:
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers


def _redirected(answer: Any) -> bool:
    return isinstance(answer, RedisError) and str(answer).split(" ", 1)[0] in (
        "MOVED",
        "ASK",
        "CLUSTERDOWN",
    )


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Every host:port as written (a Sentinel URL names several).
    host = parts.netloc.rpartition("@")[2]
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
    bound: int
    """The g up to which the refill delivers the stream's entries (its shard's counter)."""
    entries: deque[_Entry] = dataclass_field(default_factory=deque)
    done: bool = False


class RedisBackend(Backend):
    """History and fan-out on Redis, shared by every hub that uses the same Redis and prefix.

    Args:
        url: the Redis URL, e.g. ``redis://localhost:6379/0`` (``rediss://`` for TLS; a password
            in the URL is never shown in `health` or errors). A Redis Cluster node's URL uses the
            whole Cluster (detected at start; ``redis+cluster://host:port`` says so up front);
            ``redis+sentinel://host:port[,host:port]/service[/db]`` follows the primary a
            Sentinel names for ``service``.
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
    stored; after a timeout it may have been). Open streams stay open through a Redis outage
    or failover; the feed reconnects and resumes from the last event it delivered. Requires
    Redis 6.2 or later (7.0 for a Cluster: sharded pub/sub). All methods must be called on the
    hub's event loop.
    """

    broadcast_batch = 1000
    """Channels a broadcast sends in one pipeline (per node on a Cluster)."""

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
        self._target = _target(url)
        self._cluster = self._target.mode == "cluster"
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
        self._client: _Client | None = None
        self._feed_pool: ConnectionPool | None = None
        self._node_pools: dict[tuple[str, int], ConnectionPool] = {}
        self._node_clients: dict[tuple[str, int], aioredis.Redis] = {}
        self._cluster_nodes: dict[int, Any] = {}
        self._sentinel: Sentinel | None = None
        self._relearning: asyncio.Task[None] | None = None
        self._relearned = 0.0
        self._common: dict[str, Any] = {}
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
        self._all_bound: dict[int, int] = {}
        self._all_floor: str | None = None
        # The stream id of the newest event on the feed, the bound of the last refill, and the
        # newest g this process has seen at all (published, delivered or read): publish.lua's
        # floor.
        # Each is by shard (`_shard`): 0 on one Redis, the slot on a Cluster, whose counters are
        # one per slot.
        self._fed_sid: dict[int, bytes] = {}
        self._refilled_to: dict[int, int] = {}
        self._top_g: dict[int, int] = {}
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

    def counter_key(self, channel: str | None = None) -> str:
        """The key of the counter whose value, ``g``, orders events across channels: each
        event's stream id is ``<ms>-<g>``, the same in every channel it is published to.

        On a Redis Cluster there is one counter per slot, in that slot (``channel``'s):
        ``{prefix}:seq:{<tag>}``, and ``g`` orders the events of the channels of one slot.
        """
        if not self._cluster or channel is None:
            return f"{self.prefix}:seq"
        return f"{self.prefix}:seq:{{{_slot_tags()[self._slot(channel)]}}}"

    def feed_key(self, channel: str | None = None) -> str:
        """The pub/sub channel that carries ``channel``'s events to every hub: ``{prefix}:feed``,
        or on a Cluster the shard channel of its slot, ``{prefix}:feed:{<tag>}``."""
        if not self._cluster or channel is None:
            return self._feed_channel
        return self._slot_feed(self._slot(channel))

    def _slot_feed(self, slot: int) -> str:
        return f"{self.prefix}:feed:{{{_slot_tags()[slot]}}}"

    def _slot(self, channel: str) -> int:
        return int(key_slot(self.stream_key(channel).encode()))

    def _shard(self, channel: str) -> int:
        """Where ``channel``'s ``g`` comes from: 0 (the one counter), or its Cluster slot."""
        return self._slot(channel) if self._cluster else 0

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
        self._common = common
        target = self._target
        if target.mode == "auto" and await self._is_cluster_node(common):
            self._cluster = True
        # No retries: a command retried after Redis ran it once would store the event twice.
        if self._cluster:
            self._client = RedisCluster.from_url(
                target.url, socket_timeout=self._timeout, require_full_coverage=False, **common
            )
            self._keep_nodes(self._client)
        elif target.mode == "sentinel":
            sentinel = self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(target.sentinels),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._connect_timeout,
            )
            options = {**self._url_options(target.url), **common}
            self._client = sentinel.master_for(
                target.service, socket_timeout=self._timeout, **options
            )
            self._feed_pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
                target.service, sentinel, **options
            )
        else:
            self._client = aioredis.Redis.from_url(
                target.url, socket_timeout=self._timeout, **common
            )
            self._feed_pool = ConnectionPool.from_url(target.url, **common)
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
        if self._relearning is not None:
            self._relearning.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._relearning
        if self._client is not None:
            if isinstance(self._client, RedisCluster):
                self._keep_nodes(self._client)
            await self._client.aclose()
        for node in self._cluster_nodes.values():
            with contextlib.suppress(Exception):
                await node.disconnect()
        if self._sentinel is not None:
            for sentinel_client in self._sentinel.sentinels:
                await sentinel_client.aclose()
        if self._feed_pool is not None:
            await self._feed_pool.disconnect()
        for pool in self._node_pools.values():
            await pool.disconnect()
        for node_client in self._node_clients.values():
            await node_client.aclose()

    @staticmethod
    def _url_options(url: str) -> dict[str, Any]:
        """A Sentinel-managed primary's connection options (TLS, user, password, database)."""
        options: dict[str, Any] = dict(parse_url(url))
        options.pop("host", None)
        options.pop("port", None)
        if options.pop("connection_class", None) is not None:
            options["connection_class"] = SentinelManagedSSLConnection
        return options

    async def _is_cluster_node(self, common: dict[str, Any]) -> bool:
        """Whether the URL's server says it is a Redis Cluster node (False if unreachable: the
        hub then treats it as one Redis; say ``redis+cluster://`` to be sure)."""
        probe = aioredis.Redis.from_url(self._target.url, socket_timeout=self._timeout, **common)
        try:
            info: Any = await asyncio.wait_for(
                probe.info("cluster"), self._connect_timeout + self._timeout
            )
            return bool(info.get("cluster_enabled"))
        except (*_DEAD, ValueError):
            return False
        finally:
            await probe.aclose()

    def _require_client(self) -> _Client:
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
        if self._cluster and len(names) > 1:
            groups: dict[int, list[str]] = {}
            for name in names:
                groups.setdefault(self._slot(name), []).append(name)
            if len(groups) > 1:
                # One script per slot: each slot's channels get the event with an id of their
                # own slot's counter (see the README: Redis Cluster). The first one is returned.
                results = [
                    await self._publish_one(tuple(group), message, private)
                    for group in groups.values()
                ]
                return results[0]
        return await self._publish_one(names, message, private)

    async def _publish_one(
        self, names: tuple[str, ...], message: Message, private: bool
    ) -> PublishResult:
        keys, args = self._publish_call(names, message, private)
        try:
            assert self._publish_script is not None
            answer = await self._publish_script(keys=keys, args=args)
        except _DEAD as exc:
            raise self._unavailable("could not store the event", exc) from exc
        return self._published(message, answer, self._shard(names[0]))

    async def publish_each(
        self, channels: Sequence[str], message: Message
    ) -> list[PublishResult | BackendUnavailable]:
        """Publish ``message`` to each of ``channels`` as a separate event, pipelined: one round
        trip for the lot (one per node on a Cluster), one script per channel."""
        self._require_client()
        assert self._publish_script is not None
        sha = self._publish_script.sha
        calls: list[tuple[str, tuple[Any, ...]]] = []
        encoded = self._encoded(message)
        for name in channels:
            keys, args = self._publish_call((name,), message, False, encoded)
            calls.append((keys[0], ("EVALSHA", sha, len(keys), *keys, *args)))
        results: list[PublishResult | BackendUnavailable] = []
        for name, answer in zip(channels, await self._pipelined(calls), strict=True):
            if isinstance(answer, BaseException):
                results.append(self._unavailable("could not store the event", answer))
            else:
                results.append(self._published(message, answer, self._shard(name)))
        return results

    def _encoded(self, message: Message) -> tuple[bytes, bytes]:
        """The event's bytes around its id line (`_split`), checked against ``max_event``."""
        head, body = _split(message)
        uid = message.id
        max_event = self._max_event
        if max_event is not None:
            # The id line: "id: " + the id (a stream id is at most 41 characters) + "\n".
            size = len(head) + len(body) + 5 + (len(uid.encode()) if uid is not None else 41)
            if size > max_event:
                raise too_large(size, max_event)
        return head, body

    def _publish_call(
        self,
        names: tuple[str, ...],
        message: Message,
        private: bool,
        encoded: tuple[bytes, bytes] | None = None,
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of publish.lua for one event to ``names`` (one slot)."""
        head, body = self._encoded(message) if encoded is None else encoded
        uid = message.id
        keys: list[str] = []
        for name in names:
            keys.append(self.stream_key(name))
            keys.append(self.index_key(name))
        first = names[0]
        if self._cluster:
            shard = self._slot(first)
            tag = _slot_tags()[shard]
            counter, feed = f"{self.prefix}:seq:{{{tag}}}", f"{self.prefix}:feed:{{{tag}}}"
        else:
            shard, counter, feed = 0, self.counter_key(), self._feed_channel
        keys.append(counter)
        args: list[Any] = [
            self._maxlen,
            self._ttl_ms,
            feed,
            body,
            head,
            uid if uid is not None else "",
            "1" if uid is not None else "0",
            _new_epoch(),
            "1" if private else "0",
            self._top_g.get(shard, 0),
            self._expire_ms,
            "SPUBLISH" if self._cluster else "PUBLISH",
            *names,
        ]
        return keys, args

    def _published(self, message: Message, answer: bytes, shard: int) -> PublishResult:
        """The result of publish.lua's answer: ``<stream id>``, or ``<stream id> dup``."""
        text, _, duplicate = answer.decode().partition(" ")
        if not duplicate:
            g = _sid_key(text)[1]
            if g > self._top_g.get(shard, 0):
                self._top_g[shard] = g
        uid = message.id
        return PublishResult(uid if uid is not None else text, duplicate=bool(duplicate))

    async def _refresh_slots(self, client: RedisCluster) -> None:
        """Learn the Cluster's slot map again (after a failover, resharding or a lost node)."""
        self._keep_nodes(client)
        try:
            await client.nodes_manager.initialize()
        finally:
            self._keep_nodes(client)

    def _relearn_slots(self) -> None:
        """After a failed command on a Cluster, learn the slot map again in the background (at
        most twice a second): redis-py, which must not retry a publish, would otherwise keep
        sending a dead primary's slots to it until the feed reconnects."""
        if self._relearning is not None or self._closing:
            return
        if time.monotonic() - self._relearned < 0.5:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._relearning = loop.create_task(self._relearn(), name="ssehub-redis-slots")

    async def _relearn(self) -> None:
        try:
            client = self._client
            if isinstance(client, RedisCluster):
                with contextlib.suppress(*_DEAD):
                    await self._refresh_slots(client)
        finally:
            self._relearned = time.monotonic()
            self._relearning = None

    def _keep_nodes(self, client: RedisCluster) -> None:
        # redis-py drops a node that left the slot map without closing the connections in use
        # to it: remember every node, so that `close` closes them all.
        # By identity: a node that came back is a new object equal to the old one.
        manager = client.nodes_manager
        for node in (*manager.nodes_cache.values(), *manager.startup_nodes.values()):
            self._cluster_nodes[id(node)] = node

    def _unavailable(self, doing: str, exc: BaseException) -> BackendUnavailable:
        """`BackendUnavailable` for ``exc``, in words: a Cluster's redirection (``MOVED``,
        ``ASK``) or refusal (``CLUSTERDOWN``) is never shown raw to a publisher."""
        if isinstance(self._client, RedisCluster):
            self._keep_nodes(self._client)
            self._relearn_slots()
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
            elif self._cluster:
                names = sorted(
                    selectors.names.union(
                        n for n in await self._stream_names() if selectors.matches(n)
                    )
                )
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
            if not self._cluster:
                replay, _ = await self._select(
                    names, before, last_event_id, private, exact=before is None
                )
                return replay
            return await self._select_slots(names, last_event_id, private, exact=before is None)
        except _DEAD as exc:
            if self._feed_up:
                log.warning(
                    "event=redis_replay_failed url=%s channels=%d reason=%r",
                    self._safe_url,
                    len(selectors),
                    str(exc) or type(exc).__name__,
                )
            return Replay((), found=False)

    async def _select_slots(
        self, names: list[str], last_event_id: str, private: Selectors | None, *, exact: bool
    ) -> Replay:
        """`replay_selected` on a Cluster: exact within one slot (its counter orders its
        channels); across slots the id is placed by Redis time in the slots that do not hold
        it, and the events are merged by stream id (ms first)."""
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(self._slot(name), []).append(name)
        if len(groups) <= 1:
            replay, _ = await self._select(names, None, last_event_id, private, exact=exact)
            return replay
        found = True
        merged: list[tuple[tuple[int, int], str, bytes]] = []
        for group in groups.values():
            replay, keys = await self._select(
                group, None, last_event_id, private, exact=exact, by_time=True
            )
            found = found and replay.found
            merged.extend(
                (key, sse, data) for key, (sse, data) in zip(keys, replay.events, strict=True)
            )
        merged.sort(key=lambda item: item[0])
        # No head: positions of different slots do not compare; the hub drops a live event
        # the replay holds by its id.
        return Replay(tuple((sse, data) for _, sse, data in merged), found=found)

    async def _select(
        self,
        names: list[str],
        before: int | None,
        last_event_id: str,
        private: Selectors | None,
        *,
        exact: bool,
        by_time: bool = False,
    ) -> tuple[Replay, list[tuple[int, int]]]:
        """The replay of ``names`` (of one slot on a Cluster), and the stream id of each of its
        events. ``by_time``: when the id is not found here and is a stream id, every event from
        its millisecond on is replayed (the id is of another Cluster slot)."""
        client = self._require_client()
        counter = self.counter_key(names[0] if names else None)
        shard = self._shard(names[0]) if names else 0
        guess = _stream_g(last_event_id)
        readable = ["1" if private is not None and private.matches(n) else "0" for n in names]
        calls: list[tuple[str, tuple[Any, ...]]] = []
        if before is None:
            calls.append((counter, ("GET", counter)))
        for name, flag in zip(names, readable, strict=True):
            calls.append(self._since(name, last_event_id, -2 if guess is None else guess, flag))
        calls.append((counter, ("GET", counter)))
        answers = _raise_first(await self._pipelined(calls))
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
        since_ms = -1
        if placed is None and guess is not None and by_time:
            since_ms = _sid_key(last_event_id)[0]
            placed = (-1, since_ms, True)
        elif placed is None and guess is not None and guess <= newest:
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
            calls = [
                self._since(names[i], last_event_id, start, readable[i], fixed=True) for i in again
            ]
            for i, part in zip(again, _raise_first(await self._pipelined(calls)), strict=True):
                parts[i] = part
        whole = exact  # whether every matched channel still has its stream
        now = 0
        picked: dict[tuple[str, bytes], tuple[int, str]] = {}
        for part in parts:
            _, _, trimmed, regressed, exists, clock, _, entries = part
            if since_ms < 0 and (trimmed > start or regressed >= start):
                found = False  # the channel lost an event the client is owed
            whole = whole and bool(exists)
            now = max(now, clock)
            for entry in entries:
                sid, sse, data, _, _ = _entry_event(entry)
                ms, g = _sid_key(sid)
                if start < g <= head and ms >= since_ms:
                    picked.setdefault((sid, data), (g, sse))
        if self._expire_ms and not whole and found:
            # A channel whose stream expired whole left no trace: if the id's event is older
            # than history_ttl, such a channel may have held events after it.
            if not now:
                seconds, micros = await client.time()
                now = seconds * 1000 + micros // 1000
            if ms0 < now - self._expire_ms:
                found = False
        if head > self._top_g.get(shard, 0):
            self._top_g[shard] = head
        ordered = sorted(picked.items(), key=lambda item: (item[1][0], item[0][0]))
        events = tuple((sse, key[1]) for key, (_, sse) in ordered)
        keys = [_sid_key(key[0]) for key, _ in ordered]
        return Replay(events, found=found, head=(0, 0, head)), keys

    def _since(
        self,
        name: str,
        last_event_id: str,
        start: int,
        readable: str,
        *,
        fixed: bool = False,
    ) -> tuple[str, tuple[Any, ...]]:
        """A call of since.lua for `_pipelined`."""
        assert self._since_script is not None
        stream = self.stream_key(name)
        return stream, (
            "EVALSHA",
            self._since_script.sha,
            2,
            stream,
            self.index_key(name),
            last_event_id,
            start,
            "1" if fixed else "0",
            readable,
            self._maxlen,
            self._ttl_ms,
        )

    async def _pipelined(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run ``calls`` (each: the key that places it, the command) pipelined; their replies in
        order, an exception where one failed. One round trip on one Redis; on a Cluster, one per
        primary, side by side. A script a server does not have cached is loaded and its calls
        sent again (they ran nothing)."""
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for attempt in range(2):
            await self._pipeline_round(calls, pending, results)
            again = [i for i in pending if isinstance(results[i], NoScriptError)]
            if not again or attempt:
                break
            pending = again
            try:
                await self._load_scripts()
            except _DEAD:
                break
        return results

    async def _pipeline_round(
        self, calls: Sequence[tuple[str, Sequence[Any]]], indices: list[int], results: list[Any]
    ) -> None:
        client = self._require_client()
        if not isinstance(client, RedisCluster):
            await self._pipeline_on(client, calls, indices, results)
            return
        groups: dict[tuple[str, int], list[int]] = {}
        for i in indices:
            node = client.get_node_from_key(calls[i][0])
            if node is None:
                results[i] = ConnectionError("the Redis Cluster slot has no primary")
                continue
            groups.setdefault((node.host, int(node.port)), []).append(i)
        await asyncio.gather(
            *(
                self._pipeline_on(self._node_client(address), calls, group, results)
                for address, group in groups.items()
            )
        )
        if any(_redirected(results[i]) for i in indices):
            # The slot map changed (a failover, resharding): learn the new one for next time.
            with contextlib.suppress(*_DEAD):
                await self._refresh_slots(client)

    @staticmethod
    async def _pipeline_on(
        client: aioredis.Redis,
        calls: Sequence[tuple[str, Sequence[Any]]],
        indices: list[int],
        results: list[Any],
    ) -> None:
        try:
            async with client.pipeline(transaction=False) as pipe:
                for i in indices:
                    pipe.execute_command(*calls[i][1])
                answers = await pipe.execute(raise_on_error=False)
        except _DEAD as exc:
            answers = [exc] * len(indices)
        for i, answer in zip(indices, answers, strict=True):
            results[i] = answer

    def _node_client(self, address: tuple[str, int]) -> aioredis.Redis:
        """A client of one Cluster node (for pipelines of scripts, which redis-py's Cluster
        pipeline refuses)."""
        client = self._node_clients.get(address)
        if client is None:
            options = {**self._url_options_plain(), **self._common}
            client = self._node_clients[address] = aioredis.Redis(
                host=address[0], port=address[1], socket_timeout=self._timeout, **options
            )
        return client

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
        return list(dict.fromkeys(names))  # a Cluster's replicas may list a key again

    async def channels(self) -> list[str]:
        """Every channel whose stream holds events (found with ``SCAN``; for `Hub.broadcast`)."""
        self._require_client()
        if self._maxlen == 0:
            return []
        try:
            names = await self._stream_names()
            if not names:
                return []
            calls: list[tuple[str, tuple[Any, ...]]] = []
            for name in names:
                stream = self.stream_key(name)
                if self._ttl_ms:
                    assert self._length_script is not None
                    sha = self._length_script.sha
                    index = self.index_key(name)
                    calls.append(
                        (stream, ("EVALSHA", sha, 2, stream, index, self._maxlen, self._ttl_ms))
                    )
                else:
                    calls.append((stream, ("XLEN", stream)))
            lengths = _raise_first(await self._pipelined(calls))
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
            async with client.pipeline(transaction=not self._cluster) as pipe:
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
            async with client.pipeline(transaction=not self._cluster) as pipe:
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
        """``{"ok": ..., "backend": "redis", "url": ..., "feed": ..., "mode": ...}``; ok needs
        PING and the feed, and on a Cluster every slot served by a primary that answers and
        says the cluster is ok (``error`` says which part of the keyspace is unreachable)."""
        report: dict[str, Any] = {
            "ok": False,
            "backend": "redis",
            "url": self._safe_url,
            "feed": "connected" if self._feed_up else "reconnecting",
            "mode": "cluster" if self._cluster else self._target.mode.replace("auto", "single"),
        }
        try:
            if self._cluster:
                problem = await asyncio.wait_for(self._cluster_problem(), self._timeout * 2)
                if problem is not None:
                    report["error"] = problem
                    return report
            else:
                await asyncio.wait_for(self._require_client().ping(), self._timeout)
        except (*_DEAD, RuntimeError) as exc:
            report["error"] = str(self._unavailable("unreachable", exc))
            return report
        report["ok"] = self._feed_up
        if not self._feed_up and self._last_error:
            report["error"] = self._last_error
        return report

    async def _cluster_problem(self) -> str | None:
        """What part of the Cluster's keyspace is unreachable now, in words (None: none)."""
        client = self._require_client()
        assert isinstance(client, RedisCluster)
        await self._refresh_slots(client)
        cache = client.nodes_manager.slots_cache
        uncovered = sum(1 for slot in range(_SLOTS) if not cache.get(slot))
        if uncovered:
            return f"{uncovered} of {_SLOTS} Redis Cluster slots have no primary"
        for node in client.get_primaries():
            try:
                info: Any = await asyncio.wait_for(
                    client.cluster_info(target_nodes=node), self._timeout
                )
            except (*_DEAD, RuntimeError) as exc:
                return f"the Redis Cluster primary {node.name} is unreachable: {exc}"
            state = info.get("cluster_state") if isinstance(info, dict) else None
            if state != "ok":
                return (
                    f"the Redis Cluster primary {node.name} says cluster_state:{state}: part "
                    "of the keyspace has no reachable primary (a failover may be under way)"
                )
        return None

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
        if on and not self._fed_sid and not self._refilled_to:
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
        backoff = 0.05
        state = _FeedLog(self._safe_url, self._max_backoff)
        while not self._closing:
            feeds: list[tuple[AbstractConnection, dict[bytes, int]]] = []
            try:
                await self._subscribe(feeds)
                await self._sync_clock()
                await self._refill()
                self._feed_up = True
                self._first_attempt.set()
                self._last_error = None
                if state.connected():
                    self.reconnects += 1
                backoff = 0.05
                await self._read_feeds(feeds)
            except asyncio.CancelledError:
                raise
            except _DEAD as exc:
                self._last_error = str(self._unavailable("the feed is down", exc))
                state.failed(self._last_error, backoff, lost=self._feed_up)
            finally:
                self._feed_up = False
                self._first_attempt.set()
                for conn, _ in feeds:
                    with contextlib.suppress(Exception):
                        await conn.disconnect()
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)

    async def _subscribe(self, feeds: list[tuple[AbstractConnection, dict[bytes, int]]]) -> None:
        """Open the feed's connection(s) into ``feeds``: one, subscribed to the prefix's feed,
        or on a Cluster one per primary, subscribed (``SSUBSCRIBE``) to the shard channel of
        each slot it serves, with the slot of each (a feed on the node of each event's slot:
        no event is sent to every node)."""
        if not self._cluster:
            assert self._feed_pool is not None
            conn: AbstractConnection = self._feed_pool.make_connection()  # type: ignore[no-untyped-call]
            feeds.append((conn, {}))
            await conn.connect()  # type: ignore[no-untyped-call]
            if self._target.mode == "auto":
                # A Cluster node that did not answer when the hub started would take only its
                # own slots' publishes: say so (health answers 503) rather than serve part.
                await conn.send_command("INFO", "cluster")
                info = await conn.read_response(timeout=self._timeout)
                if isinstance(info, bytes) and b"cluster_enabled:1" in info:
                    raise ConnectionError(
                        "the server is a Redis Cluster node, and was not reachable when the hub "
                        "started: restart the hub, or use a redis+cluster:// URL"
                    )
            await conn.send_command("SUBSCRIBE", self._feed_channel)
            reply = await conn.read_response(timeout=self._timeout)
            if reply is None:
                raise TimeoutError("no reply to SUBSCRIBE")
            return
        client = self._require_client()
        assert isinstance(client, RedisCluster)
        # A fresh map of the slots (after a failover, the promoted replicas serve them), and
        # the scripts on every primary (a promoted replica may not have them cached).
        await self._refresh_slots(client)
        await self._load_scripts()
        owners: dict[tuple[str, int], list[int]] = {}
        cache = client.nodes_manager.slots_cache
        for slot in range(_SLOTS):
            nodes = cache.get(slot)
            if not nodes:
                raise ConnectionError(f"Redis Cluster slot {slot} has no primary")
            owners.setdefault((nodes[0].host, int(nodes[0].port)), []).append(slot)
        options = {**self._url_options_plain(), **self._common}
        for (host, port), slots in owners.items():
            pool = self._node_pools.get((host, port))
            if pool is None:
                pool = self._node_pools[host, port] = ConnectionPool(
                    **{**options, "host": host, "port": port}
                )
            conn = pool.make_connection()  # type: ignore[no-untyped-call]
            shards = {self._slot_feed(slot).encode(): slot for slot in slots}
            feeds.append((conn, shards))
            await conn.connect()  # type: ignore[no-untyped-call]
            # Every channel of one SSUBSCRIBE must be in one slot: one command per slot, sent
            # together.
            await conn.send_packed_command(
                conn.pack_commands([("SSUBSCRIBE", name) for name in shards])
            )
            for _ in shards:
                reply = await conn.read_response(timeout=self._timeout)
                if reply is None:
                    raise TimeoutError("no reply to SSUBSCRIBE")
                if not isinstance(reply, list) or reply[0] != b"ssubscribe":
                    raise ConnectionError(f"unexpected reply to SSUBSCRIBE: {reply!r:.80}")

    def _url_options_plain(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(parse_url(self._target.url))
        options.pop("host", None)
        options.pop("port", None)
        return options

    async def _load_scripts(self) -> None:
        client = self._require_client()
        for script in (
            self._publish_script,
            self._replay_script,
            self._length_script,
            self._head_script,
            self._since_script,
            self._counter_script,
        ):
            assert script is not None
            await client.script_load(script.script)

    async def _read_feeds(self, feeds: list[tuple[AbstractConnection, dict[bytes, int]]]) -> None:
        if len(feeds) == 1:
            await self._read_feed(*feeds[0])
            return
        tasks = [asyncio.ensure_future(self._read_feed(conn, shards)) for conn, shards in feeds]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    async def _read_feed(self, conn: AbstractConnection, shards: dict[bytes, int]) -> None:
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
            kind = message[0]
            if kind == b"message":
                self._on_feed(message[2])
            elif kind == b"smessage":
                self._on_feed(message[2], shards[message[1]])
            elif kind == b"sunsubscribe":
                # The node no longer serves the slot (a failover or resharding): subscribe
                # again where it is now, and refill what was missed meanwhile.
                raise ConnectionError("a Redis Cluster slot moved to another node")

    def _on_feed(self, payload: bytes, shard: int = 0) -> None:
        header_end = payload.index(b"\n")
        header = payload[:header_end].split(b" ")
        if len(header) != 4:
            self._on_feed_event(payload, header, header_end + 1, shard)
            return
        # One public event to one channel: the header as before multi-channel events.
        raw_sid, raw_clen, raw_ulen, raw_elen = header
        self._fed_sid[shard] = raw_sid
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
            if key[1] > self._all_bound.get(shard, -1):
                assert self._deliver is not None
                self._deliver(channel, sse, payload[start:], (0, *key))
            return
        if key[1] <= watch.bound:
            return  # the last refill's to deliver
        if watch.last is not None and epoch in (watch.epoch, watch.stale) and key <= watch.last:
            return  # already delivered by a refill
        self._deliver_entry(channel, watch, sid, sse, payload[start:], epoch)

    def _on_feed_event(self, payload: bytes, header: list[bytes], start: int, shard: int) -> None:
        # "<sid> <uid len> <private> (<channel len> <epoch len>)...\n", then each channel and
        # its epoch, the uid and the event: see publish.lua.
        raw_sid = header[0]
        self._fed_sid[shard] = raw_sid
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
                if self._all and g > self._all_bound.get(shard, -1):
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

    def _fed(self, shard: int = 0) -> int | None:
        """The newest g of ``shard`` the feed has passed (None before its first connection)."""
        sid = self._fed_sid.get(shard)
        refilled = self._refilled_to.get(shard, -1)
        if sid is None:
            return None if refilled < 0 else refilled
        return max(_sid_key(sid.decode())[1], refilled)

    async def _refill(self) -> None:
        """Deliver what the feed missed while it was down: each watched stream's events after
        the last one delivered (with `watch_all`, every stream's after the feed's last g), up
        to the counter read now (the feed carries those after it), merged in g order, each
        event once with all of its channels, as the feed would have."""
        assert self._head_script is not None and self._counter_script is not None
        everything = self._all
        if not self._cluster:
            shards = [0]
        elif everything:
            shards = list(range(_SLOTS))
        else:
            shards = sorted({self._slot(channel) for channel in self._watched})
        fed_before = {shard: self._fed(shard) for shard in shards}
        bounds = await self._bounds(shards, fed_before)
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
            sources.append(
                _Source(channel, watch, start, fresh_epoch, last, bounds[self._shard(channel)])
            )
        if everything:
            refilling = {source.channel for source in sources}
            for name in await self._stream_names():
                if name in refilling or name in self._watched:
                    continue
                shard = self._shard(name)
                fed = fed_before.get(shard)
                begin = self._all_floor if fed is None else await self._start_after(name, fed)
                if begin is not None:
                    sources.append(_Source(name, None, begin, None, None, bounds[shard]))
        await self._merge(sources)
        for source in sources:
            if source.watch is not None:
                source.watch.bound = source.bound
        for shard, bound in bounds.items():
            if everything:
                self._all_bound[shard] = bound
            self._refilled_to[shard] = max(self._refilled_to.get(shard, -1), bound)
            if bound > self._top_g.get(shard, 0):
                self._top_g[shard] = bound

    async def _bounds(self, shards: list[int], fed: dict[int, int | None]) -> dict[int, int]:
        """Each shard's counter now (raised to the newest g this hub saw there first, see
        counter.lua): a refill delivers the events up to it, the feed those after."""
        assert self._counter_script is not None
        if not self._cluster:
            floor = max(self._top_g.get(0, 0), fed.get(0) or 0)
            return {0: int(await self._counter_script(keys=[self.counter_key()], args=[floor]))}
        tags = _slot_tags()
        calls: list[tuple[str, tuple[Any, ...]]] = []
        for shard in shards:
            floor = max(self._top_g.get(shard, 0), fed.get(shard) or 0)
            key = f"{self.prefix}:seq:{{{tags[shard]}}}"
            calls.append((key, ("EVALSHA", self._counter_script.sha, 1, key, floor)))
        answers = _raise_first(await self._pipelined(calls))
        return {shard: int(answer) for shard, answer in zip(shards, answers, strict=True)}

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

    async def _merge(self, sources: list[_Source]) -> None:
        """Deliver the entries of ``sources`` up to each one's ``bound`` in g order (within a
        shard: g of different Cluster slots do not compare), each event once."""
        heap: list[tuple[int, str, int]] = []

        async def advance(index: int) -> _Entry:
            source = sources[index]
            entry = source.entries.popleft()
            if not source.entries:
                await self._fill(source)
            if source.entries:
                head = source.entries[0]
                heapq.heappush(heap, (head.g, head.sid, index))
            return entry

        for index, source in enumerate(sources):
            await self._fill(source)
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

    async def _fill(self, source: _Source) -> None:
        """Read ``source``'s next entries up to its g ``bound`` (none left: ``source.done``)."""
        bound = source.bound
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
