"""A headless Chromium page whose own ``EventSource`` objects record what they receive.

Usage::

    async with eventsource_page(hub.url) as page:      # a page of that origin: no CORS needed
        await page.open("anon", hub.url + "/events?channel=*")
        events = await page.wait_for("anon", "end")     # up to the event whose data is "end"

The page keeps each source's events (type, id, data), opens and errors in plain arrays that the
test reads with `EventSourcePage.record`; nothing crosses to Python per event, so a source can
take hundreds of events quickly. `ssehub.gap` notices are recorded as events of that type.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Page, async_playwright

from tests._support.browser import CHROMIUM, CHROMIUM_ARGS

_INSTALL = """
() => {
  window.__records = {};
  window.__sources = {};
  window.__record = (name) => {
    const record = {events: [], opens: 0, errors: [], urls: []};
    window.__records[name] = record;
    return record;
  };
  window.__listen = (source, record) => {
    const add = (event) => record.events.push([event.type, event.lastEventId, event.data]);
    source.addEventListener("message", add);
    source.addEventListener("ssehub.gap", add);
    source.addEventListener("open", () => { record.opens += 1; });
    source.addEventListener("error",
      () => record.errors.push({at: Date.now() / 1000, readyState: source.readyState}));
  };
  window.__open = (name, url) => {
    const record = window.__record(name);
    record.urls.push(url);
    const source = new EventSource(url);
    window.__sources[name] = source;
    window.__listen(source, record);
  };
  // As the README's example page: on error (the hub ended the stream at the token's exp, or
  // refused it) close, then reconnect with a fresh token from the last id seen.
  window.__openRefreshing = (name, url, delayMs) => {
    const record = window.__record(name);
    let lastEventId = null;
    const connect = async () => {
      const query = new URL(url, location.href);
      query.searchParams.set("authorization", await window.__freshToken());
      if (lastEventId !== null) query.searchParams.set("lastEventId", lastEventId);
      record.urls.push(query.href);
      const source = new EventSource(query.href);
      window.__sources[name] = source;
      window.__listen(source, record);
      source.addEventListener("message", (event) => { lastEventId = event.lastEventId; });
      source.addEventListener("error", () => { source.close(); setTimeout(connect, delayMs); });
    };
    connect();
  };
}
"""


@dataclass(frozen=True)
class Received:
    """One event as the page's EventSource dispatched it: its type, last event id and data."""

    type: str
    id: str
    data: str


@dataclass
class Record:
    """What one source of the page has seen so far."""

    events: list[Received] = field(default_factory=list)
    opens: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    """One per ``error`` event: ``at`` (UNIX time, s) and the source's ``readyState`` then."""
    urls: list[str] = field(default_factory=list)
    """The URL of each connection the page opened itself (not the browser's own retries)."""


class EventSourcePage:
    """A Chromium page with named EventSources; see the module docstring."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def open(self, name: str, url: str) -> None:
        """``new EventSource(url)``, recorded as ``name``; the browser reconnects by itself."""
        await self.page.evaluate("([name, url]) => window.__open(name, url)", [name, url])

    async def open_refreshing(
        self, name: str, url: str, fresh_token: Callable[[], Awaitable[str]], delay_ms: int
    ) -> None:
        """The README's page: ``url`` plus ``authorization`` from ``fresh_token()`` (awaited at
        each connection), closed on error and reopened ``delay_ms`` later with ``lastEventId``."""
        await self.page.expose_function("__freshToken", fresh_token)
        await self.page.evaluate(
            "([name, url, delay]) => window.__openRefreshing(name, url, delay)",
            [name, url, delay_ms],
        )

    async def close(self, name: str) -> None:
        """Close the source ``name`` (no more reconnections)."""
        await self.page.evaluate("(name) => window.__sources[name].close()", name)

    async def record(self, name: str) -> Record:
        """Everything ``name`` has seen so far."""
        raw = await self.page.evaluate("(name) => window.__records[name]", name)
        return Record(
            events=[Received(*event) for event in raw["events"]],
            opens=raw["opens"],
            errors=raw["errors"],
            urls=raw["urls"],
        )

    async def fetch(self, method: str, path: str, headers: dict[str, str], body: str) -> int:
        """The status of a ``fetch`` from the page (same origin unless ``path`` says otherwise)."""
        status: int = await self.page.evaluate(
            """async ([method, path, headers, body]) =>
                 (await fetch(path, {method, headers, body})).status""",
            [method, path, headers, body],
        )
        return status

    async def wait_until(
        self, name: str, done: Callable[[Record], bool], timeout: float = 10.0
    ) -> Record:
        """Poll ``name``'s record until ``done(record)``; fail with the record after ``timeout``."""
        record = await self.record(name)
        try:
            async with asyncio.timeout(timeout):
                while not done(record):
                    await asyncio.sleep(0.05)
                    record = await self.record(name)
        except TimeoutError:
            raise AssertionError(f"{name} after {timeout}s: {record!r}") from None
        return record

    async def wait_for(self, name: str, last: str, timeout: float = 10.0) -> list[Received]:
        """``name``'s events, once one whose data is ``last`` has arrived."""
        record = await self.wait_until(
            name, lambda r: any(e.data == last for e in r.events), timeout
        )
        return record.events


@contextlib.asynccontextmanager
async def eventsource_page(origin: str) -> AsyncIterator[EventSourcePage]:
    """A page of ``origin`` (its ``/healthz``) in a fresh headless Chromium, closed on exit."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(origin + "/healthz")
            await page.evaluate(_INSTALL)
            yield EventSourcePage(page)
        finally:
            await browser.close()
