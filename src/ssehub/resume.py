"""The replay/live seam as data: what a resuming subscriber is sent, in which order (sans-IO).

A client that comes back with ``Last-Event-ID`` is owed every retained event after that id and
then the live stream, with no duplicate and no gap. Reading history takes time (a Redis round
trip), and live events keep arriving meanwhile; so while the backend's `Replay` is read, the
hub holds the live events in a `Resume`, and `Resume.finish` merges the two:

1. the `GAP_EVENT` notice, when history no longer holds the id (the client missed something);
2. the replayed events, oldest first;
3. the held live events that the replay did not already cover, in arrival order.

Which live events the replay covers is decided by position, not by id: a backend gives each
event a `Position` (the Redis stream id, a per-channel counter) that orders it in its channel,
and tells in `Replay.head` the position of the newest event history held when it was read.
Every live event at or before that position is either in the replay or precedes the resume
id, so it is dropped, now (`Seam.live`) and later too: a backend whose feed runs behind its
history (Redis under load) may deliver such events after the replay is merged, so the hub
drops them until the feed passes `Seam.after`. SSE ids are never compared: users may reuse
them or pick them in any order. A backend that gives no positions gets the older rule (drop
held events up to the resume id, and those whose id the replay holds). Nothing here does
I/O; the hub pushes the result into the `Subscription`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from ssehub.wire import Message

__all__ = [
    "EARLIEST",
    "GAP_EVENT",
    "Position",
    "Replay",
    "Resume",
    "Seam",
    "gap_notice",
    "order",
]

GAP_EVENT = "ssehub.gap"
"""The event type a resuming client receives when history no longer holds its Last-Event-ID."""

EARLIEST = " earliest"
"""The ``last_event_id`` that asks for every retained event (Mercure's ``earliest``), with no
`GAP_EVENT`. No event can carry it as its id (it starts with a space, which `Hub.publish`
refuses in an id), so a backend never finds it and replays all it retains."""

Position: TypeAlias = tuple[int, ...]
"""Where an event stands in its channel, as its backend orders it (compared as a whole only
within one channel of one backend): ``(seq,)`` in memory, ``(epoch, ms, seq)`` on Redis. Its
last item orders events across every channel of the backend (the process's publish counter in
memory, the hub-wide counter on Redis): a subscription that reads several channels is resumed
and merged by that item (`order`)."""


def order(position: Position) -> int:
    """The item of ``position`` that orders events across channels (its last)."""
    return position[-1]


@dataclass(frozen=True, slots=True)
class Replay:
    """What `Backend.replay` found: the retained events after the id, oldest first.

    ``found`` is False when the history does not hold the id (it was trimmed, lost, or never
    existed) or the client cannot have every event since (its id is from an older epoch of the
    channel's history); ``events`` then holds the retained events the client may lack.
    ``head`` is the position of the newest event history held when it was read (None when the
    backend gives no positions, or history was empty).
    """

    events: Sequence[tuple[str, bytes]] = field(default_factory=tuple)
    found: bool = True
    head: Position | None = None


@dataclass(frozen=True, slots=True)
class Seam:
    """What a resuming subscriber is sent, in this order: ``gap``, ``replayed``, ``live``."""

    gap: bytes | None
    """The encoded `GAP_EVENT` notice, or None when history held the resume id."""
    replayed: tuple[bytes, ...]
    """The retained events after the resume id, oldest first (may exceed ``max_buffer``)."""
    live: tuple[bytes, ...]
    """Live events that arrived during the replay and are not part of it, in arrival order."""
    after: Position | None = None
    """Live events at or before this position are covered: drop those that arrive later."""


def gap_notice(last_event_id: str, replayed: int) -> Message:
    """The `GAP_EVENT` message: JSON ``{"last_event_id", "replayed"}``, with no id of its own."""
    data = json.dumps({"last_event_id": last_event_id, "replayed": replayed})
    return Message(data, event=GAP_EVENT)


class Resume:
    """One subscriber's resume in progress: live events are held here while history is read."""

    __slots__ = ("across", "after", "held", "last_event_id")

    def __init__(self, last_event_id: str, *, across: bool = False) -> None:
        self.last_event_id = last_event_id
        """The id the client resumes after."""
        self.across = across
        """Whether the subscriber reads several channels: positions are then compared by their
        cross-channel `order` alone (the hub holds an event published to several of them
        once)."""
        self.after: Position | None = None
        """Once finished: the `Seam.after` of the merge (set by the hub)."""
        self.held: list[tuple[str, bytes, Position | None]] = []
        """Live events, as ``(id, encoded bytes, position)``, that arrived since the resume
        began."""

    def hold(self, event_id: str, data: bytes, position: Position | None = None) -> None:
        """Keep a live event until the replay is merged (called by the hub's fan-out)."""
        self.held.append((event_id, data, position))

    def finish(self, replay: Replay) -> Seam:
        """Merge ``replay`` with the held live events: no duplicate, no gap, in order."""
        replayed = tuple(data for _, data in replay.events)
        gap = None
        if not replay.found and self.last_event_id != EARLIEST:
            gap = gap_notice(self.last_event_id, len(replay.events)).encode()
        head = replay.head
        if head is not None and self.across:
            last = head[-1]
            live = tuple(
                data for _, data, position in self.held if position is None or position[-1] > last
            )
            return Seam(gap, replayed, live, head)
        if head is not None:
            live = tuple(
                data for _, data, position in self.held if position is None or position > head
            )
            return Seam(gap, replayed, live, head)
        held = self.held
        for index, (event_id, _, _) in enumerate(held):
            if event_id == self.last_event_id:
                held = held[index + 1 :]
                break
        seen = {event_id for event_id, _ in replay.events}
        live = tuple(data for event_id, data, _ in held if event_id not in seen)
        return Seam(gap, replayed, live)
