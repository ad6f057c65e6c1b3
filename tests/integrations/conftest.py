"""Each framework's test app served by its real server on a free loopback port.

Servers run in threads of their own (each with its own event loop) or, for gunicorn, in a
subprocess, so that one server per framework serves the whole session; tests talk to them only
over sockets. ``served`` is parametrized over every framework.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from tests._support import free_port
from tests.integrations import apps

ROOT = Path(__file__).resolve().parents[2]
WSGI_THREADS = int(os.environ.get("SSEHUB_WSGI_THREADS", "32"))
"""Threads of the WSGI servers: each open stream holds one."""


@dataclass(frozen=True)
class Served:
    """A running test app: where to subscribe, publish and count clients."""

    name: str
    base: str
    prefix: str = ""  # the Django ASGI half lives under /asgi

    def events(self, name: str) -> str:
        return f"{self.base}{self.prefix}/events/{name}"

    def publish(self, name: str) -> str:
        return f"{self.base}{self.prefix}/publish/{name}"

    def clients(self, name: str) -> str:
        return f"{self.base}{self.prefix}/clients/{name}"

    def multi(self, name: str) -> str:
        """The stream of ``apps.multi_selectors(name)`` (several channels, one response)."""
        return f"{self.base}{self.prefix}/multi/{name}"

    def publish_to(self) -> str:
        """The route that publishes one event to the ``?channel=`` channels."""
        return f"{self.base}{self.prefix}/publish-to"

    def url(self, path: str) -> str:
        """The URL of another route of the app (``/count``, ``/closed``)."""
        return f"{self.base}{self.prefix}{path}"


def _wait_port(port: int, alive: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the server exited while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _serve_uvicorn(app: Any, lifespan: Literal["auto", "on", "off"] = "off") -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan=lifespan,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    _wait_port(port, thread.is_alive)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _serve_hypercorn(app: Any) -> Iterator[str]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.graceful_timeout = 1
    config.loglevel = "WARNING"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="hypercorn", daemon=True)
    thread.start()
    _wait_port(port, thread.is_alive)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def _serve_aiohttp(app: Any) -> Iterator[str]:
    from aiohttp import web

    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, shutdown_timeout=1)
    started = threading.Event()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
            started.set()
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="aiohttp", daemon=True)
    thread.start()
    started.wait(10)
    _wait_port(port, thread.is_alive)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _serve_waitress(app: Any) -> Iterator[str]:
    from waitress.server import create_server

    # channel_request_lookahead lets waitress notice a client leaving while a stream is idle.
    server = create_server(
        app,
        host="127.0.0.1",
        port=0,
        threads=WSGI_THREADS,
        channel_request_lookahead=1,
        connection_limit=max(100, WSGI_THREADS + 10),
    )
    port = server.effective_port
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    _wait_port(port, thread.is_alive)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


def _serve_gunicorn(target: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--worker-class", "gthread", "--workers", "1", "--threads", str(WSGI_THREADS),
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2", "--log-level", "warning",
            target,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        _wait_port(port, lambda: process.poll() is None)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _start(name: str) -> Iterator[Served]:
    if name == "starlette":
        for base in _serve_uvicorn(apps.starlette_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "fastapi":
        for base in _serve_uvicorn(apps.fastapi_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "litestar":
        for base in _serve_uvicorn(apps.litestar_app(apps.make_hub()), lifespan="on"):
            yield Served(name, base)
    elif name == "quart":
        for base in _serve_hypercorn(apps.quart_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "aiohttp":
        for base in _serve_aiohttp(apps.aiohttp_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "flask":
        for base in _serve_waitress(apps.flask_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "wsgi":
        for base in _serve_waitress(apps.wsgi_app(apps.make_hub())):
            yield Served(name, base)
    elif name == "django-wsgi":
        for base in _serve_gunicorn("tests.integrations.django_site:application"):
            yield Served(name, base)
    elif name == "django-asgi":
        from tests.integrations import django_site

        for base in _serve_uvicorn(django_site.asgi_application):
            yield Served(name, base, prefix="/asgi")
    else:
        raise ValueError(name)


FRAMEWORKS = [
    "starlette",
    "fastapi",
    "litestar",
    "quart",
    "aiohttp",
    "flask",
    "wsgi",
    "django-wsgi",
    "django-asgi",
]


@pytest.fixture(scope="session", params=FRAMEWORKS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    """The framework's test app, running in its real server."""
    yield from _start(request.param)
