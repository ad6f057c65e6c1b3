"""A clock the test moves: the age of in-memory history without waiting for it.

`MemoryBackend` stamps events and expires them with ``time.monotonic()``; `frozen_clock` makes
that clock (and only that one: the event loop keeps its own) stand still until the test moves
it. The backend's age sweep still runs on the loop's timer, every ``min(history_ttl, 1 s)``, so
with a ``history_ttl`` of a second or more it does not run during a short test unless the test
calls it: what a test then sees is the lazy expiry alone (on replay, publish, ``channels()``),
at exact ages.
"""

from __future__ import annotations

import time
import types

import pytest

from ssehub.backends import memory

__all__ = ["Clock", "frozen_clock"]


class Clock:
    """``time.monotonic`` as far as the memory backend knows: moved by `advance` only."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Give ``ssehub.backends.memory`` a `Clock` for ``time.monotonic`` (undone after the test)."""
    clock = Clock()
    fake = types.SimpleNamespace(monotonic=clock.monotonic, time=time.time)
    monkeypatch.setattr(memory, "time", fake)
    return clock
