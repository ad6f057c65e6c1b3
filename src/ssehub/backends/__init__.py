"""Where events are stored and how they travel between hubs: `MemoryBackend` by default,
`SqliteBackend` for history that survives a restart (one machine, no server).

`ssehub.backends.redis` (imported as ``ssehub.redis``) holds the Redis backend; nothing imports
it unless asked, so importing ssehub never needs redis-py.
"""

from __future__ import annotations

from ssehub.backends.base import Backend, Deliver, Position, PublishResult, Replay
from ssehub.backends.memory import MemoryBackend
from ssehub.backends.sqlite import SqliteBackend

__all__ = [
    "Backend",
    "Deliver",
    "MemoryBackend",
    "Position",
    "PublishResult",
    "Replay",
    "SqliteBackend",
]
