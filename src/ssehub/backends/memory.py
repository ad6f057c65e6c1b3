"""The default backend: history and fan-out inside one process."""

from __future__ import annotations

import time
from collections import deque

from ssehub.backends.base import Backend, Deliver, PublishResult, Replay, encode_event
from ssehub.wire import Message

__all__ = ["MemoryBackend"]


class _History:
    __slots__ = ("entries", "index", "next_seq", "trimmed")

    def __init__(self) -> None:
        # (seq, id, bytes, monotonic time); seq counts up by one per event of this channel.
        self.entries: deque[tuple[int, str, bytes, float]] = deque()
        self.index: dict[str, int] = {}
        self.next_seq = 0
        # The newest event trimmed away: a client resuming from it has missed nothing.
        self.trimmed: tuple[int, str] | None = None

    def pop_oldest(self) -> None:
        seq, event_id, _, _ = self.entries.popleft()
        if self.index.get(event_id) == seq:
            del self.index[event_id]
        self.trimmed = (seq, event_id)


class MemoryBackend(Backend):
    """History and fan-out for a single hub process (the default).

    Ids it assigns look like ``"<boot-ms>-<n>"``: increasing within a process, and distinct from
    the ids of an earlier run, so a client resuming with an id from before a restart is told
    about the gap instead of being replayed from the wrong place.
    """

    def __init__(self) -> None:
        self._deliver: Deliver | None = None
        self._histories: dict[str, _History] = {}
        self._limit = 1000
        self._ttl: float | None = None
        self._prefix = f"{int(time.time() * 1000)}-"
        self._seq = 0

    async def start(self, deliver: Deliver, *, history: int, history_ttl: float | None) -> None:
        """Take the hub's intake and the retention settings."""
        self._deliver = deliver
        self._limit = history
        self._ttl = history_ttl

    async def publish(self, channel: str, message: Message) -> str:
        """Assign the id, append to the channel's history and deliver at once.

        Returns ``PublishResult(id, duplicate=True)``, storing nothing, when the message's own
        id is in the channel's retained history.
        """
        hist = self._histories.get(channel) if self._limit > 0 else None
        if hist is not None and message.id is not None:
            if self._ttl is not None:
                self._expire(hist)
            if message.id in hist.index:
                return PublishResult(message.id, duplicate=True)
        self._seq += 1
        event_id = message.id if message.id is not None else self._prefix + str(self._seq)
        data = encode_event(message, event_id)
        position = None
        if self._limit > 0:
            if hist is None:
                hist = self._histories[channel] = _History()
            seq = hist.next_seq
            hist.next_seq = seq + 1
            position = (seq,)
            hist.entries.append((seq, event_id, data, time.monotonic()))
            hist.index[event_id] = seq
            if len(hist.entries) > self._limit:
                hist.pop_oldest()
            if self._ttl is not None:
                self._expire(hist)
        if self._deliver is not None:
            self._deliver(channel, event_id, data, position)
        return PublishResult(event_id)

    def _expire(self, hist: _History) -> None:
        assert self._ttl is not None
        cutoff = time.monotonic() - self._ttl
        entries = hist.entries
        while entries and entries[0][3] < cutoff:
            hist.pop_oldest()

    async def replay(self, channel: str, last_event_id: str) -> Replay:
        """The events after ``last_event_id``; every retained event if the id is not held."""
        hist = self._histories.get(channel)
        if hist is None:
            return Replay((), found=False)
        if self._ttl is not None:
            self._expire(hist)
        entries = hist.entries
        head = (hist.next_seq - 1,)
        seq = hist.index.get(last_event_id)
        if seq is None and hist.trimmed is not None and hist.trimmed[1] == last_event_id:
            seq = hist.trimmed[0]
        if seq is None:
            return Replay(tuple((e[1], e[2]) for e in entries), found=False, head=head)
        first = entries[0][0] if entries else hist.next_seq
        start = seq + 1 - first
        return Replay(tuple((e[1], e[2]) for e in list(entries)[start:]), found=True, head=head)

    async def channels(self) -> list[str]:
        """Channels with retained history."""
        if self._ttl is not None:
            for hist in self._histories.values():
                self._expire(hist)
        return [name for name, hist in self._histories.items() if hist.entries]
