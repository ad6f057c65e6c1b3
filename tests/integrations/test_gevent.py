"""Under gevent's monkey-patching (``gunicorn -k gevent``) the thread-based API says plainly
that it does not run there, instead of failing with a 500.

The hub's own event loop thread would be a green thread that every other green thread takes for
its own running loop; ssehub does not support it (see the README), and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._support import free_port

pytest.importorskip("gevent")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


def test_a_stream_under_a_gevent_worker_is_answered_501_with_the_reason(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")), "-k", "gevent",
                "--bind", f"127.0.0.1:{port}", "--chdir", "examples", "flask_app:app",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/events/my-channel", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert response.status_code == 501, response.text
        error = response.json()["error"]
        assert "gevent" in error and "gunicorn -k gthread" in error
        # The example's clock publishes with publish_threadsafe: the same reason, in the log.
        process.terminate()
        process.wait(15)
        assert "UnsupportedServer: ssehub's thread-based API" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
