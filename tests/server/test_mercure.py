"""``ssehub serve`` as a Mercure hub, over real sockets: subscribe with ``?topic=``, publish a
form, JWT rules as the Mercure spec says, resuming (``lastEventID``, ``earliest``, the
``Last-Event-ID`` response header), and topics that are ssehub channels (one history, one
replay); then a real Mercure client from PyPI (``mercure-publisher``) publishing to it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
import pytest
from mercure_publisher import AsyncMercurePublisher, MercureConfig, MercurePublisher

from tests._support.redis_server import RedisServer
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory, HubProcess
from tests.server.test_channels_api import data_until, wait_streams

pytestmark = pytest.mark.timeout(30)

SECRET = "a-mercure-test-secret-of-32-bytes-or-more"
HUB = "/.well-known/mercure"


def token(
    subscribe: list[str] | None = None, publish: list[str] | None = None, **claims: Any
) -> str:
    """A JWT with a ``mercure`` claim, as Mercure apps make them."""
    grant: dict[str, Any] = {}
    if subscribe is not None:
        grant["subscribe"] = subscribe
    if publish is not None:
        grant["publish"] = publish
    return jwt.encode({"mercure": grant, **claims}, SECRET, algorithm="HS256")


PUBLISHER = {"Authorization": f"Bearer {token(publish=['*'])}"}


@pytest.fixture(scope="module")
def mercure_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with a JWT key: Mercure is on by default (``--mercure auto``)."""
    process = HubProcess(
        ["--max-body", "65536"],
        tmp_path_factory.mktemp("mercure-hub"),
        env={"SSEHUB_JWT_SECRET": SECRET},
    )
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
async def http(mercure_hub: HubProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mercure_hub.url, timeout=10) as client:
        yield client


async def post(
    http: httpx.AsyncClient, *fields: tuple[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """A Mercure publish: the form fields, with the all-topics publisher's JWT by default."""
    head = {"Content-Type": "application/x-www-form-urlencoded"}
    head.update(PUBLISHER if headers is None else headers)
    return await http.post(HUB, content=urlencode(fields), headers=head)


async def publish(http: httpx.AsyncClient, *fields: tuple[str, str]) -> str:
    answer = await post(http, *fields)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    return answer.text


# -- subscribing and publishing ----------------------------------------------------------------


async def test_a_subscriber_gets_the_updates_its_topic_selectors_match_with_their_ids(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    params = [
        ("topic", "https://example.com/m1/books/{id}"),
        ("topic", "https://example.com/m1/feed"),
    ]
    async with open_sse(mercure_hub.url + HUB, params=params) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert "last-event-id" not in stream.response.headers  # it did not ask to resume
        await wait_streams(http, 1)
        book = await publish(http, ("topic", "https://example.com/m1/books/1"), ("data", "book 1"))
        assert book.startswith("urn:uuid:")
        await publish(http, ("topic", "https://example.com/m1/books/1/reviews"), ("data", "no"))
        await publish(http, ("topic", "https://example.com/m1/other"), ("data", "not mine"))
        mine = await publish(
            http,
            ("topic", "https://example.com/m1/feed"),
            ("data", "line 1\nline 2"),
            ("id", "feed-1"),
            ("type", "feed"),
            ("retry", "2500"),
        )
        assert mine == "feed-1"
        first, second = await stream.events(2)
        assert (first.id, first.data, first.event) == (book, "book 1", None)
        assert (second.id, second.data, second.event) == ("feed-1", "line 1\nline 2", "feed")
        assert second.retry == 2500


async def test_an_update_to_several_topics_reaches_a_subscriber_of_several_of_them_once(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    params = [("topic", "https://example.com/m2/a"), ("topic", "https://example.com/m2/b")]
    async with open_sse(mercure_hub.url + HUB, params=params) as stream:
        await wait_streams(http, 1)
        await publish(
            http,
            ("topic", "https://example.com/m2/a"),
            ("topic", "https://example.com/m2/b"),
            ("data", "both"),
        )
        await publish(http, ("topic", "https://example.com/m2/b"), ("data", "end"))
        assert await data_until(stream, "end") == ["both", "end"]


async def test_topics_are_channels_whatever_the_api_that_publishes_or_reads_them(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    """A Mercure update reaches ``GET /events/...`` and ``GET /events?channel=`` readers of its
    topic, an ssehub publish reaches Mercure subscribers, and both resume from either's ids."""
    path = "/events/m3/news"
    topic = "https://example.com/m3/books/1"
    async with (
        open_sse(mercure_hub.url + path) as by_path,
        open_sse(mercure_hub.url + "/events", params={"channel": topic}) as by_channel,
        open_sse(mercure_hub.url + HUB, params=[("topic", path), ("topic", topic)]) as by_topic,
    ):
        await wait_streams(http, 3)
        mercure_id = await publish(http, ("topic", path), ("topic", topic), ("data", "mercure"))
        answer = await http.post(path, json={"data": "ssehub"}, headers=PUBLISHER)
        assert answer.status_code == 200, answer.text
        ssehub_id = answer.json()["id"]
        assert [(e.id, e.data) for e in await by_path.events(2)] == [
            (mercure_id, "mercure"),
            (ssehub_id, "ssehub"),
        ]
        assert (await by_channel.next_event()).data == "mercure"
        assert [e.data for e in await by_topic.events(2)] == ["mercure", "ssehub"]
    # One history: each side resumes after the other's id.
    async with open_sse(mercure_hub.url + path, headers={"Last-Event-ID": mercure_id}) as resumed:
        assert (await resumed.next_event()).data == "ssehub"
    params = [("topic", path), ("topic", topic), ("lastEventID", mercure_id)]
    async with open_sse(mercure_hub.url + HUB, params=params) as resumed:
        assert resumed.response.headers["last-event-id"] == mercure_id
        assert (await resumed.next_event()).data == "ssehub"


# -- private updates and JWTs ------------------------------------------------------------------


async def test_private_updates_reach_only_subscribers_allowed_one_of_their_topics(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    """The spec's example: a subscriber of every book whose token grants only its own alternate
    topics gets a private book update through the alternate topic."""
    books = "https://example.com/m4/books/{id}"
    ann = token(subscribe=["https://example.com/m4/users/ann/{+rest}"])
    query = [("topic", books)]
    async with (
        open_sse(mercure_hub.url + HUB, params=query) as anonymous,
        open_sse(mercure_hub.url + HUB, params=[*query, ("authorization", ann)]) as by_query,
        open_sse(
            mercure_hub.url + HUB, params=query, headers={"Cookie": f"mercureAuthorization={ann}"}
        ) as by_cookie,
        open_sse(
            mercure_hub.url + HUB, params=query, headers={"Authorization": f"Bearer {ann}"}
        ) as by_header,
    ):
        await wait_streams(http, 4)
        await publish(
            http,
            ("topic", "https://example.com/m4/books/1"),
            ("topic", "https://example.com/m4/users/ann/books/1"),
            ("data", "ann's copy"),
            ("private", "on"),
        )
        await publish(
            http, ("topic", "https://example.com/m4/books/2"), ("data", "bob's"), ("private", "")
        )
        await publish(http, ("topic", "https://example.com/m4/books/3"), ("data", "public"))
        for stream in (by_query, by_cookie, by_header):
            assert await data_until(stream, "public") == ["ann's copy", "public"]
        assert (await anonymous.next_event()).data == "public"


async def test_the_query_token_wins_over_a_cookie_as_the_spec_says(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    topic = "https://example.com/m5/secret"
    stale = token(subscribe=[])
    fresh = token(subscribe=[topic])
    params = [("topic", topic), ("authorization", fresh)]
    cookie = {"Cookie": f"mercureAuthorization={stale}"}
    async with open_sse(mercure_hub.url + HUB, params=params, headers=cookie) as stream:
        await wait_streams(http, 1)
        await publish(http, ("topic", topic), ("data", "private"), ("private", "on"))
        assert (await stream.next_event()).data == "private"


async def test_publishing_needs_a_jwt_whose_publish_claim_matches_every_topic(
    http: httpx.AsyncClient,
) -> None:
    topic = ("topic", "https://example.com/m6/a")
    no_token = await post(http, topic, headers={})
    assert no_token.status_code == 401
    assert no_token.headers["content-type"] == "text/plain; charset=utf-8"
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    bad = await post(http, topic, headers={"Authorization": "Bearer not.a.jwt"})
    assert bad.status_code == 401
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    expired = token(publish=["*"], exp=1)
    assert (
        await post(http, topic, headers={"Authorization": f"Bearer {expired}"})
    ).status_code == 401
    narrow = {"Authorization": f"Bearer {token(publish=['https://example.com/m6/{x}'])}"}
    assert (await post(http, topic, headers=narrow)).status_code == 200
    both = await post(http, topic, ("topic", "https://example.com/other"), headers=narrow)
    assert both.status_code == 403
    assert "https://example.com/other" in both.text
    no_claim = {"Authorization": f"Bearer {token(subscribe=['*'])}"}
    assert (await post(http, topic, headers=no_claim)).status_code == 403


async def test_a_refused_publish_publishes_nothing(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    topic = "https://example.com/m7/a"
    narrow = {"Authorization": f"Bearer {token(publish=[topic])}"}
    async with open_sse(mercure_hub.url + HUB, params={"topic": "*"}) as stream:
        await wait_streams(http, 1)
        refused = await post(
            http,
            ("topic", topic),
            ("topic", "https://example.com/m7/b"),
            ("data", "no"),
            headers=narrow,
        )
        assert refused.status_code == 403
        await post(http, ("topic", topic), ("data", "yes"), headers=narrow)
        assert (await stream.next_event()).data == "yes"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        ("data=x", "application/x-www-form-urlencoded", 400, 'missing "topic"'),
        ("topic=*", "application/x-www-form-urlencoded", 400, "every topic"),
        (
            "topic=/.well-known/mercure/subscriptions/a/b",
            "application/x-www-form-urlencoded",
            400,
            "reserved",
        ),
        ("topic=a&retry=soon", "application/x-www-form-urlencoded", 400, "digits"),
        ("topic=a&id=%23x", "application/x-www-form-urlencoded", 400, '"#"'),
        ('{"topic": "a"}', "application/json", 415, "form"),
        ("topic=a&data=" + "x" * 70000, "application/x-www-form-urlencoded", 413, "limit"),
    ],
)
async def test_bad_input_gets_a_4xx_with_a_plain_text_reason(
    http: httpx.AsyncClient, body: str, content_type: str, status: int, says: str
) -> None:
    answer = await http.post(HUB, content=body, headers={**PUBLISHER, "Content-Type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert says in answer.text


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("", 'missing "topic"'),
        ("?match_urlpattern=https://example.com/(\\d%2B)", "not supported"),
        ("?topic=https://example.com/{", "selector"),
    ],
)
async def test_a_bad_subscribe_query_gets_400_in_plain_text(
    http: httpx.AsyncClient, query: str, says: str
) -> None:
    answer = await http.get(HUB + query)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert says in answer.text


async def test_a_subscriber_with_a_bad_token_gets_401(http: httpx.AsyncClient) -> None:
    answer = await http.get(HUB, params={"topic": "a", "authorization": "not.a.jwt"})
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


# -- resuming ----------------------------------------------------------------------------------


async def test_resume_with_last_event_id_names_where_the_stream_resumes(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    topic = "https://example.com/m8/a"
    first = await publish(http, ("topic", topic), ("data", "1"))
    second = await publish(http, ("topic", topic), ("data", "2"))
    await publish(http, ("topic", topic), ("data", "3"))
    url = mercure_hub.url + HUB
    async with open_sse(url, params={"topic": topic, "lastEventID": first}) as stream:
        assert stream.response.headers["last-event-id"] == first
        assert [e.data for e in await stream.events(2)] == ["2", "3"]
    # The header wins over the query parameter (an EventSource that reconnects sends both).
    headers = {"Last-Event-ID": second}
    async with open_sse(url, params={"topic": topic, "lastEventID": first}, headers=headers) as s:
        assert s.response.headers["last-event-id"] == second
        assert (await s.next_event()).data == "3"
    async with open_sse(url, params={"topic": topic, "lastEventID": "earliest"}) as stream:
        assert stream.response.headers["last-event-id"] == "earliest"
        assert [e.data for e in await stream.events(3)] == ["1", "2", "3"]
    async with open_sse(url, params={"topic": topic, "lastEventID": "urn:uuid:unknown"}) as s:
        # Not in history: everything retained is sent, from the oldest (and the gap notice).
        assert s.response.headers["last-event-id"] == "earliest"
        events = await s.events(4)
        assert events[0].event == "ssehub.gap"
        assert [e.data for e in events[1:]] == ["1", "2", "3"]


# -- configuration -----------------------------------------------------------------------------


async def test_mercure_is_on_with_a_jwt_key_and_can_be_turned_off_or_on(
    start_hub: HubFactory,
) -> None:
    no_key = start_hub()
    off = start_hub("--mercure", "off", env={"SSEHUB_JWT_SECRET": SECRET})
    on = start_hub(env={"SSEHUB_MERCURE": "on"})
    assert "mercure=off" in no_key.log() and "mercure=off" in off.log()
    assert "mercure=on" in on.log()
    async with httpx.AsyncClient(timeout=10) as client:
        for hub in (no_key, off):
            assert (await client.get(hub.url + HUB + "?topic=a")).status_code == 404
        # On without a key: an open hub (as an open ssehub), publishing from anywhere but
        # another site's page.
        answer = await client.post(on.url + HUB, data={"topic": "a", "data": "x"})
        assert answer.status_code == 200 and answer.text.startswith("urn:uuid:")
        cross = await client.post(
            on.url + HUB, data={"topic": "a"}, headers={"Origin": "http://evil.example"}
        )
        assert cross.status_code == 403
        # Any topic is a channel there: GET /events?channel= names it.
        async with open_sse(on.url + "/events", params={"channel": "a"}) as stream:
            assert stream.response.status_code == 200


async def test_require_subscriber_token_applies_to_mercure_subscribers(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--require-subscriber-token", env={"SSEHUB_JWT_SECRET": SECRET})
    async with httpx.AsyncClient(timeout=10) as client:
        anonymous = await client.get(hub.url + HUB, params={"topic": "a"})
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "text/plain; charset=utf-8"
    async with open_sse(hub.url + HUB, params={"topic": "a", "authorization": token([])}) as s:
        assert s.response.status_code == 200


async def test_a_preflight_to_the_hub_lists_its_methods_and_allows_credentials(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--cors-origin", "https://app.example", env={"SSEHUB_JWT_SECRET": SECRET})
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.options(
            hub.url + HUB,
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
    assert answer.status_code == 204
    assert answer.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    # A listed origin may send the cookie (EventSource's withCredentials).
    assert answer.headers["access-control-allow-credentials"] == "true"


# -- a real Mercure client ---------------------------------------------------------------------


async def test_the_mercure_publisher_package_publishes_to_ssehub(
    mercure_hub: HubProcess, http: httpx.AsyncClient
) -> None:
    """``mercure-publisher`` (PyPI) makes its own ``mercure.publish`` JWT and posts the form."""
    config = MercureConfig(
        hub_url=mercure_hub.url + HUB,
        publisher_jwt_key=SECRET,
        publish_topics=["https://example.com/m9/{id}"],
    )
    ann = token(subscribe=["https://example.com/m9/{id}"])
    params = [("topic", "https://example.com/m9/{id}"), ("authorization", ann)]
    async with open_sse(mercure_hub.url + HUB, params=params) as stream:
        await wait_streams(http, 1)
        async with AsyncMercurePublisher(config) as publisher:
            first = await publisher.publish(
                "https://example.com/m9/1", {"title": "Dune"}, type="book", retry=1000
            )
            second = await publisher.publish(
                ["https://example.com/m9/2", "https://example.com/m9/alt"],
                "private",
                private=True,
                id="urn:uuid:m9-2",
            )
        with MercurePublisher(config) as sync_publisher:
            third = sync_publisher.publish("https://example.com/m9/3", "from a thread")
        events = await stream.events(3)
    assert first.startswith("urn:uuid:") and second == "urn:uuid:m9-2"
    assert [(e.id, e.event, e.data) for e in events] == [
        (first, "book", '{"title": "Dune"}'),
        (second, None, "private"),
        (third, None, "from a thread"),
    ]
    assert events[0].retry == 1000


async def test_the_mercure_publisher_package_sees_refusals_as_errors(
    mercure_hub: HubProcess,
) -> None:
    from mercure_publisher.exceptions import MercurePublishError

    config = MercureConfig(
        hub_url=mercure_hub.url + HUB, publisher_jwt_key=SECRET, publish_topics=["https://a/1"]
    )
    async with AsyncMercurePublisher(config) as publisher:
        with pytest.raises(MercurePublishError) as info:
            await publisher.publish("https://b/1", "not allowed")
    assert info.value.status_code == 403


# -- on Redis: two hub processes ---------------------------------------------------------------


@pytest.mark.redis
async def test_on_redis_an_update_published_through_one_hub_reaches_mercure_subscribers_of_another(
    start_hub: HubFactory,
) -> None:
    books = "https://example.com/r1/books/{id}"
    reader = token(subscribe=["https://example.com/r1/books/1"])
    with RedisServer() as redis:
        env = {"SSEHUB_JWT_SECRET": SECRET}
        one, two = (start_hub("--redis", redis.url, env=env) for _ in range(2))
        query = [("topic", books)]
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=10) as on_one,
            httpx.AsyncClient(base_url=two.url, timeout=10) as on_two,
            open_sse(two.url + HUB, params=[*query, ("authorization", reader)]) as member,
            open_sse(two.url + HUB, params=query) as anonymous,
            open_sse(two.url + "/events", params={"channel": books}) as reader_of_events,
        ):
            await wait_streams(on_two, 3)
            first = await publish(
                on_one, ("topic", "https://example.com/r1/books/1"), ("data", "1")
            )
            await publish(
                on_one,
                ("topic", "https://example.com/r1/books/1"),
                ("data", "private"),
                ("private", "on"),
            )
            await publish(on_one, ("topic", "https://example.com/r1/books/2"), ("data", "end"))
            assert await data_until(member, "end") == ["1", "private", "end"]
            assert await data_until(anonymous, "end") == ["1", "end"]
            assert await data_until(reader_of_events, "end") == ["1", "end"]
            assert (await on_two.get("/healthz")).json()["clients"] == 3
        # Resuming on the first hub, after an id the hub made (urn:uuid:...), and from earliest.
        url = one.url + HUB
        params = [*query, ("authorization", reader), ("lastEventID", first)]
        async with open_sse(url, params=params) as resumed:
            assert resumed.response.headers["last-event-id"] == first
            assert await data_until(resumed, "end") == ["private", "end"]
        async with open_sse(url, params=[*query, ("lastEventID", "earliest")]) as resumed:
            assert resumed.response.headers["last-event-id"] == "earliest"
            assert await data_until(resumed, "end") == ["1", "end"]


# -- the subscriptions API and subscription events (with --presence) ---------------------------

SUBSCRIPTIONS = HUB + "/subscriptions"
WATCH = SUBSCRIPTIONS + "{/topic}{/subscriber}"


async def test_subscription_events_and_the_subscriptions_api_follow_each_subscriber(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--presence", env={"SSEHUB_JWT_SECRET": SECRET})
    watcher = token(subscribe=[WATCH])
    grant = {"subscribe": ["https://example.com/s1/{x}"], "payload": {"name": "Ann"}}
    ann = jwt.encode({"mercure": grant}, SECRET, algorithm="HS256")
    books, feed = "https://example.com/s1/books/{id}", "https://example.com/s1/feed"
    watch_query = [("topic", WATCH), ("authorization", watcher)]
    async with (
        httpx.AsyncClient(base_url=hub.url, timeout=10) as http,
        open_sse(hub.url + HUB, params=watch_query) as events,
    ):
        own = await events.next_event()  # the watcher's own subscription comes first
        assert own.id is not None and '"topic":"' + WATCH in own.data.replace(" ", "")
        listed = await http.get(SUBSCRIPTIONS, params={"authorization": watcher})
        assert listed.status_code == 200, listed.text
        cursor = listed.json()["lastEventID"]
        assert cursor == own.id
        params = [("topic", books), ("topic", feed), ("authorization", ann)]
        async with open_sse(hub.url + HUB, params=params):
            joined = [json_of(e.data) for e in await events.events(2)]
            assert [j["topic"] for j in joined] == [books, feed]
            subscriber = joined[0]["subscriber"]
            assert subscriber.startswith("urn:uuid:")
            for document in joined:
                assert document["@context"] == "https://mercure.rocks/"
                assert document["type"] == "Subscription" and document["active"] is True
                assert document["payload"] == {"name": "Ann"}
                assert document["id"] == (
                    f"{SUBSCRIPTIONS}/{quote(document['topic'], safe='')}/"
                    f"{quote(subscriber, safe='')}"
                )
            # The collection, one selector's, and one subscription.
            everything = (await http.get(SUBSCRIPTIONS, params={"authorization": watcher})).json()
            assert everything["@context"] == "https://mercure.rocks/"
            assert everything["type"] == "Subscriptions"
            assert everything["id"] == SUBSCRIPTIONS
            mine = [s for s in everything["subscriptions"] if s["subscriber"] == subscriber]
            assert sorted(s["topic"] for s in mine) == [books, feed]
            assert all("@context" not in s for s in everything["subscriptions"])
            url = f"{SUBSCRIPTIONS}/{quote(books, safe='')}"
            of_books = (await http.get(url, params={"authorization": watcher})).json()
            assert of_books["id"] == url
            assert [s["subscriber"] for s in of_books["subscriptions"]] == [subscriber]
            one = await http.get(
                f"{url}/{quote(subscriber, safe='')}", params={"authorization": watcher}
            )
            assert one.headers["content-type"] == "application/ld+json"
            assert {k: v for k, v in one.json().items() if k != "lastEventID"} == joined[0]
            gone = await http.get(f"{url}/urn%3Auuid%3Anobody", params={"authorization": watcher})
            assert gone.status_code == 404
            assert gone.headers["content-type"] == "text/plain; charset=utf-8"
        left = [json_of(e.data) for e in await events.events(2)]
        assert [(j["topic"], j["active"]) for j in left] == [(books, False), (feed, False)]
    # The events are kept: a watcher that resumes from the listing's cursor gets every change.
    again = [*watch_query, ("lastEventID", cursor)]
    async with open_sse(hub.url + HUB, params=again) as resumed:
        changes = [json_of(e.data) for e in await resumed.events(4)]
        assert [(c["topic"], c["active"]) for c in changes] == [
            (books, True),
            (feed, True),
            (books, False),
            (feed, False),
        ]


async def test_the_subscriptions_api_needs_a_token_whose_subscribe_claim_matches_its_url(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--presence", env={"SSEHUB_JWT_SECRET": SECRET})
    topic = quote("https://example.com/s2/a", safe="")
    async with httpx.AsyncClient(base_url=hub.url, timeout=10) as http:
        anonymous = await http.get(SUBSCRIPTIONS)
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "text/plain; charset=utf-8"
        other = token(subscribe=["https://example.com/{x}"])
        assert (await http.get(SUBSCRIPTIONS, params={"authorization": other})).status_code == 403
        narrow = {"Authorization": f"Bearer {token(subscribe=[SUBSCRIPTIONS + '/' + topic])}"}
        assert (await http.get(f"{SUBSCRIPTIONS}/{topic}", headers=narrow)).status_code == 200
        assert (await http.get(SUBSCRIPTIONS, headers=narrow)).status_code == 403
        bad = await http.get(SUBSCRIPTIONS, params={"authorization": "not.a.jwt"})
        assert bad.status_code == 401
        assert (await http.get(SUBSCRIPTIONS + "/a/b/c", headers=narrow)).status_code == 404
    without = start_hub(env={"SSEHUB_JWT_SECRET": SECRET})  # no --presence: no API
    async with httpx.AsyncClient(base_url=without.url, timeout=10) as http:
        assert (
            await http.get(SUBSCRIPTIONS, params={"authorization": token(["*"])})
        ).status_code == 404


def json_of(text: str) -> Any:
    return json.loads(text)


@pytest.mark.redis
async def test_on_redis_the_subscriptions_api_and_events_cover_every_hub(
    start_hub: HubFactory,
) -> None:
    watcher = token(subscribe=[WATCH])
    topic = "https://example.com/r2/feed"
    with RedisServer() as redis:
        env = {"SSEHUB_JWT_SECRET": SECRET}
        one, two = (start_hub("--redis", redis.url, "--presence", env=env) for _ in range(2))
        watch_query = [("topic", WATCH), ("authorization", watcher)]
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=10) as on_one,
            open_sse(one.url + HUB, params=watch_query) as events,
        ):
            await events.next_event()  # its own subscription
            async with open_sse(two.url + HUB, params={"topic": topic}):
                joined = json_of((await events.next_event()).data)
                assert (joined["topic"], joined["active"]) == (topic, True)
                url = f"{SUBSCRIPTIONS}/{quote(topic, safe='')}"
                for _ in range(100):  # hub two shares its list within a second
                    listed = await on_one.get(url, params={"authorization": watcher})
                    found = [s["subscriber"] for s in listed.json()["subscriptions"]]
                    if found:
                        break
                    await asyncio.sleep(0.05)
                assert found == [joined["subscriber"]]
            left = json_of((await events.next_event()).data)
            assert (left["subscriber"], left["active"]) == (joined["subscriber"], False)
