"""The default backend: history and fan-out inside one process.

History is bounded four ways: events per channel (``history``), age (``history_ttl``), bytes per
channel (``history_bytes``) and bytes for the whole hub (``history_memory``). Past the hub-wide
bound the oldest retained events go first, whichever channel holds them. A channel's history
object is freed as soon as it retains nothing (trimmed, expired or evicted), and the hub is told
(``forget``), so a hub that saw 100k short-lived channels returns to its size.

Every bound costs O(1) per publish: byte counters, and a heap of channels keyed by the age of
their oldest retained event, touched only when a channel starts retaining or the hub-wide bound
or the age sweep evicts. Keys go stale (too old) when a channel trims by itself; a stale key is
corrected when it surfaces, so the heap's minimum is always the hub's oldest retained event.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from ssehub.backends.base import (
    Backend,
    Deliver,
    Forget,
    Position,
    PublishResult,
    Replay,
    encode_event,
    too_large,
)
from ssehub.selectors import Selectors
from ssehub.wire import Message

__all__ = [
    "CHANNEL_OVERHEAD",
    "EVENT_OVERHEAD",
    "TOMBSTONES",
    "Admitted",
    "MemoryBackend",
    "Removed",
]

EVENT_OVERHEAD = 160
"""Bytes a retained event is counted beyond its encoded size (its entry, its index slot)."""

CHANNEL_OVERHEAD = 1024
"""Bytes a channel with history is counted beyond its events (its history object, counters)."""

TOMBSTONES = 10_000
"""Freed channels whose last event id is remembered (the most recent ones), so that a client
resuming from the very last event of a channel whose history expired is not told of a gap."""

_NO_BOUND = sys.maxsize
_SWEEP_BATCH = 2000  # evictions or stale keys handled per slice of work, so no slice is long


@dataclass(frozen=True, slots=True)
class Admitted:
    """An event `MemoryBackend.admit` gave its id and place, not yet retained nor delivered."""

    channel: str | tuple[str, ...]
    event_id: str
    data: bytes
    order: int
    """The process-wide publish counter of the event (its position, when history is kept)."""
    private: bool


Removed = Callable[[str, str, int], None]
"""A hook ``removed(channel, event_id, order)``: the event left ``channel``'s history (trimmed,
expired or evicted), always a channel's oldest retained event first."""


class _History:
    __slots__ = (
        "entries",
        "freed",
        "head",
        "index",
        "name",
        "next_seq",
        "queued",
        "size",
        "trimmed",
        "trimmed_order",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        # (seq, id, bytes, monotonic time, order, private); seq counts up by one per event of
        # this channel, order is the process's publish counter (it orders every channel).
        self.entries: deque[tuple[int, str, bytes, float, int, bool]] = deque()
        self.index: dict[str, int] = {}
        self.next_seq = 0
        # The newest event trimmed away: a client resuming from it has missed nothing.
        self.trimmed: tuple[int, str] | None = None
        self.trimmed_order = 0  # the order of the newest event removed (0: none)
        self.size = 0  # bytes counted for the retained entries
        self.queued = False  # whether the age heap holds a key for this history
        self.freed = False
        self.head: Position | None = None  # the position of the newest event appended


class MemoryBackend(Backend):
    """History and fan-out for a single hub process (the default).

    Ids it assigns look like ``"<boot-ms>-<n>"``: increasing within a process, and distinct from
    the ids of an earlier run, so a client resuming with an id from before a restart is told
    about the gap instead of being replayed from the wrong place.
    """

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._forget: Forget | None = None
        self._histories: dict[str, _History] = {}
        self._limit = 1000
        self._ttl: float | None = None
        # The byte bounds; "no bound" is a bound no process reaches, so each is one comparison.
        self._max_bytes = _NO_BOUND
        self._memory = _NO_BOUND
        self._max_event: int | None = None
        self._prefix = f"{int(time.time() * 1000)}-"
        self._seq = 0
        self._accepted = 0  # the order of the newest event retained or delivered
        # (time of the oldest retained event, tie-breaker, history): the hub-wide age order.
        self._heap: list[tuple[float, int, _History]] = []
        self._ticket = itertools.count()
        # channel -> (id, order) of its newest event, for channels freed lately (TOMBSTONES at
        # most); the newest order of those forgotten since, for resumes across channels.
        self._tombstones: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._forgotten_order = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self.retained_bytes = 0
        """Bytes of history counted now, every channel (events plus fixed overheads)."""
        self.retained_events = 0
        """Events held in history now, every channel."""
        self.evicted = 0
        """Events removed to keep the whole hub under ``history_memory``."""
        self.on_remove: Removed | None = None
        """Called for each event that leaves a channel's history (a backend that persists
        history deletes it there too); None: nobody is told."""

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
        """Take the hub's intake and the retention settings; start the age sweep if any."""
        self._deliver = deliver
        self._forget = forget
        self._limit = history
        self._ttl = history_ttl
        self._max_bytes = _NO_BOUND if history_bytes is None else history_bytes
        self._memory = _NO_BOUND if history_memory is None else history_memory
        self._max_event = max_event
        if history_ttl is not None:
            self._schedule_sweep(min(history_ttl, 1.0))

    async def close(self) -> None:
        """Stop the age sweep."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        """Assign the id, append to the channel's (or channels') history and deliver at once.

        Raises `ssehub.EventTooLarge` (nothing stored or delivered) for an event over
        ``max_event`` bytes once encoded. Returns ``PublishResult(id, duplicate=True)``, storing
        and delivering nothing, when the message's own id is in the channel's retained history.
        """
        return self._publish(channel, message, private)

    def publish_now(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult | None:
        """`publish`, which never waits here: the event's id (raises as `publish` does).

        None in a subclass that overrides `publish` (the durable backend waits for its write):
        its own `publish` is awaited instead.
        """
        if type(self).publish is not MemoryBackend.publish:
            return None
        return self._publish(channel, message, private)

    def _publish(
        self, channel: str | tuple[str, ...], message: Message, private: bool
    ) -> PublishResult:
        admitted = self.admit(channel, message, private=private)
        if isinstance(admitted, PublishResult):
            return admitted
        return self.accept(admitted)

    def admit(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> Admitted | PublishResult:
        """The first half of `publish`: give the event its id and order, retain and deliver
        nothing; `accept` does, and must be called with the events in the order admitted.

        For a backend that stores each event elsewhere before it counts as published. Returns
        ``PublishResult(id, duplicate=True)`` for a duplicate, raises as `publish` does.
        """
        names = (channel,) if isinstance(channel, str) else channel
        if message.id is not None and self._limit > 0:
            for name in names:
                hist = self._histories.get(name)
                if hist is not None:
                    if self._ttl is not None:
                        self._expire(hist)
                    if message.id in hist.index:
                        return PublishResult(message.id, duplicate=True)
        self._seq += 1
        event_id = message.id if message.id is not None else self._prefix + str(self._seq)
        data = encode_event(message, event_id)
        max_event = self._max_event
        if max_event is not None and len(data) > max_event:
            raise too_large(len(data), max_event)
        return Admitted(channel, event_id, data, self._seq, private)

    def accept(self, event: Admitted) -> PublishResult:
        """The second half of `publish`: retain ``event`` (an `admit` result) and deliver it."""
        channel, event_id, data, private = event.channel, event.event_id, event.data, event.private
        self._accepted = event.order
        position = None
        if self._limit > 0:
            # The process-wide publish counter orders events within a channel, and never goes
            # back: a channel whose history was freed and made anew keeps counting up.
            position = (event.order,)
            for name in (channel,) if isinstance(channel, str) else channel:
                self._retain(name, event_id, data, position, private)
        if self._deliver is not None:
            if private:
                self._deliver(channel, event_id, data, position, True)
            else:
                self._deliver(channel, event_id, data, position)
        return PublishResult(event_id)

    def restore(
        self,
        channel: str,
        event_id: str,
        data: bytes,
        order: int,
        private: bool,
        age: float,
    ) -> None:
        """Put back into ``channel``'s history an event kept from before a restart, published
        ``age`` seconds ago (a persisting backend's start-up; nothing is delivered).

        Call after `start`, oldest event first across every channel; the retention settings
        apply as they would have. See `restore_counter` and `restore_tombstone`.
        """
        self._retain(channel, event_id, data, (order,), private, time.monotonic() - age)
        self._accepted = max(self._accepted, order)

    def restore_counter(self, prefix: str, order: int, forgotten: int = 0) -> None:
        """Continue a run before a restart: assign ids ``prefix + n`` after ``order`` (the
        last order it gave); ``forgotten`` is the newest order of the channels it no longer
        remembered (a resume from before it is told of a gap)."""
        self._prefix = prefix
        self._seq = max(self._seq, order)
        self._accepted = max(self._accepted, order)
        self._forgotten_order = max(self._forgotten_order, forgotten)

    @property
    def id_prefix(self) -> str:
        """What every id this backend assigns starts with (``"<boot-ms>-"``)."""
        return self._prefix

    def restore_tombstone(self, channel: str, event_id: str, order: int) -> None:
        """Remember ``event_id`` (at ``order``) as the newest event removed from ``channel``
        before a restart: a client resuming from it has missed nothing. Call before
        `restore`ing the channel's events, oldest tombstone first.

        Nothing is forgotten here: the caller passes at most `TOMBSTONES` of channels that
        then get no event back (the others' are taken by the history `restore` makes, as a
        channel that retains history holds no tombstone), and the newest order of those it
        left out to `restore_counter` (``forgotten``)."""
        tombstones = self._tombstones
        tombstones[channel] = (event_id, order)
        tombstones.move_to_end(channel)

    def _retain(
        self,
        channel: str,
        event_id: str,
        data: bytes,
        position: Position,
        private: bool,
        now: float | None = None,
    ) -> None:
        hist = self._histories.get(channel)
        if hist is None:
            hist = self._histories[channel] = _History(channel)
            self.retained_bytes += CHANNEL_OVERHEAD
            last = self._tombstones.pop(channel, None)
            if last is not None:
                hist.trimmed = (-1, last[0])  # every event of the new history comes after it
                hist.trimmed_order = last[1]
        if now is None:
            now = time.monotonic()
        entries = hist.entries
        if not hist.queued:
            if len(self._heap) > 2 * len(self._histories) + 1024:
                # Freed histories leave their keys behind: compact now and then (amortized O(1)).
                self._heap = [item for item in self._heap if not item[2].freed]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (now, next(self._ticket), hist))
            hist.queued = True
        seq = hist.next_seq
        hist.next_seq = seq + 1
        entries.append((seq, event_id, data, now, position[0], private))
        hist.index[event_id] = seq
        hist.head = position
        cost = len(data) + EVENT_OVERHEAD
        hist.size += cost
        self.retained_bytes += cost
        self.retained_events += 1
        limit = self._limit
        max_bytes = self._max_bytes
        while entries and (len(entries) > limit or hist.size > max_bytes):
            self._pop_oldest(hist)
        if self._ttl is not None:
            self._expire(hist)
        if self.retained_bytes > self._memory:
            self._evict(self._memory)
        if not entries and not hist.freed:
            self._free(hist)

    def _pop_oldest(self, hist: _History) -> None:
        seq, event_id, data, _, order, _ = hist.entries.popleft()
        if hist.index.get(event_id) == seq:
            del hist.index[event_id]
        hist.trimmed = (seq, event_id)
        hist.trimmed_order = order
        cost = len(data) + EVENT_OVERHEAD
        hist.size -= cost
        self.retained_bytes -= cost
        self.retained_events -= 1
        if self.on_remove is not None:
            self.on_remove(hist.name, event_id, order)

    def _free(self, hist: _History) -> None:
        # The history retains nothing: drop it (a later publish starts a new one).
        hist.freed = True
        if self._histories.get(hist.name) is hist:
            del self._histories[hist.name]
        self.retained_bytes -= CHANNEL_OVERHEAD
        if hist.trimmed is not None:
            tombstones = self._tombstones
            tombstones[hist.name] = (hist.trimmed[1], hist.trimmed_order)
            tombstones.move_to_end(hist.name)
            if len(tombstones) > TOMBSTONES:
                _, (_, order) = tombstones.popitem(last=False)
                self._forgotten_order = max(self._forgotten_order, order)
        if self._forget is not None:
            self._forget(hist.name)

    def _oldest(self, budget: int) -> tuple[_History | None, int]:
        """The history holding the hub's oldest retained event (None when none), fixing stale
        keys on the way; ``budget`` bounds the heap operations, and what is left is returned."""
        heap = self._heap
        while heap and budget > 0:
            budget -= 1
            when, _, hist = heap[0]
            if hist.freed or not hist.entries:
                heapq.heappop(heap)
                hist.queued = False
                if not hist.freed:
                    self._free(hist)
                continue
            first = hist.entries[0][3]
            if first > when:  # stale: the channel trimmed by itself since
                heapq.heapreplace(heap, (first, next(self._ticket), hist))
                continue
            return hist, budget
        return None, budget

    def _evict_one(self, hist: _History) -> None:
        self._pop_oldest(hist)
        entries = hist.entries
        if entries:
            heapq.heapreplace(self._heap, (entries[0][3], next(self._ticket), hist))
        else:
            heapq.heappop(self._heap)
            hist.queued = False
            self._free(hist)

    def _evict(self, memory: int) -> None:
        budget = _SWEEP_BATCH
        while self.retained_bytes > memory and budget > 0:
            hist, budget = self._oldest(budget)
            if hist is None:
                return
            self._evict_one(hist)
            self.evicted += 1

    def _expire(self, hist: _History) -> None:
        assert self._ttl is not None
        cutoff = time.monotonic() - self._ttl
        entries = hist.entries
        while entries and entries[0][3] < cutoff:
            self._pop_oldest(hist)

    def _schedule_sweep(self, delay: float) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self, budget: int = _SWEEP_BATCH) -> bool:
        """Expire events past ``history_ttl`` hub-wide, oldest first, within ``budget`` heap
        operations; True when everything expired is gone."""
        assert self._ttl is not None  # start() schedules the sweep only with a TTL
        cutoff = time.monotonic() - self._ttl
        done = False
        while budget > 0:
            hist, budget = self._oldest(budget)
            if hist is None:
                done = not self._heap  # else the budget went on stale keys: more to do
                break
            if hist.entries[0][3] >= cutoff:
                done = True
                break
            budget -= 1
            self._evict_one(hist)
        if not self._closed:
            # More to do: continue after the loop's other work; else wait for the next expiry.
            self._schedule_sweep(min(self._ttl, 1.0) if done else 0.0)
        return done

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        """The events after ``last_event_id``; every retained event if the id is not held.
        Private events are left out unless ``private``."""
        hist = self._histories.get(channel)
        if hist is None:
            # Found when it is the last event of a channel freed lately: nothing was missed.
            tombstone = self._tombstones.get(channel)
            return Replay((), found=tombstone is not None and tombstone[0] == last_event_id)
        if self._ttl is not None:
            self._expire(hist)
        entries = hist.entries
        seq = hist.index.get(last_event_id)
        if seq is None and hist.trimmed is not None and hist.trimmed[1] == last_event_id:
            seq = hist.trimmed[0]
        if seq is None:
            events = tuple((e[1], e[2]) for e in entries if private or not e[5])
            replay = Replay(events, found=False, head=hist.head)
        else:
            first = entries[0][0] if entries else hist.next_seq
            start = seq + 1 - first
            events = tuple((e[1], e[2]) for e in list(entries)[start:] if private or not e[5])
            replay = Replay(events, found=True, head=hist.head)
        if not entries and not hist.freed:
            self._free(hist)
        return replay

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        """The events of every matched channel after ``last_event_id``, in publish order, each
        once. The id's place is found in the matched channels' history (or read from an id
        this process assigned); a matched channel that removed an event published after it, or
        an id that cannot be placed, makes ``found`` False (every retained event is then
        replayed)."""
        if selectors.exact_only:
            names = [name for name in selectors.names if name in self._histories]
        else:
            names = [name for name in self._histories if selectors.matches(name)]
        histories = [self._histories[name] for name in names]
        if self._ttl is not None:
            for hist in histories:
                self._expire(hist)
        after = self._order_of(last_event_id, histories)
        found = after is not None
        start = -1 if after is None else after
        if found and self._forgotten_order > start:
            found = False  # a channel forgotten since may have held events the client lacks
        freed = self._tombstones
        if found and not selectors.exact_only:
            tombstones = list(freed.items())
        else:
            tombstones = [(name, freed[name]) for name in selectors.names if name in freed]
        for name, (_, order) in tombstones:
            if order > start and selectors.matches(name):
                found = False
                break
        picked: dict[int, tuple[str, bytes]] = {}
        for hist in histories:
            if hist.trimmed_order > start:
                found = False
            readable = private is not None and private.matches(hist.name)
            for entry in reversed(hist.entries):
                if entry[4] <= start:
                    break
                if readable or not entry[5]:
                    picked[entry[4]] = (entry[1], entry[2])
        events = tuple(picked[order] for order in sorted(picked))
        for hist in histories:
            if not hist.entries and not hist.freed:
                self._free(hist)
        return Replay(events, found=found, head=(self._accepted,))

    def _order_of(self, event_id: str, histories: list[_History]) -> int | None:
        # Where the event ``event_id`` stands in the publish order: the newest retained event of
        # the matched channels with that id, else the counter in an id this process assigned.
        best: int | None = None
        for hist in histories:
            seq = hist.index.get(event_id)
            if seq is not None:
                entries = hist.entries
                order = entries[seq - entries[0][0]][4]
                if best is None or order > best:
                    best = order
        if best is not None:
            return best
        if event_id.startswith(self._prefix):
            count = event_id[len(self._prefix) :]
            if count.isdigit() and int(count) <= self._seq:
                return int(count)
        return None

    async def channels(self) -> list[str]:
        """Channels with retained history."""
        if self._ttl is not None:
            cutoff = time.monotonic() - self._ttl
            return [name for name, hist in self._histories.items() if hist.entries[-1][3] >= cutoff]
        return list(self._histories)

    @property
    def retained_channels(self) -> int:
        """Channels with retained history now."""
        return len(self._histories)

    def retains(self, channel: str) -> bool:
        """Whether ``channel`` has retained history here."""
        return channel in self._histories

    def retained(self, channel: str) -> tuple[int, int]:
        """``(events, bytes)`` of ``channel``'s retained history ((0, 0) when none); the bytes
        are counted as the hub-wide bound counts them (events plus fixed overheads)."""
        hist = self._histories.get(channel)
        if hist is None:
            return 0, 0
        return len(hist.entries), hist.size + CHANNEL_OVERHEAD
