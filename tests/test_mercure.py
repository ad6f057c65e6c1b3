"""The Mercure protocol as data (`ssehub.mercure`): publish forms, subscribe queries, resuming,
discovery; and the hub's ``earliest`` resume, without a socket."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from ssehub import Hub, Message
from ssehub.mercure import (
    EARLIEST_ID,
    HUB_PATH,
    MAX_TOPICS,
    InvalidUpdate,
    Update,
    addresses_hub,
    last_event_id,
    link_header,
    new_id,
    parse_update,
    pattern_template,
    resume_header,
    subscribe_topics,
)
from ssehub.resume import EARLIEST, GAP_EVENT


def form(*fields: tuple[str, str]) -> bytes:
    return urlencode(fields).encode()


def refused(body: bytes, status: int = 400) -> str:
    with pytest.raises(InvalidUpdate) as info:
        parse_update(body)
    assert info.value.status == status
    return info.value.message


# -- publishing --------------------------------------------------------------------------------


def test_a_form_with_every_field_is_one_update_whose_first_topic_is_canonical() -> None:
    update = parse_update(
        form(
            ("topic", "https://example.com/books/1"),
            ("topic", "https://example.com/users/ann/books/1"),
            ("topic", "https://example.com/books/1"),  # a duplicate counts once
            ("data", "line 1\nline 2"),
            ("private", "on"),
            ("id", "urn:uuid:1"),
            ("type", "book"),
            ("retry", "1500"),
            ("unknown", "ignored"),
        )
    )
    assert update == Update(
        ("https://example.com/books/1", "https://example.com/users/ann/books/1"),
        "line 1\nline 2",
        True,
        "urn:uuid:1",
        "book",
        1500,
    )
    encoded = update.message("urn:uuid:1").encode()
    assert encoded == b"id: urn:uuid:1\nretry: 1500\nevent: book\ndata: line 1\ndata: line 2\n\n"


def test_private_is_its_presence_whatever_its_value_and_absent_fields_are_defaults() -> None:
    assert parse_update(b"topic=a&private").private
    assert parse_update(b"topic=a&private=").private
    assert parse_update(b"topic=a&private=off").private
    update = parse_update(b"topic=a&id=&type=&retry=")
    assert update == Update(("a",), "", False, None, None, None)


def test_a_field_given_twice_counts_by_its_first_value() -> None:
    assert parse_update(b"topic=a&data=first&data=second").data == "first"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"data=x", 'missing "topic"'),
        (b"topic=", "may not be empty"),
        (b"topic=*", "every topic"),
        (b"topic=a%0Ab", "control character"),
        (b"topic=/.well-known/mercure/subscriptions/x/y", "reserved"),
        (b"topic=https://hub.example/.well-known/%6Dercure/x", "reserved"),
        (b"topic=/a/../.well-known/mercure", "reserved"),
        (b"topic=a&id=%23fragment", 'start with "#"'),
        (b"topic=a&id=earliest", "reserved"),
        (b"topic=a&id=%20padded", "cannot be resumed from"),
        (b"topic=a&id=a%00b", "cannot be resumed from"),
        (b"topic=a&type=a%0Db", "control character"),
        (b"topic=a&retry=-1", "digits only"),
        (b"topic=a&retry=1.5", "digits only"),
        (b"topic=a&retry=%EF%BC%91", "digits only"),  # a full-width digit is not ASCII
        (b"topic=%FF", "not UTF-8"),
        (b"topic=a&data=\xff", "not UTF-8"),
    ],
)
def test_a_bad_form_is_refused_with_400_saying_what_is_wrong(body: bytes, says: str) -> None:
    assert says in refused(body)


def test_too_many_topics_or_too_long_a_one_is_413() -> None:
    many = form(*[("topic", f"t{i}") for i in range(MAX_TOPICS + 1)])
    assert "at most" in refused(many, 413)
    assert "at most" in refused(form(("topic", "x" * 1025)), 413)
    assert len(parse_update(form(*[("topic", f"t{i}") for i in range(MAX_TOPICS)])).topics) == 64


def test_the_hubs_own_channels_may_be_reserved() -> None:
    with pytest.raises(InvalidUpdate, match="reserved"):
        parse_update(b"topic=/subscriptions", reserved=("/subscriptions",))


def test_the_hub_namespace_is_found_after_resolving_the_topic_as_a_url() -> None:
    assert addresses_hub(HUB_PATH)
    assert addresses_hub("https://example.com/.well-known/mercure/subscriptions/a/b")
    assert addresses_hub("/.well-known/./mercure")
    assert addresses_hub("/.well-known/%6d%65rcure/x")
    assert addresses_hub("/.well-known/mercurex")  # held anywhere, as the reference hub says
    assert not addresses_hub("https://example.com/books/1")
    assert not addresses_hub("/.well-known/%2Fmercure")  # an encoded slash is not a slash


def test_ids_the_hub_makes_are_random_uuid_urns() -> None:
    first, second = new_id(), new_id()
    assert first.startswith("urn:uuid:") and len(first) == len("urn:uuid:") + 36
    assert first != second


# -- subscribing -------------------------------------------------------------------------------


def test_topics_come_from_topic_and_the_newer_drafts_exact_matchers() -> None:
    params = [
        ("topic", "https://example.com/books/{id}"),
        ("match", "https://example.com/foo"),
        ("match_exact", "*"),
        ("lastEventID", "x"),
        ("authorization", "t"),
    ]
    assert subscribe_topics(params) == [
        "https://example.com/books/{id}",
        "https://example.com/foo",
        "*",
    ]


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ([], 'missing "topic"'),
        ([("lastEventID", "x")], 'missing "topic"'),
        ([("match_urlpattern", r"https://example.com/books/(\d+)")], "not supported"),
        ([("topic", "a"), ("matchURLPattern", "/b/:id?")], "not supported"),
        ([("match_urlpattern", "/b/{:id}")], "not supported"),
        ([("match_urlpattern", "")], "empty"),
        ([("match_type", "exact")], "not supported"),
        ([("MATCHES", "a")], "not supported"),
        ([("match", "https://example.com/{x}")], "braces"),
        ([("match", "")], "empty"),
    ],
)
def test_a_subscribe_query_without_a_usable_topic_is_refused(
    params: list[tuple[str, str]], says: str
) -> None:
    with pytest.raises(InvalidUpdate) as info:
        subscribe_topics(params)
    assert info.value.status == 400
    assert says in info.value.message


def test_url_patterns_of_named_groups_and_wildcards_become_uri_templates() -> None:
    assert pattern_template("https://example.com/books/:id") == "https://example.com/books/{id}"
    assert pattern_template("/users/:user/books/*") == "/users/{user}/books/{+any2}"
    assert pattern_template("https://example.com/:a-:b") == "https://example.com/{a}-{b}"
    assert pattern_template("*") == "*"
    params = [("match_urlpattern", "https://example.com/books/:id"), ("matchURLPattern", "/x/*")]
    assert subscribe_topics(params) == ["https://example.com/books/{id}", "/x/{+any1}"]


def test_the_header_wins_over_the_query_and_earliest_is_the_hubs_earliest() -> None:
    assert last_event_id({"last-event-id": "h"}, {"lastEventID": "q"}) == "h"
    assert last_event_id({}, {"lastEventID": "q", "lastEventId": "r"}) == "q"
    assert last_event_id({}, {"lastEventId": "r"}) == "r"
    assert last_event_id({}, {"last_event_id": "s"}) == "s"
    assert last_event_id({}, {"Last-Event-ID": "legacy"}) == "legacy"
    assert last_event_id({}, {}) is None
    assert last_event_id({}, {"lastEventID": "earliest"}) == EARLIEST
    assert last_event_id({"last-event-id": "earliest"}, {}) == EARLIEST


def test_the_resume_header_names_the_event_before_the_first_one_sent() -> None:
    assert resume_header(None, None) is None
    assert resume_header("urn:uuid:1", True) == "urn:uuid:1"
    assert resume_header("urn:uuid:gone", False) == EARLIEST_ID
    assert resume_header(EARLIEST, True) == EARLIEST_ID


# -- discovery ---------------------------------------------------------------------------------


def test_the_link_header_names_the_hub_and_optionally_the_topic() -> None:
    hub = "https://hub.example.com"
    assert link_header(hub) == '<https://hub.example.com/.well-known/mercure>; rel="mercure"'
    assert link_header(hub + HUB_PATH) == link_header(hub + "/")
    assert link_header(hub, "https://example.com/books/1", last_event_id="urn:uuid:9") == (
        '<https://hub.example.com/.well-known/mercure>; rel="mercure"; '
        'last-event-id="urn:uuid:9", <https://example.com/books/1>; rel="self"'
    )
    assert link_header(hub, content_type="application/merge-patch+json").endswith(
        '; content-type="application/merge-patch+json"'
    )
    for bad in ("https://hub/\r\nSet-Cookie: x", "https://hub/<x>"):
        with pytest.raises(ValueError, match="Link target"):
            link_header(bad)
    with pytest.raises(ValueError, match="attribute"):
        link_header(hub, last_event_id='a"b')


# -- the hub resumes from the earliest retained event ------------------------------------------


async def test_earliest_replays_every_retained_event_without_a_gap_notice() -> None:
    hub = Hub(end_streams_on_signal=False, keepalive=None)
    try:
        await hub.publish("/a", Message("one"))
        await hub.publish(["/a", "/b"], Message("two"))
        await hub.publish("/b", Message("three", id="mine"))
        for selection in ("/a", ["/a", "/b"], ["/{x}"]):
            sub = await hub.subscribe(selection, last_event_id=EARLIEST)
            chunk = sub.take() or b""
            assert GAP_EVENT.encode() not in chunk
            assert sub.resumed is True
            hub.unsubscribe(sub)
        sub = await hub.subscribe(["/a", "/b"], last_event_id=EARLIEST)
        text = (sub.take() or b"").decode()
        assert [line for line in text.splitlines() if line.startswith("data")] == [
            "data: one",
            "data: two",
            "data: three",
        ]
        hub.unsubscribe(sub)
        gone = await hub.subscribe("/a", last_event_id="never-published")
        assert gone.resumed is False
        assert GAP_EVENT.encode() in (gone.take() or b"")
        hub.unsubscribe(gone)
        fresh = await hub.subscribe("/a")
        assert fresh.resumed is None
    finally:
        await hub.shutdown()


async def test_no_event_can_carry_the_earliest_sentinel_as_its_id() -> None:
    hub = Hub(end_streams_on_signal=False, keepalive=None)
    try:
        with pytest.raises(ValueError, match="cannot be resumed from"):
            await hub.publish("/a", Message("x", id=EARLIEST))
    finally:
        await hub.shutdown()


# -- the subscriptions API's documents ---------------------------------------------------------


def test_a_subscription_is_named_by_its_selector_and_subscriber_percent_encoded() -> None:
    from ssehub.mercure import subscription, subscription_topic, subscriptions

    topic, who = "https://example.com/{selector}", "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
    expected = (
        "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/"
        "urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
    )
    assert subscription_topic(topic, who) == expected  # the spec's own example
    assert subscription(topic, who, payload={"foo": "bar"}) == {
        "id": expected,
        "type": "Subscription",
        "topic": topic,
        "subscriber": who,
        "active": True,
        "payload": {"foo": "bar"},
    }
    one = subscription(topic, who, active=False, context=True, last_event_id="x")
    assert one["@context"] == "https://mercure.rocks/" and one["lastEventID"] == "x"
    assert "payload" not in one and one["active"] is False
    assert subscriptions("/.well-known/mercure/subscriptions", "earliest", [one]) == {
        "@context": "https://mercure.rocks/",
        "id": "/.well-known/mercure/subscriptions",
        "type": "Subscriptions",
        "lastEventID": "earliest",
        "subscriptions": [one],
    }
