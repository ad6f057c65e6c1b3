"""A broadcast the backend stores on some channels only, in batches (``Backend.publish_each``).

In process, on a memory backend told to refuse some channels: what the Redis tests check
against a real Redis (tests/redis/), for the mutation lane (scripts/mutate).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ssehub import BackendUnavailable, BroadcastIncomplete, Hub, InvalidMessage, Message
from ssehub.backends.base import PublishResult
from ssehub.backends.memory import MemoryBackend


class Refusing(MemoryBackend):
    """A memory backend that cannot store the channels in ``down`` (as a Redis node that is
    gone), and records the batches a broadcast hands it."""

    def __init__(self, broadcast_batch: int = 64) -> None:
        super().__init__()
        self.down: set[str] = set()
        self.batches: list[list[str]] = []
        self.broadcast_batch = broadcast_batch

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        if channel in self.down:
            raise BackendUnavailable(f"{channel} is down")
        return await super().publish(channel, message, private=private)

    async def publish_each(
        self, channels: Sequence[str], message: Message
    ) -> list[PublishResult | BackendUnavailable]:
        self.batches.append(list(channels))
        return await super().publish_each(channels, message)


class PlainIds(MemoryBackend):
    """A backend whose publish answers a plain str, as backends written before
    `PublishResult` do."""

    async def publish(  # type: ignore[override]
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> str:
        return str(await super().publish(channel, message, private=private))


async def _hub_with(backend: MemoryBackend, *channels: str) -> Hub:
    hub = Hub(backend=backend)
    await hub.start()
    for channel in channels:
        await hub.publish(channel, "first")
    return hub


async def test_a_broadcast_refused_on_some_channels_names_them_and_stores_the_rest() -> None:
    backend = Refusing()
    hub = await _hub_with(backend, "/a", "/b", "/c", "/d")
    last = await hub.subscribe("/d")
    backend.down = {"/b"}
    with pytest.raises(BroadcastIncomplete) as caught:
        await hub.broadcast("to all")
    # Every channel after the refused one was still stored, and said so.
    assert sorted(caught.value.ids) == ["/a", "/c", "/d"]
    assert all(isinstance(i, PublishResult) and i for i in caught.value.ids.values())
    assert caught.value.failed == {"/b": "/b is down"}
    assert "not stored on 1 of 4 channels (/b): /b is down" in str(caught.value)
    assert b"data: to all" in (last.take() or b"")
    assert hub.published_count("/c") == 2 and hub.published_count("/b") == 1
    await hub.shutdown()


async def test_a_broadcast_refused_everywhere_is_backend_unavailable_with_the_reason() -> None:
    backend = Refusing()
    hub = await _hub_with(backend, "/a", "/b")
    backend.down = {"/a", "/b"}
    with pytest.raises(BackendUnavailable) as caught:
        await hub.broadcast("to all")
    assert not isinstance(caught.value, BroadcastIncomplete)
    assert str(caught.value) == "/a is down"
    await hub.shutdown()


async def test_a_broadcast_hands_the_backend_batches_of_its_size() -> None:
    backend = Refusing(broadcast_batch=1)
    hub = await _hub_with(backend, "/a", "/b", "/c")
    ids = await hub.broadcast("to all")
    assert backend.batches == [["/a"], ["/b"], ["/c"]]
    assert sorted(ids) == ["/a", "/b", "/c"]
    await hub.shutdown()


async def test_a_broadcast_with_an_id_no_client_can_send_back_is_refused_first() -> None:
    backend = Refusing()
    hub = await _hub_with(backend, "/a")
    with pytest.raises(InvalidMessage, match=r"^id ' lead' cannot be resumed from: "):
        await hub.broadcast(Message("x", id=" lead"))
    assert backend.batches == []
    await hub.shutdown()


async def test_publish_each_gives_each_channel_its_result_in_order() -> None:
    backend = Refusing()
    hub = await _hub_with(backend)
    backend.down = {"/b"}
    results = await backend.publish_each(["/a", "/b", "/c"], Message("x"))
    assert [type(r) for r in results] == [PublishResult, BackendUnavailable, PublishResult]
    assert str(results[1]) == "/b is down"
    await hub.shutdown()


async def test_publish_each_makes_a_publish_result_of_a_plain_str_id() -> None:
    backend = PlainIds()
    hub = await _hub_with(backend)
    results = await backend.publish_each(["/a", "/b"], Message("x"))
    assert all(type(r) is PublishResult for r in results)
    assert [r.duplicate for r in results] == [False, False]  # type: ignore[union-attr]
    assert results[0] != results[1] and str(results[0]).startswith(backend.id_prefix)
    await hub.shutdown()


async def test_publish_each_keeps_the_duplicate_flag_of_a_message_id_already_held() -> None:
    backend = Refusing()
    hub = await _hub_with(backend)
    message = Message("x", id="order-1")
    first = await backend.publish_each(["/a"], message)
    again = await backend.publish_each(["/a", "/b"], message)
    assert [r.duplicate for r in first] == [False]  # type: ignore[union-attr]
    # Already in /a's history: nothing stored there again; /b gets it for the first time.
    assert [(str(r), r.duplicate) for r in again] == [  # type: ignore[union-attr]
        ("order-1", True),
        ("order-1", False),
    ]
    await hub.shutdown()
