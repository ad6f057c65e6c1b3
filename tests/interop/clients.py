"""Drivers for the SSE clients the interop tests run against the hub.

Each driver is an async context manager ``driver(url, types)`` that subscribes to ``url`` with
one real client, listening for the default "message" type and the custom ``types``, and yields
a `Consumer` that fills up with what that client reports, as the client reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import httpx_sse
from playwright.async_api import async_playwright

import ssehub.client
from tests._support.browser import CHROMIUM, CHROMIUM_ARGS

NODE_DIR = Path(__file__).parent / "node"


@dataclass(frozen=True)
class Received:
    """One event as a client reported it: its type, its data and the client's last event id."""

    type: str
    data: str
    id: str


@dataclass
class Consumer:
    """What one client has reported so far."""

    name: str
    received: list[Received] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    opens: int = 0

    def report(self, obj: dict[str, Any]) -> None:
        """Record one report (``kind`` is "event", "open" or "error")."""
        kind = obj.get("kind")
        if kind == "event":
            self.received.append(Received(obj["type"], obj["data"], obj["id"]))
        elif kind == "open":
            self.opens += 1
        else:
            self.errors.append(obj)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` events have arrived; return them all."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.received) < count:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} got {len(self.received)} of {count} events in {timeout}s: "
                f"{self.received!r}; errors: {self.errors!r}"
            ) from None
        return list(self.received)


Driver = Callable[[str, list[str]], AbstractAsyncContextManager[Consumer]]

_PAGE_SCRIPT = """
({url, types}) => {
  const report = (event) => window.__ssehubReport(
    {kind: "event", type: event.type, data: event.data, id: event.lastEventId});
  const source = new EventSource(url);
  source.addEventListener("message", report);
  for (const type of types) source.addEventListener(type, report);
  source.addEventListener("open", () => window.__ssehubReport({kind: "open"}));
  source.addEventListener("error",
    () => window.__ssehubReport({kind: "error", readyState: source.readyState}));
  window.__ssehubSource = source;
}
"""


@contextlib.asynccontextmanager
async def chromium(url: str, types: list[str]) -> AsyncIterator[Consumer]:
    """Headless Chromium's own ``EventSource``, opened from a page of the stream's origin."""
    consumer = Consumer("chromium")
    parts = urlsplit(url)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.expose_function("__ssehubReport", consumer.report)
            # Any page of the hub's origin will do: EventSource then needs no CORS.
            await page.goto(f"{parts.scheme}://{parts.netloc}/healthz")
            await page.evaluate(_PAGE_SCRIPT, {"url": url, "types": types})
            yield consumer
            await page.evaluate("window.__ssehubSource.close()")
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def node_eventsource(url: str, types: list[str]) -> AsyncIterator[Consumer]:
    """The npm ``eventsource`` package, run by node (tests/interop/node/consume.mjs)."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/bootstrap installs it)"
    assert (NODE_DIR / "node_modules" / "eventsource").is_dir(), (
        "tests/interop/node/node_modules is missing: run scripts/bootstrap"
    )
    consumer = Consumer("node-eventsource")
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / "consume.mjs"),
        url,
        json.dumps(types),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 22,  # one JSON line per event, and the large case is 70 kB
    )
    assert process.stdin is not None and process.stdout is not None

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            consumer.report(json.loads(line))

    reader = asyncio.ensure_future(read())
    try:
        yield consumer
    finally:
        process.stdin.close()  # consume.mjs closes its EventSource and exits
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()
        await asyncio.wait_for(reader, 5)
        if process.returncode != 0:
            assert process.stderr is not None
            stderr = (await process.stderr.read()).decode(errors="replace")
            raise AssertionError(f"consume.mjs exited with {process.returncode}:\n{stderr}")


@contextlib.asynccontextmanager
async def httpx_sse_client(url: str, types: list[str]) -> AsyncIterator[Consumer]:
    """httpx-sse, reconnected by hand with ``Last-Event-ID`` as its documentation shows.

    httpx-sse dispatches a block that has no ``data:`` line (the spec says not to), so the hub's
    ``retry:`` block at the start of each stream arrives as an empty "message" with ``retry``
    set. Such blocks are skipped, and counted in ``consumer.opens`` (one per connection).
    """
    consumer = Consumer("httpx-sse")
    retry = 0.1

    async def run() -> None:
        nonlocal retry
        last_id = ""
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as http:
            while True:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                try:
                    async with httpx_sse.aconnect_sse(http, "GET", url, headers=headers) as source:
                        source.response.raise_for_status()
                        async for sse in source.aiter_sse():
                            if sse.retry is not None:
                                retry = sse.retry / 1000
                            if sse.data == "" and sse.retry is not None:
                                consumer.report({"kind": "open"})
                                continue
                            consumer.report(
                                {"kind": "event", "type": sse.event, "data": sse.data, "id": sse.id}
                            )
                            last_id = sse.id
                except httpx.TransportError as exc:
                    consumer.report({"kind": "error", "error": repr(exc)})
                await asyncio.sleep(retry)

    task = asyncio.ensure_future(run())
    try:
        yield consumer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # raises what ended it early, if anything did


@contextlib.asynccontextmanager
async def ssehub_client(url: str, types: list[str]) -> AsyncIterator[Consumer]:
    """ssehub's own client, held to the same scenarios as the others."""
    consumer = Consumer("ssehub.client")

    async def run() -> None:
        async for message in source:
            consumer.report(
                {
                    "kind": "event",
                    "type": message.event or "message",
                    "data": message.data,
                    "id": message.id or "",
                }
            )

    async with ssehub.client.connect(url) as source:
        task = asyncio.ensure_future(run())
        yield consumer
    await asyncio.wait_for(task, 5)


DRIVERS: dict[str, Driver] = {
    "chromium": chromium,
    "node-eventsource": node_eventsource,
    "httpx-sse": httpx_sse_client,
    "ssehub.client": ssehub_client,
}
