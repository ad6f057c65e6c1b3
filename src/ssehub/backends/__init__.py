"""Where events are stored and how they travel between hubs: `MemoryBackend` by default.

The Redis backend lives in `ssehub.redis` so that importing ssehub never needs redis-py.
"""

from __future__ import annotations

from ssehub.backends.base import Backend, Deliver, Replay
from ssehub.backends.memory import MemoryBackend

__all__ = ["Backend", "Deliver", "MemoryBackend", "Replay"]
