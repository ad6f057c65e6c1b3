"""`ssehub.client.connect_sync` in a plain thread, against a real hub served by uvicorn.

The hub and uvicorn run on the test's event loop; the blocking client runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import ssehub.client
from ssehub import Message
from ssehub.client import BadStatus, SyncEventSource
from tests._support.hub_app import Scripted, Served
from tests._support.tcp_proxy import tcp_proxy
from tests._support.waiting import eventually

pytestmark = pytest.mark.timeout(30)

CHANNEL = "/events/sync"


class Consumer:
    """Iterates a `SyncEventSource` in a thread, collecting what it yields and how it ended."""

    def __init__(self, source: SyncEventSource) -> None:
        self.source = source
        self.received: list[Message] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for message in self.source:
                self.received.append(message)
        except BaseException as exc:
            self.error = exc

    async def join(self, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.thread.join, timeout)
        assert not self.thread.is_alive(), "the consumer thread did not end"


async def test_sync_client_reconnects_after_a_cut_and_gets_missed_events_once(
    served: Served,
) -> None:
    async with tcp_proxy(served.port) as proxy:
        source = ssehub.client.connect_sync(
            proxy.url + CHANNEL, headers={"Authorization": "Bearer t"}
        )
        consumer = Consumer(source)
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        first = await served.hub.publish(CHANNEL, Message("a\nb", event="two-lines"))
        await eventually(lambda: len(consumer.received) == 1)

        proxy.cut()
        await eventually(lambda: served.hub.client_count(CHANNEL) == 0)
        missed = [await served.hub.publish(CHANNEL, f"missed {i}") for i in range(3)]
        proxy.restore()
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        after = await served.hub.publish(CHANNEL, "after")
        await eventually(lambda: len(consumer.received) == 5)
        await asyncio.to_thread(source.close)
        await consumer.join()

    assert consumer.error is None
    assert consumer.received[0] == Message("a\nb", id=first, event="two-lines")
    assert [(m.id, m.data) for m in consumer.received[1:]] == [
        (missed[0], "missed 0"),
        (missed[1], "missed 1"),
        (missed[2], "missed 2"),
        (after, "after"),
    ]
    streams = served.app.streams(CHANNEL)
    assert [r.headers.get("last-event-id") for r in streams] == [None, first]
    assert all(r.headers["authorization"] == "Bearer t" for r in streams)
    assert source.last_event_id == after


async def test_sync_close_from_another_thread_wakes_a_blocked_read(served: Served) -> None:
    source = ssehub.client.connect_sync(served.url + CHANNEL)
    consumer = Consumer(source)
    await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
    # The consumer is now blocked reading an idle stream.
    await asyncio.to_thread(source.close)
    await consumer.join()
    assert consumer.error is None
    assert source.closed
    await eventually(lambda: served.hub.client_count(CHANNEL) == 0)


async def test_sync_close_during_the_reconnection_wait(served: Served) -> None:
    served.app.scripted.append(Scripted(503))
    source = ssehub.client.connect_sync(served.url + CHANNEL, reconnect_delay=60)
    consumer = Consumer(source)
    await eventually(lambda: len(served.app.streams(CHANNEL)) == 1)
    await asyncio.to_thread(source.close)  # would otherwise sleep for a minute
    await consumer.join()
    assert consumer.error is None
    assert len(served.app.streams(CHANNEL)) == 1


async def test_sync_204_ends_and_4xx_raises(served: Served) -> None:
    served.app.scripted.extend([Scripted(204), Scripted(401, b"who are you")])
    with ssehub.client.connect_sync(served.url + CHANNEL) as source:
        ended = Consumer(source)
        await ended.join()
    assert ended.error is None
    assert ended.received == []

    with ssehub.client.connect_sync(served.url + CHANNEL) as source:
        failed = Consumer(source)
        await failed.join()
    assert isinstance(failed.error, BadStatus)
    assert failed.error.status_code == 401
    assert len(served.app.streams(CHANNEL)) == 2
