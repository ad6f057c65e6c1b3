"""While Redis stays down, the backend's log is a reminder now and then, not a line per attempt."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

import ssehub.backends.redis
from ssehub import Hub
from ssehub.redis import RedisBackend
from tests._support import free_port

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


async def test_a_long_outage_logs_a_reminder_per_interval_not_a_line_per_attempt(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssehub.backends.redis, "REMIND_EVERY", 0.4)
    caplog.set_level(logging.INFO, logger="ssehub.redis")
    # Nothing listens there: every attempt fails at once, every 0.05 s at most.
    hub = Hub(backend=RedisBackend(f"redis://127.0.0.1:{free_port()}/0", max_backoff=0.05))
    await hub.start()
    try:
        await asyncio.sleep(1.5)
    finally:
        await hub.shutdown()
    events = [re.search(r"event=(\w+)", r.getMessage()) for r in caplog.records]
    names = [match.group(1) for match in events if match]
    assert names[:2] == ["redis_unreachable", "redis_reconnecting"]
    reminders = [r.getMessage() for r in caplog.records if "event=redis_down " in r.getMessage()]
    assert names[2:] == ["redis_down"] * len(reminders)
    assert 2 <= len(reminders) <= 4, names
    attempts = int(re.search(r"attempts=(\d+)", reminders[-1]).group(1))  # type: ignore[union-attr]
    # Far more attempts than lines: the attempts themselves are not logged.
    assert attempts >= 10 > len(names)
    assert "reason=" in reminders[-1] and "Error 111" in reminders[-1]
