"""Run an ASGI app in a real uvicorn server, on the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def run_uvicorn(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yield its base URL.

    On exit the server is asked to stop; open streams get one second to end.
    """
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan=config.pop("lifespan", "off"),
            timeout_graceful_shutdown=1,
            **config,
        )
    )
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
        sock.close()


@contextlib.asynccontextmanager
async def run_native(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with ssehub's own HTTP server (direct streams) on a free loopback port."""
    from ssehub.server.native import HTTPServer

    sock = _free_socket()
    port = sock.getsockname()[1]
    server = HTTPServer(app, **config)
    task = asyncio.ensure_future(server.serve([sock]))
    try:
        started = asyncio.ensure_future(server.started.wait())
        await asyncio.wait([task, started], timeout=10, return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if task.done():
            task.result()
        assert server.started.is_set(), "the server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
        sock.close()


SERVERS = {"uvicorn": run_uvicorn, "ssehub-native": run_native}
"""The ASGI servers every adapter test runs on."""
