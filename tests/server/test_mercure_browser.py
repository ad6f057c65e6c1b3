"""A Mercure web app in headless Chromium against ``ssehub serve``: a page of the hub's origin
subscribes with ``EventSource`` to topic selectors (exact, several, URI, URI template,
non-matching, private with and without a JWT, the JWT as the ``mercureAuthorization`` cookie or
the ``authorization`` query parameter), publishes form-encoded updates with ``fetch`` and a
publisher JWT, and resumes with ``lastEventID``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests._support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.server.hub_process import HubFactory, HubProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(60)]

SECRET = "a-browser-mercure-secret-of-32-bytes-or-more"
BOOKS = "https://example.com/books/{id}"


def token(**grant: Any) -> str:
    return jwt.encode({"mercure": grant}, SECRET, algorithm="HS256")


PUBLISHER = token(publish=["*"])
READER = token(subscribe=["https://example.com/users/ann/{+rest}", "https://example.com/books/1"])

# Opens one EventSource per named query, records every message, resolves once all are open.
_SUBSCRIBE = """async (subscriptions) => {
    window.received = window.received || {};
    window.sources = window.sources || {};
    const opened = [];
    for (const [name, query] of Object.entries(subscriptions)) {
        const url = new URL("/.well-known/mercure", location.origin);
        for (const [key, value] of query) url.searchParams.append(key, value);
        const source = new EventSource(url);
        window.received[name] = [];
        window.sources[name] = source;
        source.onmessage = (e) => window.received[name].push([e.lastEventId, e.data]);
        source.addEventListener("book", (e) => window.received[name].push([e.lastEventId, e.data]));
        opened.push(new Promise((resolve, reject) => {
            source.onopen = resolve;
            source.onerror = () => reject(new Error(name + " failed to open"));
        }));
    }
    await Promise.all(opened);
}"""

# Publishes one form-encoded update as a Mercure web app does, answering the hub's text.
_PUBLISH = """async ([token, fields]) => {
    const answer = await fetch("/.well-known/mercure", {
        method: "POST",
        headers: {Authorization: "Bearer " + token},
        body: new URLSearchParams(fields),
    });
    return [answer.status, answer.headers.get("content-type"), await answer.text()];
}"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def page_of(browser: Browser, hub: HubProcess, cookie: str | None = None) -> Page:
    context: BrowserContext = await browser.new_context()
    if cookie is not None:
        await context.add_cookies(
            [{"name": "mercureAuthorization", "value": cookie, "url": hub.url, "httpOnly": True}]
        )
    page = await context.new_page()
    await page.goto(hub.url + "/healthz")  # any page of the hub's origin: no CORS needed
    return page


async def received(page: Page, name: str, count: int) -> list[list[str]]:
    await page.wait_for_function(
        "([name, count]) => window.received[name].length >= count",
        arg=[name, count],
        timeout=10000,
    )
    events: list[list[str]] = await page.evaluate("(name) => window.received[name]", name)
    return events


async def test_a_mercure_web_app_in_chromium(start_hub: HubFactory, browser: Browser) -> None:
    hub = start_hub(env={"SSEHUB_JWT_SECRET": SECRET})
    # Chromium opens at most 6 connections to one origin per profile: the streams are spread
    # over three (browser contexts), and the publishing page keeps one free for fetch.
    anonymous = await page_of(browser, hub)
    publisher = await page_of(browser, hub)
    with_cookie = await page_of(browser, hub, cookie=READER)
    await anonymous.evaluate(
        _SUBSCRIBE,
        {
            "exact": [["topic", "chat"]],
            "several": [["topic", "chat"], ["topic", "https://example.com/books/2"]],
            "uri": [["topic", "https://example.com/books/1"]],
            "template": [["topic", BOOKS]],
        },
    )
    await publisher.evaluate(
        _SUBSCRIBE,
        {
            "nothing": [["topic", "https://example.com/authors/{id}"]],
            "query_jwt": [["topic", BOOKS], ["authorization", READER]],
            # The newer draft's URL pattern, for what ssehub translates to a URI template.
            "url_pattern": [["match_urlpattern", "https://example.com/books/:id"]],
        },
    )
    await with_cookie.evaluate(_SUBSCRIBE, {"cookie_jwt": [["topic", BOOKS]]})

    updates = [
        [["topic", "chat"], ["data", "hello"]],
        [["topic", "https://example.com/books/1"], ["data", "book 1"], ["type", "book"]],
        [["topic", "https://example.com/books/2"], ["data", "book 2"]],
        # Private, readable by the JWT through its canonical topic, then through an alternate
        # one, then by no one who subscribes here.
        [["topic", "https://example.com/books/1"], ["data", "private 1"], ["private", "on"]],
        [
            ["topic", "https://example.com/books/3"],
            ["topic", "https://example.com/users/ann/books/3"],
            ["data", "private 3"],
            ["private", "on"],
        ],
        [["topic", "https://example.com/books/4"], ["data", "private 4"], ["private", "on"]],
        [["topic", "https://example.com/books/5"], ["data", "last"]],
    ]
    ids = []
    for fields in updates:
        status, content_type, text = await publisher.evaluate(_PUBLISH, [PUBLISHER, fields])
        assert (status, content_type) == (200, "text/plain; charset=utf-8"), text
        ids.append(text)
    assert all(event_id.startswith("urn:uuid:") for event_id in ids)
    refused = await publisher.evaluate(_PUBLISH, [READER, [["topic", "chat"], ["data", "no"]]])
    assert refused[0] == 403

    hello, book1, book2, private1, private3, _, last = (
        [event_id, dict(fields)["data"]] for event_id, fields in zip(ids, updates, strict=True)
    )
    assert await received(anonymous, "exact", 1) == [hello]
    assert await received(anonymous, "several", 2) == [hello, book2]
    assert await received(anonymous, "uri", 1) == [book1]
    public_books = [book1, book2, last]
    assert await received(anonymous, "template", 3) == public_books
    assert await received(publisher, "url_pattern", 3) == public_books
    allowed = [book1, book2, private1, private3, last]
    assert await received(publisher, "query_jwt", 5) == allowed
    assert await received(with_cookie, "cookie_jwt", 5) == allowed
    # Every stream saw "last", the newest update: nothing else is still on its way.
    assert await received(anonymous, "template", 3) == public_books
    assert await received(publisher, "nothing", 0) == []

    await anonymous.evaluate("() => Object.values(window.sources).forEach((s) => s.close())")
    # A page that comes back later resumes after the last update it saw, with lastEventID.
    await anonymous.evaluate(_SUBSCRIBE, {"resumed": [["topic", BOOKS], ["lastEventID", ids[1]]]})
    assert await received(anonymous, "resumed", 2) == [book2, last]
    # And with earliest, from the oldest update the hub retains.
    await anonymous.evaluate(
        _SUBSCRIBE, {"earliest": [["topic", BOOKS], ["lastEventID", "earliest"]]}
    )
    assert await received(anonymous, "earliest", 3) == public_books
