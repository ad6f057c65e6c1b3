"""The backend interface: publish (assigns the id), replay after an id, and the event feed."""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, Protocol

from ssehub.errors import BackendUnavailable, EventTooLarge
from ssehub.resume import Position, Replay
from ssehub.selectors import Selectors
from ssehub.wire import Message

__all__ = [
    "Backend",
    "Deliver",
    "Forget",
    "Position",
    "PublishResult",
    "Replay",
    "encode_event",
    "too_large",
]


class Deliver(Protocol):
    """The hub's intake: ``deliver(channel, event_id, encoded_bytes, position, private)``.

    Called on the hub's loop. ``channel`` is a tuple of names for one event published to
    several channels (each subscriber gets it once). ``position`` orders the event in its
    channel and, by its last item, across channels (see `ssehub.resume`); a backend that gives
    one must give it to every event and in `Replay.head`, so that a resuming client gets each
    event exactly once. ``private`` events reach only subscribers allowed to read them.
    """

    def __call__(
        self,
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None = None,
        private: bool = False,
        /,
    ) -> None: ...


class PublishResult(str):
    """The id of a published event (a `str`, as before), saying whether it was a duplicate.

    ``duplicate`` is True when the message's own id was already in the channel's retained
    history: the event was then neither stored nor delivered again (an idempotent retry).
    """

    duplicate: bool

    def __new__(cls, event_id: str, *, duplicate: bool = False) -> PublishResult:
        self = super().__new__(cls, event_id)
        self.duplicate = duplicate
        return self

    # repr() stays a str's, so that code printing or comparing ids sees no difference.


Forget = Callable[[str], None]
"""The hub's hook ``forget(channel)``: the backend no longer retains anything of the channel."""


def too_large(size: int, max_event: int) -> EventTooLarge:
    """The error for an encoded event of ``size`` bytes over ``max_event`` (a client's buffer)."""
    return EventTooLarge(
        f"the event is {size} bytes once encoded, larger than a client's buffer of {max_event} "
        "bytes: no subscriber could receive it (raise max_buffer / --max-buffer to send it)"
    )


def encode_event(message: Message, event_id: str) -> bytes:
    """Encode ``message`` carrying ``event_id`` (the id the backend assigned or kept)."""
    if message.id == event_id:
        return message.encode()
    if message.comment is None:
        return b"id: " + event_id.encode() + b"\n" + message.encode()
    return Message(
        message.data,
        id=event_id,
        event=message.event,
        retry=message.retry,
        comment=message.comment,
    ).encode()


async def _no_pages() -> AsyncGenerator[list[str], None]:
    return
    yield  # an async generator that yields nothing


class Backend(abc.ABC):
    """Stores each channel's history and carries every published event to every hub.

    A backend assigns the event id on `publish` (keeping the message's own id when it has one)
    and hands each event, exactly once and in publish order per channel, to the ``deliver``
    callback given to `start`, on the hub's event loop. All methods are called on that loop.
    """

    @abc.abstractmethod
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
        """Begin feeding events to ``deliver``; keep ``history`` events per channel (and no
        older than ``history_ttl`` seconds when set).

        A backend that keeps history in this process also bounds it in bytes: at most
        ``history_bytes`` per channel and ``history_memory`` in all (oldest events first), and
        calls ``forget(channel)`` once it retains nothing of a channel. `publish` refuses an
        event whose encoding is over ``max_event`` bytes with `ssehub.EventTooLarge`.
        """

    @abc.abstractmethod
    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> str:
        """Store ``message`` in ``channel``'s history and fan it out; return its id.

        ``channel`` may be a tuple of distinct names: one event (one id, one position) is then
        stored in each channel's history and delivered once, with the tuple. A ``private``
        event is stored as such and reaches only subscribers allowed to read it (on replay
        too). When the message's own id is already in the retained history of (one of) the
        channel(s), store and deliver nothing and return ``PublishResult(id, duplicate=True)``.
        Raises `ssehub.BackendUnavailable` when the event could not be stored.
        """

    def publish_now(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult | None:
        """`publish` without awaiting, when this backend can: the event's id, or None when it
        cannot publish at once (the default), and then nothing was stored or delivered.

        A backend whose `publish` never waits (the in-memory one) overrides this, and callers
        on a hot path (`ssehub.Hub.publish_nowait`) save a coroutine per event. Raises as
        `publish` does.
        """
        return None

    broadcast_batch: int = 64
    """Channels `ssehub.Hub.broadcast` hands to `publish_each` at a time."""

    async def publish_each(
        self, channels: Sequence[str], message: Message
    ) -> list[PublishResult | BackendUnavailable]:
        """Publish ``message`` to each of ``channels`` as a separate event (a broadcast): the
        result of each, in order, a `BackendUnavailable` where it was not stored.

        Raises `ssehub.EventTooLarge` before any channel got the event. A backend with a remote
        store overrides this to send them all in a few round trips.
        """
        results: list[PublishResult | BackendUnavailable] = []
        for name in channels:
            try:
                result = await self.publish(name, message)
            except BackendUnavailable as exc:
                results.append(exc)
                continue
            results.append(result if isinstance(result, PublishResult) else PublishResult(result))
        return results

    @abc.abstractmethod
    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        """The retained events of ``channel`` published after ``last_event_id`` (its private
        events only when ``private`` is true)."""

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        """The retained events of every channel ``selectors`` match, published after the event
        whose id is ``last_event_id``, in the backend's cross-channel order, each event once
        (however many of its channels match); a private event only when ``private`` matches
        one of its channels. ``found`` is False when the id is unknown, or a matched channel
        lost an event published after it. ``head`` is the position of the newest event
        published anywhere when history was read (compared by its last item)."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume several channels")

    def watch_all(self, on: bool) -> None:  # noqa: B027 - optional hook
        """The hub has subscribers whose selectors may match any channel (``*``, templates):
        deliver every channel's events (``on``), or only the watched channels' again."""

    @abc.abstractmethod
    async def channels(self) -> list[str]:
        """Every channel that has retained history."""

    def retains(self, channel: str) -> bool:
        """Whether this process holds state for ``channel``'s history (False: none, or it lives
        elsewhere, as in Redis). The hub keeps a channel's counters only while this is true or
        the channel has local subscribers."""
        return False

    def watch(self, channel: str) -> None:  # noqa: B027 - optional hook
        """The hub has local subscribers on ``channel`` (a backend may subscribe to it)."""

    def unwatch(self, channel: str) -> None:  # noqa: B027 - optional hook
        """The hub's last local subscriber of ``channel`` has left."""

    def retained(self, channel: str) -> tuple[int, int] | None:
        """``(events, bytes)`` of ``channel``'s history held in this process, (0, 0) when it
        holds none, or None when history lives elsewhere (Redis) and is not counted here.
        Cheap (O(1)): dashboards call it for every channel they list."""
        return None

    @property
    def shared(self) -> bool:
        """Whether several hub processes share this backend (then `report` reaches them)."""
        return False

    async def report(self, worker: str, state: Mapping[str, Any], ttl: float) -> list[Any]:
        """Share ``state`` (JSON-able) as hub process ``worker``'s, for ``ttl`` seconds, and
        return the states every live process sharing the backend reported, this one's
        included. In one process (the default) that is ``[state]``. Raises
        `ssehub.BackendUnavailable` when the shared store cannot be reached."""
        return [dict(state)]

    async def retire(self, worker: str) -> None:  # noqa: B027 - optional hook
        """Withdraw hub process ``worker``'s report (it stops cleanly); never raises."""

    async def share_presence(  # noqa: B027 - optional hook
        self,
        worker: str,
        changes: Mapping[str, str | None],
        ttl: float,
        *,
        reset: bool = False,
    ) -> None:
        """Keep hub process ``worker``'s list of subscriptions in the shared store for ``ttl``
        seconds (until the next call): ``changes`` maps a subscription's id to its description
        (JSON text), or to None for one that left; with ``reset`` the list is replaced by the
        ``changes``. Nothing to do in one process (the default). Raises
        `ssehub.BackendUnavailable` when the shared store cannot be reached."""

    def presence(
        self, exclude: str, ttl: float, *, page: int = 1000
    ) -> AsyncGenerator[list[str], None]:
        """The subscriptions every other live hub process shares (`share_presence`, refreshed
        within ``ttl`` seconds; ``exclude`` is this process), as pages of about ``page`` JSON
        texts; an id may come twice. Nothing in one process (the default). Raises
        `ssehub.BackendUnavailable` when the shared store cannot be reached."""
        return _no_pages()

    async def retire_presence(self, worker: str) -> None:  # noqa: B027 - optional hook
        """Withdraw hub process ``worker``'s list of subscriptions; never raises."""

    async def health(self) -> dict[str, Any]:
        """A JSON-able report of the backend's state; ``{"ok": bool, ...}``."""
        return {"ok": True, "backend": type(self).__name__}

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop the feed and release connections."""
