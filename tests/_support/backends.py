"""Memory backends that behave as others may: a feed behind history, publishes landing during a
replay, positions shaped like Redis', none at all. For the hub's replay/live seam. And
`SqliteBackends`, which makes durable backends for the contract tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

from ssehub import MemoryBackend, Message, Replay, SqliteBackend
from ssehub.backends.base import Deliver, Position
from ssehub.selectors import Selectors

__all__ = [
    "EPOCHS",
    "During",
    "EpochPositions",
    "LaggingEpochPositions",
    "LaggingFeed",
    "NoPositions",
    "PublishDuringReplay",
    "SqliteBackends",
]

Queued = tuple[str | tuple[str, ...], str, bytes, Position | None, bool]


class LaggingFeed(MemoryBackend):
    """Retains at once, delivers only on `flush`: the live feed runs behind history (as Redis'
    may under load)."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[Queued] = []

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.hub_deliver = deliver

        def later(
            channel: str | tuple[str, ...],
            event_id: str,
            data: bytes,
            position: Position | None = None,
            private: bool = False,
            /,
        ) -> None:
            self.queued.append((channel, event_id, data, position, private))

        await super().start(later, **settings)

    def flush(self) -> None:
        queued, self.queued = self.queued, []
        for channel, event_id, data, position, private in queued:
            self.hub_deliver(channel, event_id, data, position, private)


During: TypeAlias = tuple[str | tuple[str, ...], str, bool] | Callable[[], Awaitable[Any]]


class PublishDuringReplay(MemoryBackend):
    """Memory history, with publishes landing while a replay is read (as on Redis, where the
    read is a round trip): ``before`` go into history and the held live events alike, ``after``
    only into the held live events. Each is ``(channel or channels, data, private)``, or an
    async callable to run then (another client subscribing, say). Both are emptied by the
    replay that runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.before: list[During] = []
        self.after: list[During] = []

    async def _during(self, steps: list[During]) -> None:
        for step in steps:
            if callable(step):
                await step()
            else:
                channel, data, private = step
                await self.publish(channel, Message(data), private=private)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        await self._during(self.before)
        replay = await super().replay(channel, last_event_id, private=private)
        await self._during(self.after)
        self.before = self.after = []
        return replay

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        await self._during(self.before)
        replay = await super().replay_selected(selectors, last_event_id, private=private)
        await self._during(self.after)
        self.before = self.after = []
        return replay


class NoPositions(PublishDuringReplay):
    """A backend that gives no positions (the `Backend` contract allows it): the seam is then
    found by ids."""

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        def without(
            channel: str | tuple[str, ...],
            event_id: str,
            data: bytes,
            position: Position | None = None,
            private: bool = False,
            /,
        ) -> None:
            deliver(channel, event_id, data, None, private)

        await super().start(without, **settings)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        replay = await super().replay(channel, last_event_id, private=private)
        return Replay(replay.events, found=replay.found)

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        replay = await super().replay_selected(selectors, last_event_id, private=private)
        return Replay(replay.events, found=replay.found)


def _epoch(channel: str | tuple[str, ...]) -> int:
    name = channel if isinstance(channel, str) else channel[0]
    return EPOCHS.get(name, 5)


EPOCHS = {"/a": 9, "/b": 1}
"""The epoch of each channel's positions in `EpochPositions` (5 for the others, and for the
head of a replay of several channels: between the two)."""


def _with_epochs(deliver: Deliver) -> Deliver:
    def epoch(
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None = None,
        private: bool = False,
        /,
    ) -> None:
        if position is not None:
            position = (_epoch(channel), position[-1])
        deliver(channel, event_id, data, position, private)

    return epoch


def _head(replay: Replay, epoch: int) -> Replay:
    head = None if replay.head is None else (epoch, replay.head[-1])
    return Replay(replay.events, found=replay.found, head=head)


class EpochPositions(PublishDuringReplay):
    """Positions shaped as on Redis, ``(epoch, order)``, the epoch per channel (`EPOCHS`): two
    channels' positions compare by their last item only (`ssehub.resume.order`)."""

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        await super().start(_with_epochs(deliver), **settings)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        return _head(await super().replay(channel, last_event_id, private=private), _epoch(channel))

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        replay = await super().replay_selected(selectors, last_event_id, private=private)
        return _head(replay, 5)


class LaggingEpochPositions(LaggingFeed):
    """`EpochPositions` with a feed behind history (`LaggingFeed`)."""

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        await super().start(_with_epochs(deliver), **settings)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        return _head(await super().replay(channel, last_event_id, private=private), _epoch(channel))

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        replay = await super().replay_selected(selectors, last_event_id, private=private)
        return _head(replay, 5)


class SqliteBackends:
    """Makes `ssehub.SqliteBackend`s on files of one directory, and releases every one it made
    (for tests that run the memory backend's contract on the durable one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: list[SqliteBackend] = []

    def __call__(self) -> SqliteBackend:
        backend = SqliteBackend(self.directory / f"history-{len(self.made)}.sqlite3")
        self.made.append(backend)
        return backend

    def release(self) -> None:
        for backend in self.made:
            backend.release()
