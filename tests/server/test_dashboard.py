"""The dashboard in a real headless Chromium: live channels, the publish form, EventSource."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests._support.browser import CHROMIUM, CHROMIUM_ARGS
from tests._support.sse import open_sse
from tests.server.hub_process import HubProcess

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
