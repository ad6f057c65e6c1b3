"""Run an ASGI app in a real uvicorn server, on the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class Running:
    """A server started by `uvicorn_server` or `native_server`: its URL, and a way to stop it."""

    def __init__(self, url: str, stop: Callable[[], Awaitable[None]], server: Any = None) -> None:
        self.url = url
        """The base URL, ``http://127.0.0.1:PORT``."""
        self.server = server
        """The native server's `HTTPServer` (None for uvicorn)."""
        self._stop = stop
        self._stopping: asyncio.Future[None] | None = None

    async def stop(self) -> None:
        """Stop the server as a signal would, and wait until it has stopped (idempotent)."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)


@contextlib.asynccontextmanager
async def uvicorn_server(app: Any, **config: Any) -> AsyncIterator[Running]:
    """Serve ``app`` with uvicorn on a free loopback port (lifespan off unless given).

    The server stops at `Running.stop` or on exit; open streams get one second to end.
    """
    sock = _free_socket()
    port = sock.getsockname()[1]
    config.setdefault("timeout_graceful_shutdown", 1)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan=config.pop("lifespan", "off"),
            **config,
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))

    async def stop() -> None:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            task.cancel()

    running = Running(f"http://127.0.0.1:{port}", stop)
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "uvicorn did not start"
        yield running
    finally:
        await running.stop()
        sock.close()


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL.

    On exit the server is asked to stop; open streams get one second to end.
    """
    async with uvicorn_server(app, **config) as running:
        yield running.url


@contextlib.asynccontextmanager
async def native_server(app: Any, **config: Any) -> AsyncIterator[Running]:
    """Serve ``app`` with ssehub's own HTTP server (direct streams) on a free loopback port.

    The server runs the app's lifespan; it stops at `Running.stop` or on exit.
    """
    from ssehub.server.native import HTTPServer

    sock = _free_socket()
    port = sock.getsockname()[1]
    server = HTTPServer(app, **config)
    task = asyncio.ensure_future(server.serve([sock]))

    async def stop() -> None:
        server.shutdown()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            task.cancel()

    running = Running(f"http://127.0.0.1:{port}", stop, server)
    try:
        started = asyncio.ensure_future(server.started.wait())
        await asyncio.wait([task, started], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            task.result()
        assert server.started.is_set(), "the server did not start"
        yield running
    finally:
        await running.stop()
        sock.close()


@contextlib.asynccontextmanager
async def run_native(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with ssehub's own HTTP server (direct streams) on a free loopback port."""
    async with native_server(app, **config) as running:
        yield running.url


SERVERS = {"uvicorn": run_uvicorn, "ssehub-native": run_native}
"""The ASGI servers every adapter test runs on."""
