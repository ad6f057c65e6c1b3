"""The Redis backend: shared history and fan-out across hub processes and machines.

Install with ``pip install 'ssehub[redis]'`` (redis-py's asyncio client) and pass it to a hub::

    from ssehub import Hub
    from ssehub.redis import RedisBackend

    hub = Hub(backend=RedisBackend("redis://localhost:6379/0"))

How it stores and carries events (see the README's Redis section for the key names):

- Each channel is one Redis Stream; Redis assigns the stream id, so ids are ordered across every
  hub. A message's own id (``Message(id=...)``) is kept as the SSE id and indexed in a hash so a
  client resuming from it is found. History is trimmed exactly to ``history`` events (and to
  ``history_ttl`` seconds) by the publish script.
- Every publish is one Lua script: append to the stream, trim, and ``PUBLISH`` the encoded event
  on the prefix's feed channel, atomically, so the feed carries events in stream order. A
  message whose own id is still in the stream is a duplicate: the script stores and publishes
  nothing, so a retried publish is idempotent across every hub.
- Each hub holds one subscriber connection to the feed and delivers the events of the channels
  it has subscribers on. When that connection drops, it reconnects with backoff and reads each
  watched stream from the last id it delivered, so nothing Redis accepted is missed or repeated.
- The stream id is the order of truth. A replay returns, read atomically with its events, the
  newest stream id, and the hub drops live events at or below it for that client (the feed may
  still be catching up with history): each event reaches a resuming client once.
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
import json
import logging
import math
import random
import secrets
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

try:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import AbstractConnection, ConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("ssehub.redis needs redis-py: pip install 'ssehub[redis]'") from exc

from ssehub.backends.base import Backend, Deliver, Forget, PublishResult, Replay, too_large
from ssehub.errors import BackendUnavailable
from ssehub.resume import Position, gap_notice
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


def _entry_event(entry: Any) -> tuple[str, str, bytes, str]:
    """(stream id, SSE id, encoded bytes, epoch) of one stream entry.

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
    return sid, sse.decode(), data, fields.get(b"e", b"").decode()


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

    def position(self, epoch: str, key: tuple[int, int]) -> Position:
        """The position of an event of ``epoch`` at stream id ``key``, as seen by this watch."""
        generation = self.generation
        if self.epoch is not None and epoch not in (self.epoch, self.stale):
            generation += 1
        return (generation, *key)


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
    ) -> None:
        if not prefix or any(not (c.isalnum() or c in "_-.:/") for c in prefix):
            raise ValueError(
                f"prefix must be non-empty letters, digits and _-.:/ only, got {prefix!r}"
            )
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
        """Append to ``channel``'s stream and fan out to every hub; return the event's id.

        The id is the message's own id when it has one, else the stream id Redis assigned. A
        message whose own id is still in the channel's history is not stored or published
        again (``PublishResult(id, duplicate=True)``), whichever hub published it first.
        Raises `BackendUnavailable` when Redis cannot be reached or refuses the write.
        """
        if not isinstance(channel, str) or private:
            raise NotImplementedError(
                "the Redis backend does not yet publish to several channels or privately"
            )
        self._require_client()
        assert self._publish_script is not None
        head, body = _split(message)
        uid = message.id
        max_event = self._max_event
        if max_event is not None:
            # The id line: "id: " + the id (a stream id is at most 41 characters) + "\n".
            size = len(head) + len(body) + 5 + (len(uid.encode()) if uid is not None else 41)
            if size > max_event:
                raise too_large(size, max_event)
        try:
            sid, duplicate, _ = await self._publish_script(
                keys=[self.stream_key(channel), self.index_key(channel)],
                args=[
                    channel,
                    self._maxlen,
                    self._ttl_ms,
                    self._feed_channel,
                    body,
                    head,
                    uid if uid is not None else "",
                    "1" if uid is not None else "0",
                    _new_epoch(),
                ],
            )
        except _DEAD as exc:
            raise BackendUnavailable(
                f"could not store the event on Redis at {self._safe_url}: {exc}"
            ) from exc
        return PublishResult(uid if uid is not None else sid.decode(), duplicate=bool(duplicate))

    # -- replay ------------------------------------------------------------------------------

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        """The retained events of ``channel`` after ``last_event_id`` (a stream or user id).

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
            _, sse, data, _ = _entry_event(entry)
            events.append((sse, data))
        head = None
        if raw_newest:
            key = _sid_key(raw_newest.decode())
            watch = self._watched.get(channel)
            head = (0, *key) if watch is None else watch.position(raw_epoch.decode(), key)
        return Replay(tuple(events), found=bool(found), head=head)

    async def channels(self) -> list[str]:
        """Every channel whose stream holds events (found with ``SCAN``; for `Hub.broadcast`)."""
        client = self._require_client()
        if self._maxlen == 0:
            return []
        start = f"{self.prefix}:{{"
        names: list[str] = []
        try:
            async for key in client.scan_iter(
                match=_glob_escape(start) + "*", count=1000, _type="stream"
            ):
                text = key.decode()
                if text.startswith(start) and text.endswith("}"):
                    names.append(text[len(start) : -1])
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
        raw_sid, raw_clen, raw_ulen, raw_elen = payload[:header_end].split(b" ")
        start = header_end + 1
        clen = int(raw_clen)
        channel = payload[start : start + clen].decode()
        watch = self._watched.get(channel)
        if watch is None:
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
        if watch.last is not None and epoch in (watch.epoch, watch.stale) and key <= watch.last:
            return  # already delivered by a refill
        self._deliver_entry(channel, watch, sid, sse, payload[start:], epoch)

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

    def _gap(self, channel: str, watch: _Watch) -> None:
        """Tell the channel's open streams, once, that history lost events they may have had."""
        watch.generation += 1
        notice = gap_notice(watch.last_sse or "", 0).encode()
        assert self._deliver is not None
        self._deliver(channel, "", notice, (watch.generation, 0, 0))

    async def _refill(self) -> None:
        """Deliver what each watched stream got after the last event the feed delivered."""
        client = self._require_client()
        assert self._head_script is not None
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
                    args=[watch.epoch or "", watch.last_raw, _new_epoch()],
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
            while True:
                entries: Any = await client.xrange(self.stream_key(channel), start, "+", count=1000)
                if self._watched.get(channel) is not watch:
                    break
                for entry in entries:
                    sid, sse, data, epoch = _entry_event(entry)
                    key = _sid_key(sid)
                    if fresh_epoch is not None and not (
                        (fresh_epoch and epoch == fresh_epoch) or (last is not None and key > last)
                    ):
                        continue
                    self.refilled += 1
                    self._deliver_entry(channel, watch, sid, sse, data, epoch)
                if len(entries) < 1000:
                    break
                start = "(" + entries[-1][0].decode()
