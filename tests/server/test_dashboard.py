"""The dashboard in a real headless Chromium: live channels, the publish form, EventSource."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests._support.browser import CHROMIUM, CHROMIUM_ARGS
from tests._support.redis_server import RedisServer
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory, HubProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def test_dashboard_shows_channels_live_and_publishes_to_eventsource(
    hub: HubProcess, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    await expect(page.locator("#status")).to_have_text("live")

    # A client subscribes with curl-like httpx: its channel appears, with its client count.
    async with open_sse(hub.url + "/events/dash-watched"):
        row = page.locator('#channels tbody tr[data-channel="/events/dash-watched"]')
        await expect(row).to_be_visible(timeout=5000)
        await expect(row.locator("td").nth(1)).to_have_text("1")

        # A second page subscribes with the browser's own EventSource.
        subscriber = await browser.new_page()
        await subscriber.goto(hub.url + "/healthz")  # any page of the hub's origin
        await subscriber.evaluate(
            """() => {
                window.received = [];
                const source = new EventSource("/events/dash-room");
                source.addEventListener("note", (e) => {
                    window.received.push([e.data, e.lastEventId]);
                });
                window.opened = new Promise((resolve) => { source.onopen = resolve; });
            }"""
        )
        await subscriber.evaluate("() => window.opened")
        room = page.locator('#channels tbody tr[data-channel="/events/dash-room"]')
        await expect(room).to_be_visible(timeout=5000)

        # Publish from the dashboard's form.
        await page.fill("#pub-channel", "/events/dash-room")
        await page.fill("#pub-data", "hello from the form")
        await page.fill("#pub-event", "note")
        await page.click("#pub-submit")
        await expect(page.locator("#pub-result")).to_contain_text("to 1 client(s)")
        await subscriber.wait_for_function("() => window.received.length === 1", timeout=5000)
        data, last_id = await subscriber.evaluate("() => window.received[0]")
        assert data == "hello from the form"
        assert last_id

    # The client left: its channel disappears from the live list.
    await expect(
        page.locator('#channels tbody tr[data-channel="/events/dash-watched"]')
    ).to_have_count(0, timeout=5000)


async def test_dashboard_live_view_shows_a_channels_events(
    hub: HubProcess, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    await page.fill("#watch-channel", "/events/dash-live")
    await page.click("#watch-button")
    await expect(page.locator("#watch-status")).to_have_text("watching /events/dash-live")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        await client.post("/events/dash-live", json={"data": "line 1\nline 2", "event": "custom"})
    item = page.locator("#watch-log li").first
    await expect(item.locator(".data")).to_have_text("line 1\nline 2", timeout=5000)
    await expect(item.locator(".meta")).to_contain_text("custom")


async def test_with_both_tokens_the_view_token_shows_the_hub_and_the_publish_token_publishes(
    start_hub: HubFactory, browser: Browser
) -> None:
    hub = start_hub("--subscribe-token", "view-s3cret", "--publish-token", "pub-s3cret")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        auth = {"Authorization": "Bearer pub-s3cret"}
        published = await client.post("/events/tok-history", content="kept", headers=auth)
        assert published.status_code == 200
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    # Without the token the page says what it needs, and shows no numbers.
    await expect(page.locator("#status")).to_have_text("token needed to view")
    await expect(page.locator("#down")).to_contain_text("subscribe token")
    await expect(page.locator("#total-clients")).to_have_text("—")
    await expect(page.locator("#channels tbody tr")).to_have_count(0)

    await page.fill("#view-token", "view-s3cret")
    await page.click("#view-apply")
    await expect(page.locator("#status")).to_have_text("live")
    row = page.locator('#channels tbody tr[data-channel="/events/tok-history"]')
    await expect(row).to_be_visible(timeout=5000)

    # The view token does not publish: the form's own token field does.
    await page.fill("#pub-channel", "/events/tok-history")
    await page.fill("#pub-data", "from the form")
    await page.click("#pub-submit")
    await expect(page.locator("#pub-result")).to_contain_text("401")
    await page.fill("#pub-token", "pub-s3cret")
    await page.click("#pub-submit")
    await expect(page.locator("#pub-result")).to_contain_text("published id")
    await expect(row.locator("td").nth(6)).to_have_text("2", timeout=5000)


async def test_admin_token_views_while_the_subscribe_token_is_refused(
    start_hub: HubFactory, browser: Browser
) -> None:
    hub = start_hub("--subscribe-token", "sub-t", "--admin-token", "admin-t")
    page = await browser.new_page()
    await page.goto(hub.url + "/?token=sub-t")
    await expect(page.locator("#status")).to_have_text("wrong token to view")
    await page.fill("#view-token", "admin-t")
    await page.press("#view-token", "Enter")
    await expect(page.locator("#status")).to_have_text("live")


async def test_watch_switches_channel_and_is_not_counted_as_a_client(
    hub: HubProcess, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    await page.fill("#watch-channel", "/events/sw-one")
    await page.click("#watch-button")
    await expect(page.locator("#watch-status")).to_have_text("watching /events/sw-one")
    await expect(page.locator("#watch-button")).to_have_text("Stop")
    # Another channel in the field: the button switches to it instead of stopping.
    await page.fill("#watch-channel", "/events/sw-two")
    await expect(page.locator("#watch-button")).to_have_text("Watch")
    await page.click("#watch-button")
    await expect(page.locator("#watch-status")).to_have_text("watching /events/sw-two")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        answer = (await client.post("/events/sw-two", content="seen")).json()
        await client.post("/events/sw-one", content="not watched any more")
        # The dashboard's watch is nobody's client.
        assert answer["clients"] == 0
        listed = (await client.get("/channels")).json()
        assert listed["clients"] == 0
        assert not [c for c in listed["channels"] if c["channel"].startswith("/events/sw-")]
    await expect(page.locator("#watch-log li .data")).to_have_text(["seen"], timeout=5000)
    row = page.locator('#channels tbody tr[data-channel="/events/sw-two"]')
    await expect(row.locator("td").nth(1)).to_have_text("0", timeout=5000)
    await page.click("#watch-button")
    await expect(page.locator("#watch-button")).to_have_text("Watch")


async def test_history_only_channels_are_listed_with_their_history_and_filtered(
    hub: HubProcess, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for n in range(3):
            await client.post("/events/kept-apple", content=f"event {n}")
        await client.post("/events/kept-pear", content="x" * 1000)
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    apple = page.locator('#channels tbody tr[data-channel="/events/kept-apple"]')
    pear = page.locator('#channels tbody tr[data-channel="/events/kept-pear"]')
    await expect(apple.locator("td").nth(6)).to_have_text("3")
    await expect(pear.locator("td").nth(6)).to_have_text("1")
    await expect(pear.locator("td").nth(7)).to_contain_text("KiB")
    await expect(page.locator("#backend")).to_have_text("memory ok")
    await expect(page.locator("#version")).not_to_have_text("—")
    await expect(page.locator("#uptime")).to_contain_text("s")
    await expect(page.locator("#workers tbody tr")).to_have_count(1)
    await page.fill("#filter", "apple")
    await expect(apple).to_be_visible()
    await expect(pear).to_have_count(0)


async def test_a_hub_that_goes_down_is_shown_down_with_no_numbers(
    start_hub: HubFactory, browser: Browser
) -> None:
    hub = start_hub()
    async with httpx.AsyncClient(base_url=hub.url) as client:
        await client.post("/events/down-kept", content="x")
    page = await browser.new_page()
    await page.goto(hub.url + "/")
    await expect(page.locator("#total-channels")).to_have_text("1")
    assert hub.stop() == 0
    await expect(page.locator("#status")).to_have_text("hub down", timeout=10000)
    await expect(page.locator("#total-channels")).to_have_text("—")
    await expect(page.locator("#channels tbody tr")).to_have_count(0)
    await expect(page.locator("#down")).to_be_visible()


@pytest.mark.redis
async def test_with_workers_the_dashboard_lists_every_worker_and_sums_them(
    start_hub: HubFactory, browser: Browser
) -> None:
    with RedisServer() as redis:
        hub = start_hub("--redis", redis.url, "--workers", "2")
        page = await browser.new_page()
        await page.goto(hub.url + "/")
        await expect(page.locator("#workers tbody tr")).to_have_count(2, timeout=10000)
        await expect(page.locator("#workers-title")).to_have_text("Workers (2)")
        await expect(page.locator("#backend")).to_have_text("redis ok")
        # The channel list is the page's own worker's, and says so.
        await expect(page.locator("#channels-title")).to_contain_text("Channels on worker")
        async with open_sse(hub.url + "/events/w-dash"), open_sse(hub.url + "/events/w-dash"):
            # Two streams, wherever the kernel put them: the header adds up both workers.
            await expect(page.locator("#total-clients")).to_have_text("2", timeout=10000)
        assert hub.stop() == 0, hub.log()
