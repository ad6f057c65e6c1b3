"""Graceful shutdown on SIGTERM/SIGINT with clients connected, and the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from ssehub import EventParser
from tests.server.hub_process import HubFactory

pytestmark = pytest.mark.timeout(30)


async def _read_to_clean_end(response: httpx.Response) -> list[str]:
    """Every event's data until the server ends the response; raises if it breaks off."""
    parser = EventParser()
    data = []
    async for chunk in response.aiter_raw():  # a broken-off chunked body raises here
        data += [event.data for event in parser.feed(chunk)]
    return data


@pytest.mark.parametrize("http", ["native", "uvicorn"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_ends_streams_cleanly_and_exits_zero(
    start_hub: HubFactory, sig: signal.Signals, http: str
) -> None:
    hub = start_hub("--http", http)
    timeout = httpx.Timeout(5.0, read=None)
    client = httpx.AsyncClient(base_url=hub.url, timeout=timeout)
    async with (
        client,
        client.stream("GET", "/events/one") as first,
        client.stream("GET", "/events/two") as second,
    ):
        for _ in range(200):
            if (await client.get("/healthz")).json()["clients"] == 2:
                break
            await asyncio.sleep(0.02)
        await client.post("/events/one", content="before the end")
        await client.post("/events/two", content="also before")
        readers = [
            asyncio.ensure_future(_read_to_clean_end(first)),
            asyncio.ensure_future(_read_to_clean_end(second)),
        ]
        await asyncio.sleep(0.2)
        hub.proc.send_signal(sig)
        one, two = await asyncio.wait_for(asyncio.gather(*readers), 5)
        assert one == ["before the end"]
        assert two == ["also before"]
    status = await asyncio.to_thread(hub.proc.wait, 5)
    assert status == 0, hub.log()
    log = hub.log()
    assert f"event=stopping signal={sig.name} clients=2" in log
    assert "event=stop " in log


async def test_shutdown_with_no_clients_exits_zero(start_hub: HubFactory) -> None:
    hub = start_hub()
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.post("/events/x", content="a")).status_code == 200
    assert hub.stop(signal.SIGTERM, timeout=5) == 0


def _ssehub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ssehub", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_help_explains_every_flag() -> None:
    top = _ssehub("--help")
    assert top.returncode == 0
    assert "serve" in top.stdout
    serve = _ssehub("serve", "--help")
    assert serve.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--history",
        "--history-ttl",
        "--retry",
        "--keepalive",
        "--cors-origin",
        "--publish-token",
        "--subscribe-token",
        "--max-body",
        "--max-buffer",
        "--log-level",
        "--redis",
        "--workers",
        "SSEHUB_PUBLISH_TOKEN",
    ):
        assert flag in serve.stdout, flag
    assert "--reuse-port" not in serve.stdout


def test_workers_auto_is_one_per_core_and_a_bad_count_is_refused() -> None:
    from ssehub.server.cli import build_parser

    parsed = build_parser({}).parse_args(["serve", "--workers", "auto"])
    assert parsed.workers == (os.cpu_count() or 1)
    assert build_parser({"SSEHUB_WORKERS": "auto"}).parse_args(["serve"]).workers >= 1
    result = _ssehub("serve", "--port", "0", "--workers", "many")
    assert result.returncode == 2
    assert "--workers" in result.stderr


def test_bad_flag_values_are_refused() -> None:
    assert _ssehub("serve", "--max-body", "lots").returncode == 2
    assert _ssehub("serve", "--history", "-1").returncode == 2
    assert _ssehub("serve", "--workers", "0").returncode == 2


def test_busy_port_is_a_clear_error(start_hub: HubFactory) -> None:
    hub = start_hub()
    port = hub.url.rsplit(":", 1)[1]
    result = _ssehub("serve", "--port", port)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("http", ["native", "uvicorn"])
async def test_slow_client_is_dropped_logged_and_counted(start_hub: HubFactory, http: str) -> None:
    hub = start_hub("--max-buffer", "64KiB", "--max-body", "8MiB", "--http", http)
    host, port = hub.url.removeprefix("http://").split(":")
    # A subscriber that never reads, with a small receive buffer so the server backs up fast.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(b"GET /events/slow HTTP/1.1\r\nHost: hub\r\n\r\n")
    try:
        async with httpx.AsyncClient(base_url=hub.url, timeout=10) as client:
            for _ in range(200):
                if (await client.get("/healthz")).json()["clients"] == 1:
                    break
                await asyncio.sleep(0.02)
            batch = [{"data": "x" * 4000} for _ in range(250)]
            for _ in range(20):
                await client.post("/events/slow", json=batch)
                if (await client.get("/healthz")).json()["clients"] == 0:
                    break
            assert (await client.get("/healthz")).json()["clients"] == 0
            metrics = (await client.get("/metrics")).text
        assert "ssehub_clients_dropped_slow_total 1.0" in metrics
        for _ in range(100):
            if "event=client_dropped reason=slow channel=/events/slow" in hub.log():
                break
            await asyncio.sleep(0.02)
        assert "event=client_dropped reason=slow channel=/events/slow" in hub.log()
    finally:
        sock.close()


@pytest.mark.parametrize("http", ["native", "uvicorn"])
async def test_access_log_has_one_line_per_request(start_hub: HubFactory, http: str) -> None:
    hub = start_hub("--access-log", "--http", http)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.post("/events/logged", content="x")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    for _ in range(100):
        if "/nowhere" in hub.log():
            break
        await asyncio.sleep(0.02)
    log = hub.log()
    assert '"POST /events/logged HTTP/1.1" 200' in log
    assert '"GET /nowhere HTTP/1.1" 404' in log
