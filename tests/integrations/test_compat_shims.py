"""The Flask-SSE and django-eventstream shims, in their frameworks' real servers.

Each app is written as for the library it replaces, with only the import changed; a browser-like
client (httpx over a socket) subscribes the way that library's clients do (``?channel=``, or a
URL with its channel fixed) and must receive what the library's publish call sends: the data as
JSON, the event type, on that channel only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import flask
import httpx
import pytest

from ssehub import Hub
from ssehub.integrations.flask_sse import ServerSentEventsBlueprint, sse
from tests._support.sse import open_sse
from tests.integrations.conftest import _serve_gunicorn, _serve_waitress

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def flask_sse_app(blueprint: ServerSentEventsBlueprint) -> flask.Flask:
    """A Flask-SSE app: the blueprint at /stream, a view that calls ``sse.publish``."""
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint, url_prefix="/stream")

    @app.post("/send")
    def send() -> flask.Response:
        body = flask.request.get_json()
        event_id = blueprint.publish(body["data"], type=body.get("type"), **body["where"])
        return flask.jsonify(id=event_id)

    return app


@pytest.fixture(scope="module")
def flask_base() -> Iterator[str]:
    # The module's own `sse`, as `from flask_sse import sse` code uses it.
    yield from _serve_waitress(flask_sse_app(sse))


async def test_flask_sse_publish_reaches_the_channel_named_by_the_query(flask_base: str) -> None:
    async with (
        open_sse(f"{flask_base}/stream?channel=users.social") as social,
        open_sse(f"{flask_base}/stream") as default,
        httpx.AsyncClient(base_url=flask_base, timeout=5) as client,
    ):
        assert social.response.headers["content-type"].startswith("text/event-stream")
        sent = await client.post(
            "/send",
            json={
                "data": {"message": "Hello!"},
                "type": "greeting",
                "where": {"channel": "users.social"},
            },
        )
        await client.post("/send", json={"data": "to the default channel", "where": {}})
        greeting = await social.next_event()
        plain = await default.next_event()
    assert (greeting.event, json.loads(greeting.data)) == ("greeting", {"message": "Hello!"})
    assert greeting.id == sent.json()["id"]
    # No channel is Flask-SSE's "sse"; a string is JSON too, as Flask-SSE sends it.
    assert (plain.event, plain.data) == (None, '"to the default channel"')


async def test_flask_sse_replays_from_last_event_id_with_ids_of_its_own(flask_base: str) -> None:
    async with httpx.AsyncClient(base_url=flask_base, timeout=5) as client:
        for number in (1, 2, 3):
            where = {"channel": "replayed", "id": f"n-{number}"}
            await client.post("/send", json={"data": number, "where": where})
    async with open_sse(
        f"{flask_base}/stream?channel=replayed", headers={"Last-Event-ID": "n-1"}
    ) as stream:
        events = await stream.events(2)
    assert [(e.id, e.data) for e in events] == [("n-2", "2"), ("n-3", "3")]


def test_a_blueprint_of_your_own_uses_your_hub() -> None:
    hub = Hub()
    blueprint = ServerSentEventsBlueprint("events", hub=hub)
    assert blueprint.hub is hub and sse.hub is not hub
    try:
        event_id = blueprint.publish([1, 2], channel="mine")
        assert hub.run_threadsafe(_retained(hub, "mine")) == [(event_id, b"data: [1, 2]\n\n")]
    finally:
        hub.run_threadsafe(hub.shutdown())


async def _retained(hub: Hub, channel: str) -> list[tuple[str, bytes]]:
    """Every event ``channel`` retains (replayed after an id it does not hold): id, bytes."""
    replay = await hub.backend.replay(channel, "an id never published")
    return [(event_id, raw[raw.index(b"data:") :]) for event_id, raw in replay.events]


@pytest.fixture(scope="module")
def django_base() -> Iterator[str]:
    yield from _serve_gunicorn("tests.integrations.compat_django_site:application")


async def test_send_event_reaches_the_url_channel_and_the_query_channel(django_base: str) -> None:
    async with (
        open_sse(f"{django_base}/events/") as fixed,
        open_sse(f"{django_base}/stream/?channel=room-1") as queried,
        httpx.AsyncClient(base_url=django_base, timeout=5) as client,
    ):
        first = await client.post("/send/test/message", json={"text": "hello world"})
        await client.post("/send/room-1/update", json=[1, 2.5, None])
        event = await fixed.next_event()
        update = await queried.next_event()
    assert (event.event, json.loads(event.data)) == ("message", {"text": "hello world"})
    assert event.id == first.json()["id"]
    assert (update.event, update.data) == ("update", "[1, 2.5, null]")


async def test_events_view_streams_several_channels_as_django_eventstream_does(
    django_base: str,
) -> None:
    async with (
        open_sse(f"{django_base}/stream/?channel=room-a&channel=room-b") as both,
        httpx.AsyncClient(base_url=django_base, timeout=5) as client,
    ):
        for channel in ("room-a", "room-c", "room-b"):
            await client.post(f"/send/{channel}/update", json={"to": channel})
        events = await both.events(2)
    assert [json.loads(e.data) for e in events] == [{"to": "room-a"}, {"to": "room-b"}]


async def test_events_view_without_a_channel_is_a_400(django_base: str) -> None:
    async with httpx.AsyncClient(base_url=django_base, timeout=5) as client:
        none = await client.get("/stream/")
    assert none.status_code == 400
    assert "name a channel" in none.json()["error"]
