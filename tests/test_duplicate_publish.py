"""Idempotent publish: a message whose id is still in its channel's history is not sent again.

A publisher that retries after a timeout cannot know whether its first attempt was stored; it
resends with the same id, and subscribers must see the event once. The answer says so: the
same id, with ``duplicate`` set (`ssehub.PublishResult` in Python, ``"duplicate": true`` over
HTTP).
"""

from __future__ import annotations

import copy
import pickle

import httpx

from ssehub import EventParser, Hub, Message, PublishResult
from ssehub.server.app import HubServer
from tests._support.asgi_server import run_native


async def test_a_publish_with_a_retained_id_is_not_stored_or_delivered_again() -> None:
    hub = Hub(keepalive=None)
    sub = await hub.subscribe("/c")
    first = await hub.publish("/c", Message("one", id="order-1"))
    again = await hub.publish("/c", Message("one, retried", id="order-1"))
    other = await hub.publish("/c", Message("two", id="order-2"))
    assert (first, first.duplicate) == ("order-1", False)
    assert (again, again.duplicate) == ("order-1", True)
    assert not other.duplicate
    events = EventParser().feed(sub.take() or b"")
    assert [(m.id, m.data) for m in events] == [("order-1", "one"), ("order-2", "two")]
    replay = await hub.subscribe("/c", last_event_id="gone")  # every retained event
    assert [m.data for m in EventParser().feed(replay.take() or b"") if m.event is None] == [
        "one",
        "two",
    ]
    assert hub.published_count("/c") == 2
    await hub.shutdown(timeout=0.1)


async def test_an_id_trimmed_from_history_can_be_published_again() -> None:
    hub = Hub(history=2, keepalive=None)
    await hub.publish("/c", Message("a", id="x"))
    await hub.publish("/c", "b")
    await hub.publish("/c", "c")  # "x" is trimmed away
    assert not (await hub.publish("/c", Message("a again", id="x"))).duplicate
    await hub.shutdown(timeout=0.1)


async def test_without_history_nothing_is_a_duplicate() -> None:
    hub = Hub(history=0, keepalive=None)
    sub = await hub.subscribe("/c")
    for _ in range(2):
        assert not (await hub.publish("/c", Message("ping", id="same"))).duplicate
    assert len(EventParser().feed(sub.take() or b"")) == 2
    await hub.shutdown(timeout=0.1)


def test_a_publish_result_is_the_id_as_a_str() -> None:
    result = PublishResult("42", duplicate=True)
    lookup: dict[str, int] = {result: 1}
    assert result == "42" and isinstance(result, str) and lookup["42"] == 1
    assert repr(result) == "'42'" and f"{result}" == "42"
    for clone in (copy.copy(result), pickle.loads(pickle.dumps(result))):
        assert (clone, clone.duplicate) == ("42", True)


async def test_the_http_answer_of_a_duplicate_says_so() -> None:
    hub = Hub(keepalive=None)
    async with run_native(HubServer(hub)) as url, httpx.AsyncClient(base_url=url) as http:
        body = {"data": "paid", "id": "invoice-7"}
        first = (await http.post("/events/billing", json=body)).json()
        again = (await http.post("/events/billing", json=body)).json()
        batch = await http.post("/events/billing", json=[{"data": "new", "id": "invoice-8"}, body])
    assert first == {"id": "invoice-7", "channel": "/events/billing", "clients": 0}
    assert again == {**first, "duplicate": True}
    assert batch.json()["ids"] == ["invoice-8", "invoice-7"]
    assert batch.json()["duplicates"] == ["invoice-7"]
    await hub.shutdown(timeout=0.1)
